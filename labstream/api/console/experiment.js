// Experiment page: one experiment's whole story. Its facts, the `labstream explain`
// verdict, its runs, all its jobs (with their attempts and replay commands) and every
// trace that touched it (submission, run completion, replays), each id a link.

import { get } from "./api.js";
import { el, formatDuration, formatTime, idLink, stateNote, statusBadge } from "./dom.js";
import { verdictSection } from "./verdict.js";

const REFRESH_MS = 3000;

export function experimentView(main, experimentId, { poll, setTitle }) {
  setTitle(`Experiment ${experimentId}`);
  const body = el("div", { id: "experiment-body", "aria-busy": "true" }, stateNote("loading", "Loading the experiment…"));
  const verdict = verdictSection();
  main.replaceChildren(
    el("h2", {}, "Experiment ", el("span", { class: "mono", id: "experiment-id" }, experimentId)),
    verdict.section, body);
  let lastJson = "";
  let lastVerdict = 0;
  poll(async () => {
    const data = await get(`/experiments/${encodeURIComponent(experimentId)}/overview`);
    const json = JSON.stringify(data);
    const changed = json !== lastJson;
    if (changed) {
      lastJson = json;
      body.removeAttribute("aria-busy");
      body.replaceChildren(...overview(data));
    }
    const explainPath = `/experiments/${encodeURIComponent(experimentId)}/explain`;
    if (changed || Date.now() - lastVerdict > 10 * REFRESH_MS) {
      lastVerdict = Date.now();
      verdict.refresh(explainPath);
    }
    // settled: nothing more will change; ask for the verdict once more (its facts reach
    // Kafka and the span store a few seconds late), then stop polling
    const settled = ["completed", "failed", "cancelled"].includes(data.experiment.status)
      && data.jobs.every((job) => job.finished);
    if (settled) setTimeout(() => verdict.refresh(explainPath), 8000);
    return settled ? "stop" : undefined;
  }, REFRESH_MS, (error) => {
    body.removeAttribute("aria-busy");
    const text = error.status === 404 ? `No experiment ${experimentId} for this tenant.` : error.message;
    body.replaceChildren(stateNote(error.status === 404 ? "not-found" : "error", text));
    verdict.section.hidden = true;
    setTitle(error.status === 404 ? "Experiment not found" : "Experiment: error");
  });
}

function overview({ experiment, runs, jobs, traces }) {
  const facts = [
    ["Status", statusBadge(experiment.status)], ["Kind", experiment.kind],
    ["Title", experiment.title || "–"], ["Submitted by", experiment.submitted_by],
    ["Priority", String(experiment.priority)], ["Created", formatTime(experiment.created_at)],
    ["Completed", formatTime(experiment.completed_at)],
  ];
  return [
    el("dl", { class: "facts", id: "experiment-facts" }, facts.flatMap(([n, v]) => [el("dt", {}, n), el("dd", {}, v)])),
    el("section", { "aria-labelledby": "runs-heading" }, el("h3", { id: "runs-heading" }, `Runs (${runs.length})`),
      runs.length ? table("runs", ["Run", "Instrument", "Status", "Started", "Finished", "Error"], runs.map((run) => [
        el("span", { class: "mono" }, run.id), run.instrument_id, statusBadge(run.status), formatTime(run.started_at),
        formatTime(run.finished_at), run.error ? el("span", { class: "error" }, run.error) : "–"]))
        : stateNote("empty", "No run yet: the lab has not started this experiment.")),
    el("section", { "aria-labelledby": "jobs-heading" }, el("h3", { id: "jobs-heading" }, `Jobs (${jobs.length})`),
      jobs.length ? table("experiment-jobs", ["Job", "Rule", "Status", "Attempts", "Exit", "Duration", "Record", "Trace"],
        jobs.map((job) => [idLink("job", job.id), job.rule_id, statusBadge(job.status), attemptList(job),
          job.exit_code === null ? "–" : String(job.exit_code), formatDuration(job.duration_s),
          el("span", { class: "mono small" }, job.replayed_from ? `${job.source} (replay of ${job.replayed_from})` : job.source || "–"),
          idLink("trace", job.trace_id, { class: "mono small" })]))
        : stateNote("empty", "No job yet: a rule fires when the lab writes a change it reacts to.")),
    el("section", { "aria-labelledby": "traces-heading" }, el("h3", { id: "traces-heading" }, `Traces (${traces.length})`),
      traces.length ? el("ul", { class: "trace-list", id: "experiment-traces" }, traces.map(traceItem))
        : stateNote("empty", "No trace yet: spans reach the span store a few seconds late.")),
  ];
}

// Every attempt of the job (from its spans; the jobs row keeps only the last one).
function attemptList(job) {
  if (!job.attempts || !job.attempts.length) return String(job.attempt);
  return el("ol", { class: "attempts", "data-job-attempts": job.id }, job.attempts.map((a) =>
    el("li", { "data-attempt": a.attempt }, `#${a.attempt} `, statusBadge(a.status),
      a.exit_code === null ? "" : ` exit ${a.exit_code}`, " · ",
      idLink("trace", a.trace_id, { class: "mono small", title: a.trace_id }))));
}

export function traceItem(trace) {
  const what = trace.replay_id ? `replay ${trace.replay_id} of ${trace.replay_of || "a record"}`
    : trace.root_name || "spans still arriving";
  return el("li", { "data-trace": trace.trace_id },
    idLink("trace", trace.trace_id), " ", el("span", {}, what),
    el("span", { class: "muted" }, ` · ${trace.span_count} span(s)`),
    trace.relation ? el("span", { class: "muted" }, ` · ${trace.relation}`) : null,
    trace.has_error ? el("span", { class: "error" }, " · has errors") : null,
    trace.start_time_unix_nano ? el("span", { class: "muted" }, ` · ${formatTime(new Date(trace.start_time_unix_nano / 1e6).toISOString())}`) : null);
}

function table(id, headings, rows) {
  return el("div", { class: "table-scroll" }, el("table", { class: "experiments", id },
    el("thead", {}, el("tr", {}, headings.map((name) => el("th", { scope: "col" }, name)))),
    el("tbody", {}, rows.map((cells) => el("tr", {}, cells.map((cell, index) =>
      el(index === 0 ? "th" : "td", index === 0 ? { scope: "row" } : { "data-label": headings[index] }, cell)))))));
}

