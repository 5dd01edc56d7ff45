// Job view: its facts, the replay commands, and its log as CI logs show one: a line
// number that is a link, a timestamp per line, attempts as sections, follow, search
// and download.

import { get } from "./api.js";
import { replayActions } from "./replay.js";
import { copyText, el, formatClock, formatDuration, formatTime, idLink, stateNote, statusBadge } from "./dom.js";

const REFRESH_MS = 1000;
const REDRIVE_WAIT_MS = 120_000; // how long a re-drive may take to become a new attempt

export function jobView(main, jobId, { announce, poll, setTitle, params }) {
  setTitle(`Job ${jobId}`);
  const summary = el("div", { id: "job-summary", "aria-busy": "true" }, stateNote("loading", "Loading the job…"));
  const replay = el("div", { id: "job-replay" });
  const log = logPanel(jobId, params.get("line"));
  main.replaceChildren(
    el("h2", {}, "Job ", el("span", { class: "mono" }, jobId)),
    summary, replay, log.section);
  const replayOutput = el("div", { id: "replay-output", "aria-live": "polite" });
  let afterSeq = -1;
  let shownJson = "";
  // after a re-drive the row still shows the finished attempt until the worker queues the
  // next one: keep following until the attempt passes this one (or the wait runs out)
  let redrivenAttempt = 0;
  let redriveWaitUntil = 0;
  const task = async () => {
    const job = await get(`/jobs/${encodeURIComponent(jobId)}`);
    const data = await get(`/jobs/${encodeURIComponent(jobId)}/logs?after=${afterSeq}`);
    for (const line of data.lines) afterSeq = Math.max(afterSeq, line.seq);
    log.add(data.lines, job);
    const json = JSON.stringify([job.status, job.attempt, job.replay, job.finished]);
    if (json !== shownJson) {
      const first = shownJson === "";
      shownJson = json;
      summary.removeAttribute("aria-busy");
      summary.replaceChildren(jobSummary(job));
      replay.replaceChildren(replayBlock(job, announce, replayOutput, follow), replayOutput);
      setTitle(`Job ${job.id} · ${job.status}`);
      if (job.finished && !first) announce(`Job ${job.id} ${job.status}${job.exit_code !== null ? `, exit code ${job.exit_code}` : ""}`);
    }
    // a finished job's lines are all written once its status is: one last read, then stop
    const awaitingNext = job.attempt <= redrivenAttempt && Date.now() < redriveWaitUntil;
    if (job.finished && data.lines.length === 0 && !awaitingNext) {
      log.finished(job);
      return "stop";
    }
    return undefined;
  };
  const onFinal = (error) => {
    summary.removeAttribute("aria-busy");
    const missing = error.status === 404;
    summary.replaceChildren(stateNote(missing ? "not-found" : "error",
      missing ? `No job ${jobId} for this tenant.` : error.message));
    log.section.hidden = true;
    setTitle(missing ? "Job not found" : "Job: error");
    announce(error.message, "error");
  };
  // after a re-drive from this page: follow the new attempt until it finishes
  let following = false;
  const follow = (redrivenFrom = 0) => {
    if (redrivenFrom) {
      redrivenAttempt = redrivenFrom;
      redriveWaitUntil = Date.now() + REDRIVE_WAIT_MS;
    }
    if (following) return; // already polling: one loop per view
    following = true;
    poll(async () => {
      const outcome = await task();
      if (outcome === "stop") following = false;
      return outcome;
    }, REFRESH_MS, (error) => { following = false; onFinal(error); });
  };
  follow();
}

function jobSummary(job) {
  const rows = [
    ["Status", statusBadge(job.status)],
    ["Exit code", job.exit_code === null ? "–" : el("span", { id: "job-exit-code" }, String(job.exit_code))],
    ["Rule", job.rule_id], ["Backend", job.backend], ["Attempt", String(job.attempt)],
    ["Experiment", idLink("experiment", job.experiment_id, { id: "job-experiment" })],
    ["Duration", formatDuration(job.duration_s)],
    ["Started", formatTime(job.started_at)], ["Finished", formatTime(job.finished_at)],
    ["Source record", job.source || "–"],
    ["Trace", idLink("trace", job.trace_id)],
  ];
  if (job.replayed_from) rows.push(["Replay of", el("span", { class: "mono", id: "job-replayed-from" }, job.replayed_from)]);
  if (job.error) rows.push(["Error", el("span", { class: "error" }, job.error)]);
  return el("dl", { class: "facts" }, rows.flatMap(([name, value]) => [el("dt", {}, name), el("dd", {}, value)]));
}

function replayBlock(job, announce, output, onRedriven) {
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
    job.replayed_from ? el("p", { class: "muted" }, `This attempt ran on a replayed copy (${job.source}); the commands name the original, ${job.replayed_from}.`) : null,
    command("replay-dry-run", "Dry run (shows what would happen)", job.replay.dry_run,
      "Copy the dry-run command"),
    command("replay-execute", "Re-drive it (launches the job again)", job.replay.execute,
      "Copy the re-drive command"),
    replayActions(job, announce, output, () => onRedriven(job.attempt)));
}

