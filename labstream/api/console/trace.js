// Trace view: the `labstream explain` verdict in words, what the trace leads to (its
// jobs, experiments, replays and related traces, as links), then the waterfall of every
// hop (page -> API -> DB -> CDC -> agents -> job) from the lab-DB span store: click a
// span for its details, collapse a subtree, zoom into a span.

import { get } from "./api.js";
import { el, fill, formatNs, idLink, stateNote } from "./dom.js";
import { traceItem } from "./experiment.js";
import { verdictSection } from "./verdict.js";

const REFRESH_MS = 3000;
// a trace id nobody has stored yet may still be on its way (spans are written a few
// seconds late): "not found" is final only after this long
const NOT_FOUND_AFTER_MS = 20000;
const KEY_ATTRIBUTES = [
  ["messaging.destination.name", "topic"], ["messaging.kafka.offset", "offset"],
  ["messaging.kafka.message.offset", "offset"], ["messaging.batch.message_count", "records"],
  ["lab.experiment.id", "experiment"], ["lab.rule.id", "rule"], ["lab.job.id", "job"],
  ["lab.job.exit_code", "exit code"], ["http.response.status_code", "HTTP"],
];
const ID_ATTRIBUTES = { "lab.experiment.id": "experiment", "lab.job.id": "job" };

export function traceView(main, traceId, { poll, setTitle }) {
  setTitle(`Trace ${traceId.slice(0, 8)}…`);
  if (!/^[0-9a-f]{32}$/.test(traceId)) {
    setTitle("Trace: not a trace id");
    main.replaceChildren(el("h2", {}, "Trace"), stateNote("not-found",
      `“${traceId}” is not a trace id: a trace id is 32 hex digits.`));
    return;
  }
  const verdict = verdictSection();
  const related = el("section", { id: "related", "aria-labelledby": "related-heading", hidden: true });
  const holder = el("div", { id: "waterfall", "aria-busy": "true" }, stateNote("loading", "Loading spans…"));
  main.replaceChildren(
    el("h2", {}, "Trace ", el("span", { class: "mono", id: "trace-id" }, traceId)),
    verdict.section, related,
    el("section", { "aria-labelledby": "waterfall-heading" }, el("h3", { id: "waterfall-heading" }, "Waterfall"), holder));
  const view = waterfall(holder);
  const started = Date.now();
  let spanCount = -1;
  let lastVerdict = 0;
  poll(async () => {
    let trace;
    try {
      trace = await get(`/traces/${traceId}`);
    } catch (error) {
      if (error.status !== 404 || Date.now() - started > NOT_FOUND_AFTER_MS) throw error;
      holder.replaceChildren(stateNote("loading", "No spans of this trace yet: they reach the span store a few seconds late. Retrying…"));
      return undefined;
    }
    const grew = trace.span_count !== spanCount || trace.linking_spans.length !== view.linking;
    if (grew) {
      spanCount = trace.span_count;
      holder.removeAttribute("aria-busy");
      view.show(trace);
      showRelated(related, await get(`/traces/${traceId}/related`), trace);
    }
    if (grew || Date.now() - lastVerdict > 10 * REFRESH_MS) {
      lastVerdict = Date.now();
      verdict.refresh(`/traces/${traceId}/explain`);
    }
    return undefined;
  }, REFRESH_MS, (error) => {
    holder.removeAttribute("aria-busy");
    const missing = error.status === 404;
    holder.replaceChildren(stateNote(missing ? "not-found" : "error", missing
      ? `No trace ${traceId} for this tenant (nothing stored after ${NOT_FOUND_AFTER_MS / 1000} s).`
      : error.message));
    verdict.section.hidden = true;
    setTitle(missing ? "Trace not found" : "Trace: error");
  });
}

