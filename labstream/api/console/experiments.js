// Experiments and jobs lists: submit an experiment (with a trace started here), then
// search, filter and page through the tenant's experiments or jobs. The filters live in
// the address (#/?status=failed&q=...), so a filtered list is a link to share.

import { get, request } from "./api.js";
import { el, fill, formatDuration, formatTime, idLink, replaceKeepingFocus, stateNote, statusBadge } from "./dom.js";
import { newTraceContext } from "./traceparent.js";

const KINDS = ["hplc", "synthesis", "cell-culture", "lc-ms", "plate-read"];
const EXPERIMENT_STATUSES = ["submitted", "queued", "running", "completed", "failed", "cancelled"];
const JOB_STATUSES = ["queued", "started", "succeeded", "failed", "timed_out", "launch_failed"];
const FILTERS = ["q", "status", "kind", "submitted_by", "rule", "job_status", "since", "until"];
const REFRESH_MS = 2000;

export function experimentsView(main, context) {
  const result = el("div", { id: "submit-result", class: "submit-result", "aria-live": "polite" });
  main.replaceChildren(
    el("h2", {}, "Experiments"),
    submitForm(result, context.announce),
    result,
    listSection("experiments", context),
  );
}

export function jobsView(main, context) {
  main.replaceChildren(el("h2", {}, "Jobs"), listSection("jobs", context));
}

// The filter form, the list and its pager; polled, the filters from the address.
function listSection(what, { poll, params, setTitle }) {
  const filters = Object.fromEntries(FILTERS.map((name) => [name, params.get(name) || ""]));
  const before = params.get("before") || "";
  const active = FILTERS.filter((name) => filters[name]);
  const label = what === "jobs" ? "Jobs" : "Experiments";
  setTitle(active.length ? `${label}: ${active.map((n) => `${n}=${filters[n]}`).join(", ")}` : label);
  const list = el("div", { id: `${what}-list`, "aria-busy": "true" }, stateNote("loading", `Loading ${what}…`));
  const pager = el("nav", { class: "pager", "aria-label": "Pages" });
  const query = new URLSearchParams(Object.entries(filters).filter(([, v]) => v));
  query.set("limit", "20");
  if (before) query.set("before", before);
  let lastJson = "";
  poll(async () => {
    const data = await get(`/${what}?${query}`);
    const rows = data[what];
    const json = JSON.stringify(data);
    if (json === lastJson) return;
    lastJson = json;
    list.removeAttribute("aria-busy");
    const empty = active.length || before
      ? stateNote("empty", `No ${what} match these filters.`)
      : stateNote("empty", what === "jobs" ? "No jobs yet for this tenant." : "No experiments yet for this tenant.");
    replaceKeepingFocus(list, rows.length ? (what === "jobs" ? jobsTable(rows) : experimentsTable(rows)) : empty);
    fill(pager,
      before ? el("a", { href: `#${what === "jobs" ? "/jobs" : "/"}?${withParams(filters, {})}`, id: "page-newest" }, "← Newest") : null,
      data.next_before ? el("a", { href: `#${what === "jobs" ? "/jobs" : "/"}?${withParams(filters, { before: data.next_before })}`,
        id: "page-older", "data-focus-key": "page-older" }, "Older →") : null);
  }, REFRESH_MS, (error) => {
    list.removeAttribute("aria-busy");
    list.replaceChildren(stateNote("error", `${error.message}${error.hint ? ` (${error.hint})` : ""}`));
  });
  return el("section", { "aria-labelledby": "list-heading" },
    el("h3", { id: "list-heading" }, what === "jobs" ? "Jobs, newest first" : "Experiments and their jobs, newest first"),
    filterForm(what, filters), list, pager);
}

function withParams(filters, extra) {
  const query = new URLSearchParams(Object.entries({ ...filters, ...extra }).filter(([, v]) => v));
  return query.toString();
}

