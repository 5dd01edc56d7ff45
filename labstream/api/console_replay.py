"""Replay from the console: the dry run of a job's record, and its re-drive with consent.

    POST /jobs/{id}/replay/dry-run  -> what today's chain would do with the record, next to
                                       what it decided then (`labstream replay run`)
    POST /jobs/{id}/replay/execute  -> {"confirm_job_id", "consented_by"}: the consent is
                                       stored first (labstream.console_replay_consents), then
                                       the record is re-driven (`... --execute --yes`)

Both use the replay tool itself (`replay.dryrun.dry_run`, `replay.runner.execute`) on the
record that triggered the job, or on the original when the job ran on a replayed copy, in
a worker thread: they read Kafka and must not block the API's event loop.
"""

from __future__ import annotations

from typing import Any

import psycopg
from pydantic import BaseModel, Field, ValidationError
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response

from base.db import connect
from base.errors import LabstreamError, ServiceUnavailable
from labstream.api import console_store
from labstream.api.app import json_response
from labstream.api.console_model import job_document
from labstream.api.exceptions import ApiError, Conflict, InvalidRequest, NotFound


class ReplayUnavailable(ApiError):
    """Kafka or the lab DB did not answer the replay: try again later."""

    status_code = 503


def _failure(what: str, exc: LabstreamError) -> ApiError:
    if isinstance(exc, ServiceUnavailable):
        return ReplayUnavailable(f"the {what} could not run: {exc.message}", hint=exc.hint)
    return Conflict(f"the {what} failed: {exc.message}", hint=exc.hint)


class ExecuteIn(BaseModel):
    """Body of POST /jobs/{id}/replay/execute: the page's confirmation."""

    model_config = {"extra": "forbid"}

    confirm_job_id: str = Field(min_length=1, max_length=100)
    consented_by: str = Field(min_length=1, max_length=100)


async def _replayable_job(request: Request, conn: psycopg.AsyncConnection,
                          tenant_id: str) -> dict[str, Any]:
    job_id = request.path_params["job_id"]
    job = await console_store.get_job(conn, tenant_id=tenant_id, job_id=job_id)
    if job is None:
        raise NotFound(f"no job {job_id!r}")
    document = job_document(job)
    if document["replay"] is None:
        raise Conflict(f"job {job_id} does not say which record triggered it",
                       hint="nothing to replay: the jobs row has no source record")
    return document


def _database_url(request: Request) -> str:
    """The lab DB the API itself uses (its pool's), for the replay's own connections."""
    return str(request.app.state.pool.conninfo)


def _offsets(document: dict[str, Any]) -> str:
    """`topic:partition:offset` of the record the replay commands name."""
    topic, partition, offset = str(document["replayed_from"] or document["source"]).rsplit("/", 2)
    return f"{topic}:{partition}:{offset}"


def dry_run_document(offsets: str, database_url: str) -> dict[str, Any]:
    """`labstream replay run --offsets <offsets> --json` as one document (blocking)."""
    from replay import dryrun
    from replay.runner import Session
    from replay.selection import build_selection

    with Session(database_url=database_url) as session:
        report = dryrun.dry_run(session, build_selection(offsets=[offsets]))
    return {"outcomes": [outcome.to_json() for outcome in report.outcomes],
            "summary": report.summary(),
            "replays_left_out": report.stats.replays_left_out}


def execute_replay(offsets: str, rerun_succeeded: bool, consent_id: int,
                   database_url: str) -> dict[str, Any]:
    """`labstream replay run --offsets <offsets> --execute --yes` (blocking).

    The consent row gets the replay's id the moment the replay row exists, before the
    first record is produced: if the API dies mid-way, the consent names the replay to
    `labstream replay resume`.
    """
    from replay import runner
    from replay.redrive import RedriveOptions
    from replay.selection import build_selection

    def started(row: Any) -> None:
        with connect(database_url, application_name="labstream-api") as conn:
            conn.execute(
                "UPDATE labstream.console_replay_consents SET status = 'started', "
                "replay_id = %s WHERE id = %s", (row.id, consent_id))

    options = runner.with_batching(RedriveOptions(rerun_succeeded=rerun_succeeded))
    with runner.Session(database_url=database_url) as session:
        row, _ = runner.execute(session, build_selection(offsets=[offsets]), options, yes=True,
                                on_start=started)
    return {"replay_id": row.id, "status": row.status, "matched": row.matched,
            "produced": row.produced}


async def replay_dry_run(request: Request, conn: psycopg.AsyncConnection,
                         tenant_id: str) -> Response:
    document = await _replayable_job(request, conn, tenant_id)
    offsets = _offsets(document)
    try:
        result = await run_in_threadpool(dry_run_document, offsets, _database_url(request))
    except LabstreamError as exc:
        raise _failure("dry run", exc) from exc
    return json_response({"job_id": document["id"], "record": offsets,
                          "command": document["replay"]["dry_run"], **result})


async def replay_execute(request: Request, conn: psycopg.AsyncConnection,
                         tenant_id: str) -> Response:
    document = await _replayable_job(request, conn, tenant_id)
    try:
        body = ExecuteIn.model_validate_json(await request.body())
    except ValidationError as exc:
        raise InvalidRequest(
            "invalid confirmation: " + "; ".join(
                f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors()),
            hint='send {"confirm_job_id": "<the job id>", "consented_by": "<your name>"}',
        ) from exc
    if body.confirm_job_id != document["id"]:
        raise InvalidRequest(f"confirm_job_id: {body.confirm_job_id!r} is not this job",
                             hint=f"type the job id, {document['id']}, to confirm")
    offsets = _offsets(document)
    consent_id = await console_store.record_consent(
        conn, tenant_id=tenant_id, job_id=document["id"], record=offsets,
        command=document["replay"]["execute"], consented_by=body.consented_by)
    try:
        result = await run_in_threadpool(execute_replay, offsets,
                                         document["status"] == "succeeded", consent_id,
                                         _database_url(request))
    except LabstreamError as exc:
        await console_store.finish_consent(conn, consent_id, status="failed", error=exc.message)
        raise _failure("re-drive", exc) from exc
    await console_store.finish_consent(conn, consent_id, status="succeeded",
                                       replay_id=result["replay_id"])
    return json_response({"job_id": document["id"], "record": offsets, "consent_id": consent_id,
                          "consented_by": body.consented_by, **result}, status_code=201)


def replay_routes() -> list[tuple[str, Any, list[str]]]:
    return [
        ("/jobs/{job_id}/replay/dry-run", replay_dry_run, ["POST"]),
        ("/jobs/{job_id}/replay/execute", replay_execute, ["POST"]),
    ]
