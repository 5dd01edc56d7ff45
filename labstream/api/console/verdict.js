// The `labstream explain` verdict in words: the headline, the four answers, the next step.
// Shared by the trace view and the experiment page.

import { get } from "./api.js";
import { el, fill } from "./dom.js";

export function verdictSection() {
  const section = el("section", { id: "verdict", class: "verdict", "aria-labelledby": "verdict-heading" },
    el("h3", { id: "verdict-heading" }, "Verdict"),
    el("p", { id: "verdict-headline" }, "Working out what happened…"));
  let running = false;
  async function refresh(path) {
    if (running) return; // a verdict scans Kafka: one at a time per page
    running = true;
    try {
      show(section, await get(path));
    } catch (error) {
      if (error.status === 404 || error.unreachable) return; // not yet known / the API is away: ask again later
      section.querySelector("#verdict-headline").textContent = `No verdict: ${error.message}`;
    } finally {
      running = false;
    }
  }
  return { section, refresh };
}

function show(section, data) {
  const explanation = data.explanation;
  const ok = explanation.first_problem === null || explanation.first_problem === undefined;
  const pending = (explanation.answers || []).some((a) => a.status === "pending");
  section.className = `verdict ${ok ? "verdict-ok" : pending ? "verdict-pending" : "verdict-problem"}`;
  const answers = (explanation.answers || []).map((answer) =>
    el("li", { class: `answer answer-${answer.status}` },
      el("strong", {}, `${answer.question} `), `${answer.status.replace("_", " ")}: `, answer.summary,
      answer.fix && answer.fix.length ? el("div", { class: "fix" }, `fix: ${answer.fix[0]}`) : null));
  fill(section,
    el("h3", { id: "verdict-heading" }, "Verdict"),
    el("p", { id: "verdict-headline", class: "headline" }, data.headline),
    el("ol", { class: "answers" }, answers),
    explanation.next_step ? el("p", {}, el("strong", {}, "Next: "), explanation.next_step) : null,
  );
}
