"""`labstream explain` output: the answers as text for a terminal, or a stable JSON document."""

from __future__ import annotations

from typing import Any

import click

from explain.model import Facts
from explain.verdict import NO, NOT_REACHED, PENDING, UNKNOWN, YES, Explanation

SYMBOLS = {YES: "✔", NO: "✘", PENDING: "…", UNKNOWN: "?", NOT_REACHED: "·"}
COLOURS = {YES: "green", NO: "red", PENDING: "yellow", UNKNOWN: "yellow", NOT_REACHED: None}
JSON_VERSION = 1


def explanation_document(explanation: Explanation, facts: Facts) -> dict[str, Any]:
    """The `--json` document (keys are stable; `version` changes if they do)."""
    problem = explanation.first_problem
    return {
        "version": JSON_VERSION,
        "query": explanation.query,
        "experiment_id": explanation.experiment_id,
        "experiment_status": facts.experiment.status if facts.experiment else None,
        "runs": [{"id": run.id, "status": run.status} for run in facts.runs],
        "trace_ids": list(explanation.trace_ids),
        "ok": problem is None,
        "first_problem": problem.id if problem else None,
        "next_step": explanation.next_step,
        "answers": [
            {
                "id": answer.id,
                "question": answer.question,
                "status": answer.status,
                "ok": answer.status == YES,
                "summary": answer.summary,
                "evidence": list(answer.evidence),
                "fix": list(answer.fix),
                "data": answer.data,
            }
            for answer in explanation.answers
        ],
        "traces": [
            {"trace_id": t.trace_id, "span_count": t.span_count, "services": list(t.services),
             "error_spans": list(t.error_spans), "linking_services": list(t.linking_services)}
            for t in facts.traces
        ],
        "notes": list(explanation.notes),
    }


def render_text(explanation: Explanation, facts: Facts) -> str:
    lines = [_heading(explanation, facts), ""]
    for number, answer in enumerate(explanation.answers, start=1):
        symbol = click.style(SYMBOLS[answer.status], fg=COLOURS[answer.status], bold=True)
        lines.append(f"{symbol} {number}. {answer.question} {answer.summary}")
        lines.extend(f"     {item}" for item in answer.evidence)
        lines.extend(f"     fix: {item}" for item in answer.fix)
    lines.append("")
    for trace in facts.traces:
        errors = f", {len(trace.error_spans)} error span(s)" if trace.error_spans else ""
        linked = (f"; linked from {', '.join(trace.linking_services)}"
                  if trace.linking_services else "")
        lines.append(f"trace {trace.trace_id}: {trace.span_count} spans from "
                     f"{', '.join(trace.services)}{linked}{errors}  "
                     f"(labstream trace {trace.trace_id})")
        lines.extend(f"     error: {item}" for item in trace.error_spans[:5])
    lines.extend(f"note: {note}" for note in explanation.notes)
    lines.append(click.style("next: ", bold=True) + explanation.next_step)
    return "\n".join(lines)


def _heading(explanation: Explanation, facts: Facts) -> str:
    experiment = facts.experiment
    if experiment is None:
        return f"trace {', '.join(explanation.trace_ids)}"
    runs = ", ".join(f"{run.id} {run.status}" for run in facts.runs) or "no runs"
    return (f"experiment {experiment.id} ({experiment.kind}, tenant {experiment.tenant_id}, "
            f"{experiment.status}; {runs})")
