// Replay from the page: the dry run of the job's record as a then-vs-now table, and the
// re-drive behind a confirmation (type the job id, say who you are: the API stores that
// consent before anything is produced).

import { request } from "./api.js";
import { el, fill, stateNote } from "./dom.js";

// `output` outlives this block (the job view rebuilds it when the job changes);
// `onRedriven` lets the view follow the new attempt.
export function replayActions(job, announce, output, onRedriven) {
  const dryRun = el("button", { type: "button", id: "replay-dry-run-here" }, "Dry run here");
  const redrive = el("button", { type: "button", id: "replay-execute-open", class: "danger" }, "Re-drive…");
  dryRun.addEventListener("click", async () => {
    dryRun.disabled = true;
    fill(output, stateNote("loading", "Running the dry run (reads Kafka; a few seconds)…"));
    try {
      const { data } = await request("POST", `/jobs/${encodeURIComponent(job.id)}/replay/dry-run`);
      fill(output, dryRunTable(data));
      announce(`Dry run of ${data.record}: ${data.summary}`);
    } catch (error) {
      fill(output, stateNote("error", `Dry run failed: ${error.message}${error.hint ? ` (${error.hint})` : ""}`));
    } finally {
      dryRun.disabled = false;
    }
  });
  redrive.addEventListener("click", () => {
    fill(output, confirmForm(job, output, announce, onRedriven));
    output.querySelector("#confirm-job-id").focus();
  });
  return el("div", { class: "replay-actions" }, el("div", { class: "actions" }, dryRun, " ", redrive));
}

function decisionText(decision) {
  if (!decision) return "–";
  if (decision.outcome === "fired") return `fires rule ${decision.rule_id}`;
  return `${decision.outcome}${decision.rule_id ? ` (rule ${decision.rule_id})` : ""}: ${decision.reason}`;
}

// One row per rule or reason: what the chain decided then, what it would decide now.
function dryRunTable(data) {
  if (!data.outcomes.length) {
    const why = data.replays_left_out ? " (it is a replayed copy: replays select originals only)" : "";
    return stateNote("empty", `The dry run matched no record at ${data.record}${why}.`);
  }
  const rows = [];
  for (const outcome of data.outcomes) {
    const key = (d) => (d.outcome === "fired" ? `rule ${d.rule_id}` : d.rule_id ? `rule ${d.rule_id}` : d.reason);
    const then = new Map((outcome.then || []).map((d) => [key(d), d]));
    const now = new Map(outcome.now.map((d) => [key(d), d]));
    const keys = [...new Set([...then.keys(), ...now.keys()])];
    if (!keys.length) rows.push([outcome.coordinates, outcome.status, "–", outcome.note || outcome.status, "–", ""]);
    for (const name of keys) {
      const before = then.get(name);
      const after = now.get(name);
      const same = before && after && before.outcome === after.outcome;
      rows.push([outcome.coordinates, (outcome.kinds || []).join(", ") || outcome.status,
        outcome.then === null ? "not recorded" : decisionText(before), decisionText(after),
        (after && after.launch) || "–", same ? "same" : "changed"]);
    }
  }
  const headings = ["Record", "Event", "Then", "Now", "With --execute", ""];
  return el("div", {},
    el("p", { class: "muted" }, `${data.command}: ${data.summary}`),
    el("div", { class: "table-scroll" }, el("table", { class: "experiments", id: "dry-run-table" },
      el("caption", {}, "Dry run: then (the decision recorded when it happened) vs now (today's rules)"),
      el("thead", {}, el("tr", {}, headings.map((h) => el("th", { scope: "col" }, h)))),
      el("tbody", {}, rows.map((cells) => el("tr", { class: cells[5] === "changed" ? "dry-run-changed" : "" },
        cells.map((cell, i) => el(i ? "td" : "th", i ? { "data-label": headings[i] || "Changed" } : { scope: "row", class: "mono small" }, cell))))))));
}

function confirmForm(job, output, announce, onRedriven) {
  const form = el("form", { id: "replay-confirm", class: "confirm-box", "aria-labelledby": "confirm-heading" },
    el("h4", { id: "confirm-heading" }, "Re-drive this record into the live chain?"),
    el("p", {}, `The record ${job.replayed_from || job.source} is produced again into its production topic: the live agents process it `,
      job.status === "succeeded" ? "and the job runs again even though it succeeded (--rerun-succeeded). "
        : "and the job starts a new attempt. ",
      "Who agreed, and when, is recorded."),
    el("div", { class: "field" }, el("label", { for: "confirm-job-id" }, `Type the job id (${job.id}) to confirm`),
      el("input", { id: "confirm-job-id", name: "confirm_job_id", required: true, autocomplete: "off", spellcheck: "false" })),
    el("div", { class: "field" }, el("label", { for: "consented-by" }, "Your name"),
      el("input", { id: "consented-by", name: "consented_by", required: true, autocomplete: "username" })),
    el("div", { class: "actions" },
      el("button", { type: "submit", id: "replay-execute-confirm", class: "danger" }, "Re-drive it"), " ",
      el("button", { type: "button", id: "replay-execute-cancel", class: "secondary",
        onclick: () => { fill(output); announce("Re-drive cancelled: nothing was produced"); } }, "Cancel")));
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    const values = Object.fromEntries(new FormData(form));
    if (values.confirm_job_id.trim() !== job.id) {
      announce(`Type the job id ${job.id} exactly to confirm`, "error");
      form.querySelector("#confirm-job-id").focus();
      return;
    }
    form.querySelector("#replay-execute-confirm").disabled = true;
    try {
      const { data } = await request("POST", `/jobs/${encodeURIComponent(job.id)}/replay/execute`,
        { body: { confirm_job_id: values.confirm_job_id.trim(), consented_by: values.consented_by.trim() } });
      fill(output, el("p", { id: "replay-result" }, `Replay ${data.replay_id} ${data.status}: produced ${data.produced} record(s) from ${data.record}; consent #${data.consent_id} by ${data.consented_by} recorded.`));
      announce(`Re-drove ${data.record} (replay ${data.replay_id})`);
      onRedriven();
    } catch (error) {
      fill(output, stateNote("error", `Not re-driven: ${error.message}${error.hint ? ` (${error.hint})` : ""}`));
    }
  });
  return form;
}
