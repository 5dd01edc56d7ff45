// Experiments view: submit an experiment (with a trace started here), and the tenant's
// recent experiments with the jobs they triggered, refreshed every few seconds.

import { get, request } from "./api.js";
import { el, formatDuration, formatTime, replaceKeepingFocus, statusBadge } from "./dom.js";
import { newTraceContext } from "./traceparent.js";

const KINDS = ["hplc", "synthesis", "cell-culture", "lc-ms", "plate-read"];
const REFRESH_MS = 2000;

export function experimentsView(main, { announce, poll }) {
  const result = el("div", { id: "submit-result", class: "submit-result", "aria-live": "polite" });
  const list = el("div", { id: "experiments-list" }, el("p", {}, "Loading experiments…"));
  main.replaceChildren(
    el("h2", {}, "Experiments"),
    submitForm(result, announce),
    result,
    el("section", { "aria-labelledby": "recent-heading" },
      el("h3", { id: "recent-heading" }, "Recent experiments and their jobs"),
      list),
  );
  let lastJson = "";
  poll(async () => {
    const data = await get("/experiments?limit=20");
    const json = JSON.stringify(data.experiments);
    if (json !== lastJson) {
      lastJson = json;
      replaceKeepingFocus(list, experimentsTable(data.experiments));
    }
  }, REFRESH_MS);
}

function field(id, label, control, help) {
  const helpId = help ? `${id}-help` : undefined;
  if (helpId) control.setAttribute("aria-describedby", helpId);
  return el("div", { class: "field" },
    el("label", { for: id }, label), control,
    help ? el("small", { id: helpId }, help) : null);
}

function submitForm(result, announce) {
  const form = el("form", { id: "submit-form", class: "submit-form", "aria-labelledby": "submit-heading" },
    el("h3", { id: "submit-heading" }, "Submit an experiment"),
    field("kind", "Kind", el("select", { id: "kind", name: "kind", required: true },
      KINDS.map((kind) => el("option", { value: kind }, kind)))),
    field("title", "Title", el("input", { id: "title", name: "title", maxlength: 200 })),
    field("submitted-by", "Submitted by", el("input", { id: "submitted-by", name: "submitted_by", required: true,
      autocomplete: "username" })),
    field("priority", "Priority", el("input", { id: "priority", name: "priority", type: "number", min: 0,
      max: 100, value: 5 })),
    field("protocol", "Protocol parameters (JSON object)",
      el("textarea", { id: "protocol", name: "protocol", rows: 3, spellcheck: "false" }, "{}"),
      'e.g. {"injection_ul": 10, "column": "C18"}'),
    el("div", { class: "actions" }, el("button", { type: "submit", id: "submit-button" }, "Submit experiment")),
  );
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    const button = form.querySelector("#submit-button");
    const values = new FormData(form);
    let protocol;
    try {
      protocol = JSON.parse(values.get("protocol") || "{}");
      if (typeof protocol !== "object" || protocol === null || Array.isArray(protocol)) throw new Error("not an object");
    } catch (error) {
      announce(`Protocol parameters must be a JSON object: ${error.message}`, "error");
      form.querySelector("#protocol").focus();
      return;
    }
    button.disabled = true;
    try {
      await submit(values, protocol, result, announce);
    } finally {
      button.disabled = false;
    }
  });
  return form;
}

