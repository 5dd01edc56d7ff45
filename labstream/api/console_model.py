"""Pure pieces of the lab console's endpoints: replay commands, the verdict headline,
and the page's own span.

No I/O here, so each is unit-tested without a database.
"""

from __future__ import annotations

import base64
import json
import shlex
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Literal

from pydantic import BaseModel, Field, field_validator

from base.contracts.traceids import is_span_id, trace_id_of

# the browser's clock may be off; a span claiming to be older than this is refused
MAX_SPAN_LENGTH_NS = 10 * 60 * 1_000_000_000
FINISHED = ("succeeded", "failed", "timed_out", "launch_failed")


def replay_commands(job: dict[str, Any]) -> dict[str, str] | None:
    """`labstream replay run` for the record that triggered the job: dry run, then for real.

    None when the jobs row does not say which record it came from. After a re-drive
    the row names the replayed copy, which a replay leaves out (it selects originals
    only): the commands then name the original (`replayed_from`, from the replay's span).
    """
    topic, partition, offset = (job.get(k) for k in
                                ("source_topic", "source_partition", "source_offset"))
    original = job.get("replayed_from")
    if original:
        topic, partition, offset = str(original).rsplit("/", 2)
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


# -- search, filters and paging (GET /experiments, GET /jobs) --------------------------------

EXPERIMENT_STATUSES = ("submitted", "queued", "running", "completed", "failed", "cancelled")
JOB_STATUSES = ("queued", "started", "succeeded", "failed", "timed_out", "launch_failed")
KINDS = ("hplc", "synthesis", "cell-culture", "lc-ms", "plate-read")
DEFAULT_PAGE, MAX_PAGE = 20, 100


class QueryError(ValueError):
    """A bad query parameter: `field` names it, `hint` says how to fix it."""

    def __init__(self, field: str, message: str, hint: str) -> None:
        super().__init__(f"{field}: {message}")
        self.field, self.hint = field, hint


@dataclass(frozen=True)
class ListQuery:
    """The filters of a list page, checked; every value is a bound SQL parameter."""

    q: str | None = None
    status: str | None = None
    kind: str | None = None
    submitted_by: str | None = None
    rule: str | None = None
    job_status: str | None = None
    since: datetime | None = None
    until: datetime | None = None
    limit: int = DEFAULT_PAGE
    # keyset cursor: the (created_at, id) of the last row of the previous page
    before: tuple[datetime, str] | None = None

    def params(self, tenant_id: str) -> dict[str, Any]:
        before_at, before_id = self.before if self.before else (None, None)
        # a trace id (or a whole traceparent) in the search box finds what it touched
        trace = trace_id_of(self.q) if self.q else None
        return {"tenant_id": tenant_id, "q": self.q, "q_like": _like(self.q), "trace": trace,
                "status": self.status, "kind": self.kind, "submitted_by": self.submitted_by,
                "rule": self.rule, "job_status": self.job_status, "since": self.since,
                "until": self.until, "before_at": before_at, "before_id": before_id,
                "limit": self.limit + 1}  # one more: tells whether another page follows


def _like(text: str | None) -> str | None:
    if not text:
        return None
    return "%" + text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"


def parse_list_query(params: Mapping[str, str], *, statuses: tuple[str, ...]) -> ListQuery:
    """Query parameters to a `ListQuery`; a bad one raises `QueryError` naming it."""
    def text(name: str, max_length: int = 200) -> str | None:
        value = (params.get(name) or "").strip()
        if len(value) > max_length:
            raise QueryError(name, f"longer than {max_length} characters", "shorten it")
        return value or None

    def choice(name: str, allowed: tuple[str, ...]) -> str | None:
        value = text(name)
        if value is not None and value not in allowed:
            raise QueryError(name, f"{value!r} is not one of {', '.join(allowed)}",
                             f"use one of {', '.join(allowed)}")
        return value

    return ListQuery(
        q=text("q"), status=choice("status", statuses), kind=choice("kind", KINDS),
        submitted_by=text("submitted_by"), rule=text("rule"),
        job_status=choice("job_status", JOB_STATUSES),
        since=_time(params, "since"), until=_time(params, "until"),
        limit=_limit(params.get("limit")), before=decode_cursor(params.get("before")),
    )


def _limit(value: str | None) -> int:
    if value is None or value == "":
        return DEFAULT_PAGE
    try:
        number = int(value)
    except ValueError:
        raise QueryError("limit", f"{value!r} is not an integer", "e.g. ?limit=20") from None
    if not 1 <= number <= MAX_PAGE:
        raise QueryError("limit", f"{number} is not between 1 and {MAX_PAGE}", "e.g. ?limit=20")
    return number


def _time(params: Mapping[str, str], name: str) -> datetime | None:
    value = (params.get(name) or "").strip()
    if not value:
        return None
    try:
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        raise QueryError(name, f"{value!r} is not an ISO-8601 time",
                         "e.g. 2026-12-03T09:00:00Z") from None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def encode_cursor(created_at: datetime, row_id: str) -> str:
    """The opaque `before` of the next page: the last row's (created_at, id)."""
    raw = json.dumps([created_at.isoformat(), row_id]).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_cursor(value: str | None) -> tuple[datetime, str] | None:
    if not value:
        return None
    try:
        raw = base64.urlsafe_b64decode(value + "=" * (-len(value) % 4))
        created, row_id = json.loads(raw)
        return datetime.fromisoformat(created), str(row_id)
    except (ValueError, TypeError):
        raise QueryError("before", "is not a cursor this API gave out",
                         "use the next_before of the previous page, or drop it") from None


def page(rows: list[dict[str, Any]], limit: int) -> tuple[list[dict[str, Any]], str | None]:
    """The first `limit` rows and the cursor of the next page (None: this was the last)."""
    if len(rows) <= limit:
        return rows, None
    kept = rows[:limit]
    return kept, encode_cursor(kept[-1]["created_at"], kept[-1]["id"])