// The log: sections per attempt (a new attempt runs in a new trace), each line with its
// number (a link: #/jobs/<id>?line=<seq>), time and stream.
function logPanel(jobId, wantedLine) {
  const lines = [];
  const list = el("div", { id: "job-log", class: "log", role: "log", "aria-label": "Log lines", tabindex: "0" });
  const note = el("p", { id: "job-log-note", class: "muted" }, "No log lines yet.");
  const search = el("input", { id: "log-search", type: "search", placeholder: "filter lines", spellcheck: "false" });
  const follow = el("input", { id: "log-follow", type: "checkbox", checked: true });
  const matches = el("span", { id: "log-matches", class: "muted", "aria-live": "polite" });
  const download = el("button", { type: "button", id: "log-download" }, "Download");
  const toolbar = el("div", { class: "log-toolbar" },
    el("label", { for: "log-search" }, "Search"), search, matches,
    el("label", { class: "check" }, follow, " Follow"), download);
  let section = null;
  let sectionTrace;
  let attempt = 0;
  let highlighted = false;

  const applySearch = () => {
    const text = search.value.trim().toLowerCase();
    let count = 0;
    for (const row of list.querySelectorAll(".log-line")) {
      const hit = !text || row.dataset.text.includes(text);
      row.hidden = !hit;
      count += hit && text ? 1 : 0;
    }
    matches.textContent = text ? `${count} matching line(s)` : "";
  };
  search.addEventListener("input", applySearch);
  // as in CI logs: scrolling up to read stops following, ticking Follow jumps to the end
  let autoScrolling = false;
  list.addEventListener("scroll", () => {
    if (autoScrolling) return;
    const atEnd = list.scrollTop + list.clientHeight >= list.scrollHeight - 4;
    if (follow.checked !== atEnd) follow.checked = atEnd;
  });
  follow.addEventListener("change", () => {
    if (follow.checked) list.scrollTop = list.scrollHeight;
  });
  download.addEventListener("click", () => {
    const text = lines.map((l) => `${l.logged_at} ${l.stream} ${l.line}`).join("\n") + "\n";
    const link = el("a", { href: URL.createObjectURL(new Blob([text], { type: "text/plain" })), download: `${jobId}.log` });
    document.body.append(link);
    link.click();
    link.remove();
  });

  function add(batch, job) {
    for (const line of batch) {
      lines.push(line);
      if (section === null || line.trace_id !== sectionTrace) {
        attempt += 1;
        sectionTrace = line.trace_id;
        section = el("ol", { class: "log-lines", start: line.seq + 1 });
        list.append(el("section", { class: "log-section", "data-attempt": attempt },
          el("h4", { class: "log-section-heading" }, `Attempt ${attempt}`,
            line.trace_id ? el("span", {}, " · trace ", idLink("trace", line.trace_id, { class: "mono" })) : null),
          section));
      }
      const href = `#/jobs/${encodeURIComponent(jobId)}?line=${line.seq}`;
      section.append(el("li", { class: `log-line log-${line.stream}`, id: `L${line.seq}`, "data-seq": line.seq,
        "data-text": line.line.toLowerCase() },
        el("a", { class: "log-number", href, "aria-label": `line ${line.seq + 1}` }, String(line.seq + 1)),
        el("time", { class: "log-time", datetime: line.logged_at }, formatClock(Date.parse(line.logged_at))),
        el("span", { class: "log-stream" }, line.stream), " ",
        el("span", { class: "log-text" }, line.line)));
    }
    if (batch.length) {
      note.textContent = `${lines.length} line(s)${job.finished ? "" : ", more may come"}${attempt > 1 ? `, ${attempt} attempts` : ""}.`;
      applySearch();
      if (wantedLine !== null && !highlighted) {
        const target = list.querySelector(`#L${CSS.escape(wantedLine)}`);
        if (target) {
          highlighted = true;
          target.classList.add("log-wanted");
          target.scrollIntoView({ block: "center" });
        }
      } else if (follow.checked) {
        autoScrolling = true;
        list.scrollTop = list.scrollHeight;
        requestAnimationFrame(() => { autoScrolling = false; });
      }
    }
  }

  function finished(job) {
    if (!lines.length) note.textContent = `The job ${job.status} without writing a log line.`;
    else note.textContent = `${lines.length} line(s)${attempt > 1 ? `, ${attempt} attempts` : ""}; the job ${job.status}.`;
  }

  const sectionEl = el("section", { "aria-labelledby": "log-heading" },
    el("h3", { id: "log-heading" }, "Log"), toolbar, note, list);
  return { section: sectionEl, add, finished };
}