function showRelated(section, data, trace) {
  const replays = trace.linking_spans.map((span) => el("li", { "data-linking": span.trace_id },
    idLink("trace", span.trace_id), ` ${span.name}`,
    span.attributes["lab.replay.id"] ? el("span", { class: "muted" }, ` · replay ${span.attributes["lab.replay.id"]}`) : null));
  const items = [
    data.experiments.length ? el("p", {}, "Experiment: ", ...data.experiments.flatMap((id, i) => [i ? ", " : "", idLink("experiment", id)])) : null,
    data.jobs.length ? el("p", {}, "Jobs: ", ...data.jobs.flatMap((job, i) => [i ? ", " : "", idLink("job", job.id), ` (${job.status})`])) : null,
    replays.length ? el("div", {}, el("p", {}, "Replays that link into this trace:"), el("ul", { id: "linking-spans", class: "trace-list" }, replays)) : null,
    data.traces.length ? el("div", {}, el("p", {}, "Related traces:"), el("ul", { id: "related-traces", class: "trace-list" }, data.traces.map(traceItem))) : null,
  ].filter(Boolean);
  section.hidden = !items.length;
  fill(section, el("h3", { id: "related-heading" }, "What this trace leads to"), ...items);
}

function keyAttributes(attributes) {
  return KEY_ATTRIBUTES.filter(([name]) => name in attributes)
    .map(([name, short]) => `${short}=${attributes[name]}`).join(" ");
}

// The waterfall keeps its own state across refreshes: collapsed spans, zoom window,
// the span whose details are open.
function waterfall(holder) {
  const state = { collapsed: new Set(), zoom: null, open: null, trace: null, linking: 0 };

  function render() {
    const { trace } = state;
    const spans = trace.spans;
    if (!spans.length) {
      holder.replaceChildren(stateNote("empty", "No spans."));
      return;
    }
    const traceStart = Math.min(...spans.map((s) => s.start_time_unix_nano));
    const traceEnd = Math.max(...spans.map((s) => s.end_time_unix_nano));
    const [start, end] = state.zoom || [traceStart, traceEnd];
    const hasChildren = new Set(spans.map((s) => s.parent_span_id).filter(Boolean));
    const hidden = hiddenSpans(spans, state.collapsed);
    const services = [...new Set(spans.map((s) => s.service_name))];
    const rows = [];
    for (const span of spans) {
      if (hidden.has(span.span_id)) continue;
      rows.push(spanRow(span, { start, length: Math.max(end - start, 1), traceStart, hasChildren, state, render }));
      if (state.open === span.span_id) rows.push(detailsRow(span, traceStart));
    }
    fill(holder,
      el("p", { id: "waterfall-summary" }, `${spans.length} spans from ${services.join(", ")}; ${formatNs(traceEnd - traceStart)} in all.`),
      state.zoom ? el("p", { id: "zoom-note" }, `Zoomed to ${formatNs(start - traceStart)} – ${formatNs(end - traceStart)}. `,
        el("button", { type: "button", id: "zoom-reset", onclick: () => { state.zoom = null; render(); } }, "Show the whole trace")) : null,
      el("div", { class: "table-scroll" }, el("table", { class: "waterfall" },
        el("caption", { class: "visually-hidden" }, "Spans in tree order, with start offset and duration"),
        el("thead", {}, el("tr", {}, ["Span", "Service", "Start", "Duration", "Timeline"]
          .map((name) => el("th", { scope: "col" }, name)))),
        el("tbody", {}, rows))));
  }

  holder.addEventListener("zoom-span", (event) => {
    state.zoom = [event.detail.start_time_unix_nano, Math.max(event.detail.end_time_unix_nano, event.detail.start_time_unix_nano + 1)];
    render();
  });
  return {
    get linking() { return state.linking; },
    show(trace) {
      state.trace = trace;
      state.linking = trace.linking_spans.length;
      render();
    },
  };
}

function hiddenSpans(spans, collapsed) {
  const hidden = new Set();
  for (const span of spans) { // tree order: a parent comes before its children
    if (collapsed.has(span.parent_span_id) || hidden.has(span.parent_span_id)) hidden.add(span.span_id);
  }
  return hidden;
}