function filterForm(what, filters) {
  const statuses = what === "jobs" ? JOB_STATUSES : EXPERIMENT_STATUSES;
  const select = (name, label, options) => field(`filter-${name}`, label,
    el("select", { id: `filter-${name}`, name }, el("option", { value: "" }, "any"),
      options.map((value) => el("option", { value, selected: filters[name] === value }, value))));
  const text = (name, label, attributes = {}) => field(`filter-${name}`, label,
    el("input", { id: `filter-${name}`, name, value: filters[name], ...attributes }));
  const form = el("form", { id: "filter-form", class: "filter-form", role: "search", "aria-label": `Search ${what}` },
    text("q", "Search", { type: "search", placeholder: "experiment, job or trace id, title",
      spellcheck: "false" }),
    select("status", "Status", statuses),
    select("kind", "Kind", KINDS),
    text("submitted_by", "Submitted by"),
    text("rule", "Rule"),
    what === "jobs" ? null : select("job_status", "Job status", JOB_STATUSES),
    text("since", "Since", { type: "datetime-local" }),
    text("until", "Until", { type: "datetime-local" }),
    el("div", { class: "actions" },
      el("button", { type: "submit", id: "filter-apply" }, "Search"), " ",
      el("a", { href: what === "jobs" ? "#/jobs" : "#/", id: "filter-clear" }, "Clear filters")));
  form.addEventListener("submit", (event) => {
    event.preventDefault();
    const values = Object.fromEntries([...new FormData(form)].map(([k, v]) => [k, String(v).trim()]));
    for (const name of ["since", "until"]) {
      // datetime-local is the browser's local time: send an absolute time
      if (values[name] && !/[zZ]|[+-]\d\d:\d\d$/.test(values[name])) values[name] = new Date(values[name]).toISOString();
    }
    location.hash = `${what === "jobs" ? "/jobs" : "/"}?${withParams(values, {})}`;
  });
  for (const name of ["since", "until"]) {
    const input = form.querySelector(`#filter-${name}`);
    if (filters[name]) {
      const date = new Date(filters[name]);
      if (!Number.isNaN(date.getTime())) {
        input.value = new Date(date.getTime() - date.getTimezoneOffset() * 60000).toISOString().slice(0, 16);
      }
    }
  }
  return form;
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
    // in the result box, not the status line: the list's refreshes must not overwrite it
    const message = `Not submitted: ${error.message}${error.hint ? ` (${error.hint})` : ""}`;
    result.replaceChildren(el("p", { class: "error", id: "submit-error" }, message));
    announce(message, "error");
    return;
  }
  const endedMs = performance.timeOrigin + performance.now();
  const experiment = response.data;
  const sameTrace = experiment.trace_id === trace.traceId;
  const shown = [
    el("p", {},
      "Submitted ", el("strong", { id: "submitted-experiment" }, idLink("experiment", experiment.id)), ". Trace id ",
      el("code", { id: "submitted-trace" }, trace.traceId), " ",
      el("a", { href: `#/traces/${trace.traceId}`, id: "submitted-trace-link" }, "view the trace")),
    sameTrace ? null : el("p", { class: "error" },
      `The API answered with another trace id (${experiment.trace_id || "none"}): it did not continue ours.`),
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
      if (error.status !== 404 && !error.unreachable) return;
    }
    await new Promise((resolve) => setTimeout(resolve, 1000));
  }
}

function experimentsTable(experiments) {
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
    el("th", { scope: "row" }, idLink("experiment", experiment.id, { "data-focus-key": `exp-${experiment.id}` }),
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

function jobsTable(jobs) {
  return el("div", { class: "table-scroll" }, el("table", { class: "experiments jobs-table" },
    el("caption", { class: "visually-hidden" }, "Jobs, newest first"),
    el("thead", {}, el("tr", {}, ["Job", "Rule", "Status", "Attempt", "Experiment", "Created", "Duration", "Trace"]
      .map((name) => el("th", { scope: "col" }, name)))),
    el("tbody", {}, jobs.map((job) => el("tr", { "data-job": job.id },
      el("th", { scope: "row" }, idLink("job", job.id, { "data-focus-key": `job-${job.id}` })),
      el("td", { "data-label": "Rule" }, job.rule_id),
      el("td", { "data-label": "Status" }, statusBadge(job.status)),
      el("td", { "data-label": "Attempt" }, String(job.attempt)),
      el("td", { "data-label": "Experiment" }, idLink("experiment", job.experiment_id)),
      el("td", { "data-label": "Created" }, formatTime(job.created_at)),
      el("td", { "data-label": "Duration" }, formatDuration(job.duration_s)),
      el("td", { "data-label": "Trace" }, job.trace_id ? el("a", { href: `#/traces/${job.trace_id}`, class: "mono",
        title: job.trace_id }, `${job.trace_id.slice(0, 8)}…`) : "–"))))));
}
