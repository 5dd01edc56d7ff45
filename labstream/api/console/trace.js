// Trace view: the `labstream explain` verdict in words, then the waterfall of every hop
// (page -> API -> DB -> CDC -> agents -> job) from the lab-DB span store.

import { get } from "./api.js";
import { el, formatNs } from "./dom.js";

const REFRESH_MS = 3000;
const KEY_ATTRIBUTES = [
  ["messaging.destination.name", "topic"], ["messaging.kafka.offset", "offset"],
  ["messaging.kafka.message.offset", "offset"], ["messaging.batch.message_count", "records"],
  ["lab.experiment.id", "experiment"], ["lab.rule.id", "rule"], ["lab.job.id", "job"],
  ["lab.job.exit_code", "exit code"], ["http.response.status_code", "HTTP"],
];

export function traceView(main, traceId, { poll }) {
  const verdict = el("section", { id: "verdict", class: "verdict", "aria-labelledby": "verdict-heading" },
    el("h3", { id: "verdict-heading" }, "Verdict"),
    el("p", { id: "verdict-headline" }, "Working out what happened…"));
  const waterfall = el("section", { "aria-labelledby": "waterfall-heading" },
    el("h3", { id: "waterfall-heading" }, "Waterfall"),
    el("div", { id: "waterfall" }, el("p", {}, "Loading spans…")));
  main.replaceChildren(
    el("h2", {}, "Trace ", el("span", { class: "mono", id: "trace-id" }, traceId)),
    verdict, waterfall);
  let spanCount = -1;
  let lastVerdict = 0;
  poll(async () => {
    let trace;
    try {
      trace = await get(`/traces/${traceId}`);
    } catch (error) {
      if (error.status !== 404) throw error;
      main.querySelector("#waterfall").replaceChildren(
        el("p", {}, "No spans of this trace yet: they reach the span store a few seconds late. Retrying…"));
      return undefined;
    }
    const grew = trace.span_count !== spanCount;
    if (grew) {
      spanCount = trace.span_count;
      main.querySelector("#waterfall").replaceChildren(waterfallTable(trace));
    }
    if (grew || Date.now() - lastVerdict > 10 * REFRESH_MS) {
      lastVerdict = Date.now();
      refreshVerdict(verdict, traceId);
    }
    return undefined;
  }, REFRESH_MS);
}

async function refreshVerdict(section, traceId) {
  let data;
  try {
    data = await get(`/traces/${traceId}/explain`);
  } catch (error) {
    if (error.status === 404) return; // not yet known: the next refresh asks again
    section.querySelector("#verdict-headline").textContent = `No verdict: ${error.message}`;
    return;
  }
  const explanation = data.explanation;
  const ok = explanation.first_problem === null || explanation.first_problem === undefined;
  section.className = `verdict ${ok ? "verdict-ok" : "verdict-problem"}`;
  const answers = (explanation.answers || []).map((answer) =>
    el("li", { class: `answer answer-${answer.status}` },
      el("strong", {}, `${answer.question} `), `${answer.status.replace("_", " ")}: `, answer.summary,
      answer.fix && answer.fix.length ? el("div", { class: "fix" }, `fix: ${answer.fix[0]}`) : null));
  section.replaceChildren(
    el("h3", { id: "verdict-heading" }, "Verdict"),
    el("p", { id: "verdict-headline", class: "headline" }, data.headline),
    el("ol", { class: "answers" }, answers),
    explanation.next_step ? el("p", {}, el("strong", {}, "Next: "), explanation.next_step) : null,
  );
}

function keyAttributes(attributes) {
  return KEY_ATTRIBUTES.filter(([name]) => name in attributes)
    .map(([name, short]) => `${short}=${attributes[name]}`).join(" ");
}

function waterfallTable(trace) {
  const spans = trace.spans;
  if (!spans.length) return el("p", {}, "No spans.");
  const start = Math.min(...spans.map((s) => s.start_time_unix_nano));
  const end = Math.max(...spans.map((s) => s.end_time_unix_nano));
  const length = Math.max(end - start, 1);
  const services = [...new Set(spans.map((s) => s.service_name))];
  return el("div", {},
    el("p", { id: "waterfall-summary" }, `${spans.length} spans from ${services.join(", ")}; ${formatNs(end - start)} in all.`),
    el("div", { class: "table-scroll" }, el("table", { class: "waterfall" },
      el("caption", { class: "visually-hidden" }, "Spans in tree order, with start offset and duration"),
      el("thead", {}, el("tr", {}, ["Service", "Span", "Start", "Duration", "Timeline", "Status"]
        .map((name) => el("th", { scope: "col" }, name)))),
      el("tbody", {}, spans.map((span) => spanRow(span, start, length))))));
}

function spanRow(span, traceStart, traceLength) {
  const error = span.status_code === "ERROR";
  const left = ((span.start_time_unix_nano - traceStart) / traceLength) * 100;
  const width = Math.max((span.duration_ns / traceLength) * 100, 0.5);
  const attributes = keyAttributes(span.attributes || {});
  return el("tr", { class: error ? "span-error" : "", "data-service": span.service_name, "data-span": span.span_id },
    el("td", {}, el("span", { class: `service service-${span.service_name}` }, span.service_name)),
    el("th", { scope: "row", class: "span-name", style: { paddingLeft: `${0.5 + span.depth * 1.1}rem` } },
      span.name, attributes ? el("div", { class: "muted mono small" }, attributes) : null),
    el("td", { class: "num" }, formatNs(span.start_time_unix_nano - traceStart)),
    el("td", { class: "num" }, formatNs(span.duration_ns)),
    el("td", { class: "timeline", "aria-hidden": "true" },
      el("div", { class: "bar-track" }, el("div", { class: `bar ${error ? "bar-error" : ""}`,
        style: { marginLeft: `${Math.min(left, 99.5)}%`, width: `${Math.min(width, 100 - Math.min(left, 99.5))}%` } }))),
    el("td", {}, error ? el("span", { class: "error" }, `error${span.status_message ? `: ${span.status_message}` : ""}`)
      : span.status_code.toLowerCase()));
}
