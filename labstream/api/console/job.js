// Job view: status, exit code, log lines as they arrive, and the replay command.

import { get } from "./api.js";
import { copyText, el, formatDuration, formatTime, statusBadge } from "./dom.js";

const REFRESH_MS = 1000;

export function jobView(main, jobId, { announce, poll }) {
  const summary = el("div", { id: "job-summary" }, el("p", {}, "Loading the job…"));
  const replay = el("div", { id: "job-replay" });
  const logs = el("ol", { id: "job-log", class: "log", role: "log", "aria-label": "Log lines",
    tabindex: "0" });
  const logNote = el("p", { id: "job-log-note", class: "muted" }, "No log lines yet.");
  main.replaceChildren(
    el("h2", {}, "Job ", el("span", { class: "mono" }, jobId)),
    summary, replay,
    el("section", { "aria-labelledby": "log-heading" },
      el("h3", { id: "log-heading" }, "Log"), logNote, logs),
  );
  let afterSeq = -1;
  let shownStatus = null;
  poll(async () => {
    let job;
    try {
      job = await get(`/jobs/${encodeURIComponent(jobId)}`);
    } catch (error) {
      if (error.status !== 404) throw error;
      summary.replaceChildren(el("p", { class: "error" }, `No job ${jobId} for this tenant.`));
      announce(error.message, "error");
      return "stop";
    }
    const data = await get(`/jobs/${encodeURIComponent(jobId)}/logs?after=${afterSeq}`);
    for (const line of data.lines) {
      afterSeq = Math.max(afterSeq, line.seq);
      logs.append(el("li", { class: `log-${line.stream}`, "data-seq": line.seq },
        el("span", { class: "log-stream" }, line.stream), " ", line.line));
    }
    if (afterSeq >= 0) logNote.textContent = `${afterSeq + 1} line(s)${job.finished ? "" : ", more may come"}.`;
    if (job.status !== shownStatus) {
      shownStatus = job.status;
      summary.replaceChildren(jobSummary(job));
      replay.replaceChildren(replayBlock(job, announce));
      if (job.finished) announce(`Job ${job.id} ${job.status}${job.exit_code !== null ? `, exit code ${job.exit_code}` : ""}`);
    }
    // a finished job's lines are all written once its status is: one last read, then stop
    return job.finished && data.lines.length === 0 ? "stop" : undefined;
  }, REFRESH_MS);
}

function jobSummary(job) {
  const rows = [
    ["Status", statusBadge(job.status)],
    ["Exit code", job.exit_code === null ? "–" : el("span", { id: "job-exit-code" }, String(job.exit_code))],
    ["Rule", job.rule_id], ["Backend", job.backend], ["Attempt", String(job.attempt)],
    ["Experiment", job.experiment_id || "–"],
    ["Duration", formatDuration(job.duration_s)],
    ["Started", formatTime(job.started_at)], ["Finished", formatTime(job.finished_at)],
    ["Source record", job.source || "–"],
    ["Trace", job.trace_id ? el("a", { href: `#/traces/${job.trace_id}`, class: "mono" }, job.trace_id) : "–"],
  ];
  if (job.error) rows.push(["Error", el("span", { class: "error" }, job.error)]);
  return el("dl", { class: "facts" }, rows.flatMap(([name, value]) => [el("dt", {}, name), el("dd", {}, value)]));
}

function replayBlock(job, announce) {
  if (!job.replay) {
    return el("p", { class: "muted" }, "This job does not say which record triggered it: no replay command.");
  }
  const command = (id, label, text, copyLabel) => el("div", { class: "command" },
    el("label", { for: id }, label),
    el("div", { class: "command-row" },
      el("input", { id, readonly: true, value: text, class: "mono", spellcheck: "false" }),
      el("button", { type: "button", id: `${id}-copy`, "aria-label": copyLabel, onclick: async () => {
        const copied = await copyText(text);
        announce(copied ? `Copied: ${text}` : "Could not copy: select the command and copy it", copied ? "info" : "error");
      } }, "Copy")));
  return el("section", { "aria-labelledby": "replay-heading" },
    el("h3", { id: "replay-heading" }, "Replay the record that triggered it"),
    command("replay-dry-run", "Dry run (shows what would happen)", job.replay.dry_run,
      "Copy the dry-run command"),
    command("replay-execute", "Re-drive it (launches the job again)", job.replay.execute,
      "Copy the re-drive command"));
}