function spanRow(span, { start, length, traceStart, hasChildren, state, render }) {
  const error = span.status_code === "ERROR";
  const left = Math.min(Math.max(((span.start_time_unix_nano - start) / length) * 100, 0), 99.5);
  const right = Math.min(Math.max(((span.end_time_unix_nano - start) / length) * 100, 0), 100);
  const width = Math.max(right - left, 0.5);
  const attributes = keyAttributes(span.attributes || {});
  const isOpen = state.open === span.span_id;
  const collapsed = state.collapsed.has(span.span_id);
  const toggle = hasChildren.has(span.span_id)
    ? el("button", { type: "button", class: "tree-toggle", "aria-expanded": String(!collapsed),
      "aria-label": `${collapsed ? "Expand" : "Collapse"} ${span.name}`, onclick: () => {
        if (collapsed) state.collapsed.delete(span.span_id); else state.collapsed.add(span.span_id);
        render();
      } }, collapsed ? "▸" : "▾")
    : el("span", { class: "tree-leaf", "aria-hidden": "true" }, "·");
  const name = el("button", { type: "button", class: "span-open", "aria-expanded": String(isOpen),
    onclick: () => { state.open = isOpen ? null : span.span_id; render(); } }, span.name);
  return el("tr", { class: `${error ? "span-error" : ""} ${isOpen ? "span-open-row" : ""}`, "data-service": span.service_name, "data-span": span.span_id },
    el("th", { scope: "row", class: "span-name", style: { paddingLeft: `${0.3 + Math.min(span.depth, 12) * 0.8}rem` } },
      toggle, " ", name,
      attributes ? el("div", { class: "muted mono small" }, attributes) : null,
      error ? el("div", { class: "error small" }, `error${span.status_message ? `: ${span.status_message}` : ""}`) : null),
    el("td", { "data-label": "Service" }, el("span", { class: `service service-${span.service_name}` }, span.service_name)),
    el("td", { class: "num", "data-label": "Start" }, formatNs(span.start_time_unix_nano - traceStart)),
    el("td", { class: "num", "data-label": "Duration" }, formatNs(span.duration_ns)),
    el("td", { class: "timeline", "aria-hidden": "true" },
      el("div", { class: "bar-track" }, el("div", { class: `bar ${error ? "bar-error" : ""}`,
        style: { marginLeft: `${left}%`, width: `${Math.min(width, 100 - left)}%` } }))));
}

function detailsRow(span, traceStart) {
  const value = (name, text) => {
    if (ID_ATTRIBUTES[name]) return idLink(ID_ATTRIBUTES[name], String(text));
    return el("span", { class: "mono" }, typeof text === "object" ? JSON.stringify(text) : String(text));
  };
  const attributes = Object.entries(span.attributes || {}).sort(([a], [b]) => a.localeCompare(b));
  const links = (span.links || []).map((link) => el("li", {}, idLink("trace", link.trace_id), ` span ${link.span_id}`));
  const events = (span.events || []).map((event) => el("li", {}, `${formatNs(event.time_unix_nano - traceStart)} ${event.name}`));
  return el("tr", { class: "span-details-row" }, el("td", { colspan: 5 },
    el("div", { class: "span-details", id: `details-${span.span_id}` },
      el("dl", { class: "facts" },
        [["span id", span.span_id], ["parent", span.parent_span_id || "none (root)"], ["kind", span.kind],
          ["status", span.status_code + (span.status_message ? `: ${span.status_message}` : "")]]
          .flatMap(([n, v]) => [el("dt", {}, n), el("dd", { class: "mono" }, v)]),
        attributes.flatMap(([n, v]) => [el("dt", { class: "mono small" }, n), el("dd", {}, value(n, v))])),
      links.length ? el("div", {}, el("strong", {}, "Links: "), el("ul", {}, links)) : null,
      events.length ? el("div", {}, el("strong", {}, "Events: "), el("ul", {}, events)) : null,
      el("button", { type: "button", class: "zoom", onclick: (event) => {
        event.target.dispatchEvent(new CustomEvent("zoom-span", { bubbles: true, detail: span }));
      } }, "Zoom to this span"))));
}
