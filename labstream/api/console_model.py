"""Pure pieces of the lab console's endpoints: replay commands, the verdict headline,
and the page's own span.

No I/O here, so each is unit-tested without a database.
"""

from __future__ import annotations

import shlex
from typing import Any, Literal

from pydantic import BaseModel, Field, field_validator

from base.contracts.traceids import is_span_id

# the browser's clock may be off; a span claiming to be older than this is refused
MAX_SPAN_LENGTH_NS = 10 * 60 * 1_000_000_000
FINISHED = ("succeeded", "failed", "timed_out", "launch_failed")


def replay_commands(job: dict[str, Any]) -> dict[str, str] | None:
    """`labstream replay run` for the record that triggered the job: dry run, then for real.

    None when the jobs row does not say which record it came from.
    """
    topic, partition, offset = (job.get(k) for k in
                                ("source_topic", "source_partition", "source_offset"))
    if not topic or partition is None or offset is None:
        return None
    base = f"labstream replay run --offsets {shlex.quote(f'{topic}:{partition}:{offset}')}"
    # a succeeded job is not launched again unless asked; a failed one starts a new attempt
    again = " --rerun-succeeded" if job.get("status") == "succeeded" else ""
    return {"dry_run": base, "execute": f"{base} --execute{again}"}


def job_document(job: dict[str, Any]) -> dict[str, Any]:
    """The GET /jobs/{id} answer: the row, whether it is finished, how to replay it."""
    source = None
    if job.get("source_topic"):
        source = f"{job['source_topic']}/{job['source_partition']}/{job['source_offset']}"
    return {**job, "finished": job.get("status") in FINISHED, "source": source,
            "replay": replay_commands(job)}


def _answer(document: dict[str, Any], answer_id: str) -> dict[str, Any]:
    return next((a for a in document.get("answers", []) if a.get("id") == answer_id), {})


def _last_line(answer: dict[str, Any]) -> str | None:
    for job in (answer.get("data") or {}).get("jobs", []):
        lines = job.get("last_lines") or []
        if job.get("status") in ("failed", "timed_out") and lines:
            return str(lines[-1].get("line", ""))
    return None


def headline(document: dict[str, Any]) -> str:
    """One sentence at the top of the trace view, from the `labstream explain` document.

    It only rephrases the verdict (`explain.verdict`): which answer is the
    first that is not yes, and its summary.
    """
    problem = document.get("first_problem")
    if not document.get("answers"):
        notes = "; ".join(map(str, document.get("notes") or [])) or "nothing could be read"
        return f"no verdict yet: {notes}"
    if problem is None:
        succeeded = _answer(document, "succeeded")
        evidence = succeeded.get("evidence") or []
        # one job: say which, how it ended and how long it took ("job j-1: succeeded, ...")
        detail = evidence[0] if len(evidence) == 1 else succeeded.get("summary", "")
        return f"the job succeeded: {detail}"
    answer = _answer(document, problem)
    status, summary = answer.get("status"), str(answer.get("summary", ""))
    if problem == "succeeded" and status == "no":
        failed: dict[str, Any] = next((j for j in (answer.get("data") or {}).get("jobs", [])
                       if j.get("status") in ("failed", "timed_out")), {})
        code = failed.get("exit_code")
        reason = (f"exit code {code}" if code is not None
                  else "timed out" if failed.get("status") == "timed_out"
                  else str(failed.get("error") or summary))
        last = _last_line(answer)
        return f"the job failed: {reason}" + (f"; last log line: {last}" if last else "")
    words = {"pending": "not yet", "unknown": "unknown", "no": "no"}.get(str(status), status)
    question = str(answer.get("question", problem)).rstrip("?").lower()
    return f"{question}? {words}: {summary}"


class BrowserSpanIn(BaseModel):
    """Body of POST /traces/{trace_id}/spans: the console page's own span."""

    model_config = {"extra": "forbid"}

    span_id: str
    name: str = Field(min_length=1, max_length=200)
    experiment_id: str = Field(min_length=1, max_length=100)
    start_time_unix_nano: int = Field(gt=0)
    end_time_unix_nano: int = Field(gt=0)
    status: Literal["OK", "ERROR"] = "OK"
    status_message: str | None = Field(default=None, max_length=500)
    url_path: str = Field(default="/console/", max_length=500)
    user_agent: str = Field(default="", max_length=500)

    @field_validator("span_id")
    @classmethod
    def _hex_span_id(cls, value: str) -> str:
        if not is_span_id(value):
            raise ValueError("16 lower-case hex digits, not all zero")
        return value

    def row(self, trace_id: str, tenant_id: str) -> dict[str, Any]:
        if not 0 <= self.end_time_unix_nano - self.start_time_unix_nano <= MAX_SPAN_LENGTH_NS:
            raise ValueError("the span must end after it starts, within 10 minutes")
        return {
            "trace_id": trace_id,
            "span_id": self.span_id,
            "name": self.name,
            "start_time_unix_nano": self.start_time_unix_nano,
            "end_time_unix_nano": self.end_time_unix_nano,
            "status_code": self.status,
            "status_message": self.status_message,
            "attributes": {
                "lab.tenant.id": tenant_id,
                "lab.experiment.id": self.experiment_id,
                "url.path": self.url_path,
                "user_agent.original": self.user_agent,
            },
        }