async function submit(values, protocol, result, announce) {
  const trace = newTraceContext();
  const startedMs = performance.timeOrigin + performance.now();
  let response;
  try {
    response = await request("POST", "/experiments", {
      headers: { traceparent: trace.traceparent },
      body: {
        kind: values.get("kind"),
        title: values.get("title") || "",
        submitted_by: values.get("submitted_by"),
        priority: Number(values.get("priority") || 5),
        protocol,
      },
    });
  } catch (error) {
    announce(`Not submitted: ${error.message}${error.hint ? ` (${error.hint})` : ""}`, "error");
    return;
  }
  const endedMs = performance.timeOrigin + performance.now();
  const experiment = response.data;
  const sameTrace = experiment.trace_id === trace.traceId;
  const shown = [
    el("p", {},
      "Submitted ", el("strong", { id: "submitted-experiment" }, experiment.id), ". Trace id ",
      el("code", { id: "submitted-trace" }, trace.traceId), " ",
      el("a", { href: `#/traces/${trace.traceId}`, id: "submitted-trace-link" }, "view the trace")),
    sameTrace ? null : el("p", { class: "error" },
      `The API answered with another trace id (${experiment.trace_id}): it did not continue ours.`),
  ];
  result.replaceChildren(...shown.filter(Boolean));
  announce(`Submitted ${experiment.id}, trace ${trace.traceId}`);
  recordPageSpan(trace, experiment.id, startedMs, endedMs);
}

// The page's own span ("submit experiment", the root of the trace) is stored once the
// API's spans, which name our tenant, have reached the span store: retry until then.
async function recordPageSpan(trace, experimentId, startedMs, endedMs) {
  const body = {
    span_id: trace.spanId, name: "submit experiment", experiment_id: experimentId,
    start_time_unix_nano: Math.round(startedMs * 1e6), end_time_unix_nano: Math.round(endedMs * 1e6),
    url_path: location.pathname, user_agent: navigator.userAgent.slice(0, 500),
  };
  for (let attempt = 0; attempt < 30; attempt += 1) {
    try {
      await request("POST", `/traces/${trace.traceId}/spans`, { body });
      return;
    } catch (error) {
      if (error.status !== 404 && error.status !== 0) return;
    }
    await new Promise((resolve) => setTimeout(resolve, 1000));
  }
}

function experimentsTable(experiments) {
  if (!experiments.length) return el("p", {}, "No experiments yet for this tenant.");
  return el("div", { class: "table-scroll" }, el("table", { class: "experiments" },
    el("caption", { class: "visually-hidden" }, "Experiments, newest first, with their jobs"),
    el("thead", {}, el("tr", {},
      ["Experiment", "Kind", "Status", "Submitted", "Trace", "Jobs (rule, backend, status, duration)"]
        .map((name) => el("th", { scope: "col" }, name)))),
    el("tbody", {}, experiments.map(experimentRow))));
}

function experimentRow(experiment) {
  const trace = experiment.trace_id
    ? el("a", { href: `#/traces/${experiment.trace_id}`, "data-focus-key": `trace-${experiment.id}`,
      class: "mono", title: experiment.trace_id, "aria-label": `trace ${experiment.trace_id}` },
      experiment.trace_id.slice(0, 8) + "…")
    : "–";
  return el("tr", { "data-experiment": experiment.id },
    el("th", { scope: "row" }, el("span", { class: "mono" }, experiment.id),
      experiment.title ? el("div", { class: "muted" }, experiment.title) : null),
    el("td", { "data-label": "Kind" }, experiment.kind),
    el("td", { "data-label": "Status" }, statusBadge(experiment.status)),
    el("td", { "data-label": "Submitted" }, formatTime(experiment.created_at),
      el("div", { class: "muted" }, experiment.submitted_by)),
    el("td", { "data-label": "Trace" }, trace),
    el("td", { "data-label": "Jobs" }, experiment.jobs.length ? el("ul", { class: "jobs" }, experiment.jobs.map(jobItem))
      : el("span", { class: "muted" }, "no job yet")));
}

function jobItem(job) {
  return el("li", { "data-job": job.id },
    el("a", { href: `#/jobs/${job.id}`, "data-focus-key": `job-${job.id}`, class: "mono" }, job.id), " ",
    el("span", {}, job.rule_id), " · ", el("span", {}, job.backend), " · ", statusBadge(job.status),
    " · ", el("span", {}, formatDuration(job.duration_s)));
}
