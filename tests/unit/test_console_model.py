"""The lab console's pure pieces: replay commands, the verdict headline, the page's span."""

from __future__ import annotations

import shlex
from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest
from pydantic import ValidationError

from explain.model import (
    CaptureSetup,
    CdcRecord,
    DecisionRecord,
    Facts,
    JobFact,
    LogLine,
    RowState,
    WorkerProgress,
)
from explain.render import explanation_document
from explain.verdict import explain
from labstream.api.console_model import BrowserSpanIn, headline, job_document, replay_commands
from replay.selection import PartitionRange

T0 = datetime(2026, 11, 25, 12, 0, tzinfo=UTC)
TRACE = "4bf92f3577b34da6a3ce929d0e0e4736"
EXPERIMENT = RowState("experiments", "exp-1", "submitted", "hplc", "acme", T0)
RECORD = CdcRecord("lab.public.experiments", 0, 10, 1_000_040, "experiments", "exp-1", "c",
                   "submitted", 1_000_000, TRACE)
CAPTURE = CaptureSetup("labstream", "lab", "labstream", True, frozenset({"public.experiments"}),
                       False, "labstream", True, True, 0, T0 + timedelta(minutes=1))
WORKER = WorkerProgress("labstream-worker", "lab.decisions", {"lab.public.experiments/0": 11})
FIRED = DecisionRecord("lab.decisions", 0, 6, "fired", "fired", "rule summarise fired",
                       "experiment.submitted", "e1", rule_id="summarise", job_key="k1",
                       experiment_id="exp-1", tenant_id="acme",
                       origin="lab.public.experiments/0/10", job_id="job-1", trace_id=TRACE)
JOB = JobFact("job-1", "k1", "summarise", "local", "succeeded", 1, 0, None, TRACE,
              source="lab.public.experiments/0/10", started_at=T0,
              finished_at=T0 + timedelta(seconds=2), log_line_count=2,
              last_lines=(LogLine(0, "stdout", "reading exp-1"),
                          LogLine(1, "stderr", "column C18 not calibrated")))


def verdict_document(job: JobFact | None = JOB, decisions: tuple[DecisionRecord, ...] = (FIRED,),
                     records: tuple[CdcRecord, ...] = (RECORD,)) -> dict:
    facts = Facts(query=TRACE, experiment=EXPERIMENT, trace_ids=(TRACE,), cdc_records=records,
                  decisions=decisions, jobs=(job,) if job else (), capture=CAPTURE,
                  worker=WORKER)
    return explanation_document(explain(facts), facts)


def test_failed_job_headline_names_exit_code_and_last_log_line():
    failed = replace(JOB, status="failed", exit_code=2)
    assert headline(verdict_document(failed)) == (
        "the job failed: exit code 2; last log line: column C18 not calibrated")


def test_timed_out_job_headline_says_so():
    timed_out = replace(JOB, status="timed_out", exit_code=None)
    assert headline(verdict_document(timed_out)).startswith("the job failed: timed out")


def test_succeeded_chain_headline():
    assert headline(verdict_document()) == (
        "the job succeeded: job job-1: succeeded, exit code 0 in 2.0 s, 2 log line(s)")


def test_running_job_headline_is_not_yet():
    running = replace(JOB, status="started", exit_code=None, finished_at=None)
    assert headline(verdict_document(running)) == (
        "did it succeed? not yet: job job-1 is still running")


def test_not_captured_headline_gives_the_first_problem():
    text = headline(verdict_document(None, (), ()))
    assert text.startswith("did the change reach kafka? no: the change of experiments exp-1")


def test_no_answers_headline_gives_the_notes():
    document = {"first_problem": "unknown", "answers": [], "notes": ["Kafka did not answer"]}
    assert headline(document) == "no verdict yet: Kafka did not answer"


def test_replay_command_re_drives_the_jobs_source_record():
    job = {"status": "failed", "source_topic": "lab.public.runs", "source_partition": 3,
           "source_offset": 1207}
    commands = replay_commands(job)
    assert commands == {
        "dry_run": "labstream replay run --offsets lab.public.runs:3:1207",
        "execute": "labstream replay run --offsets lab.public.runs:3:1207 --execute",
    }
    # the replay CLI reads it back as exactly that one record
    argument = shlex.split(commands["execute"])[4]
    assert PartitionRange.parse(argument) == PartitionRange("lab.public.runs", 3, 1207, 1207)


def test_replay_of_a_succeeded_job_asks_to_run_it_again():
    job = {"status": "succeeded", "source_topic": "t.public.runs", "source_partition": 0,
           "source_offset": 0}
    assert replay_commands(job)["execute"].endswith("--execute --rerun-succeeded")  # type: ignore[index]


@pytest.mark.parametrize("missing", ["source_topic", "source_partition", "source_offset"])
def test_no_replay_command_without_the_source_record(missing):
    job = {"status": "failed", "source_topic": "t", "source_partition": 0, "source_offset": 5}
    job[missing] = None
    assert replay_commands(job) is None
    assert job_document(job)["replay"] is None


def test_job_document_says_finished_and_source():
    job = {"status": "timed_out", "source_topic": "t", "source_partition": 1, "source_offset": 9}
    document = job_document(job)
    assert (document["finished"], document["source"]) == (True, "t/1/9")
    assert job_document({**job, "status": "started"})["finished"] is False


def test_browser_span_row_names_tenant_and_experiment():
    span = BrowserSpanIn(span_id="00f067aa0ba902b7", name="submit experiment",
                         experiment_id="exp-1", start_time_unix_nano=10, end_time_unix_nano=25)
    row = span.row(TRACE, "acme")
    assert row["attributes"]["lab.tenant.id"] == "acme"
    assert row["attributes"]["lab.experiment.id"] == "exp-1"
    assert (row["trace_id"], row["span_id"], row["status_code"]) == (TRACE, "00f067aa0ba902b7",
                                                                     "OK")


@pytest.mark.parametrize("span_id", ["0000000000000000", "00F067AA0BA902B7", "abc", "z" * 16])
def test_browser_span_id_must_be_valid_w3c(span_id):
    with pytest.raises(ValidationError):
        BrowserSpanIn(span_id=span_id, name="x", experiment_id="e", start_time_unix_nano=1,
                      end_time_unix_nano=2)


def test_browser_span_must_end_after_it_starts_and_not_be_endless():
    span = BrowserSpanIn(span_id="00f067aa0ba902b7", name="x", experiment_id="e",
                         start_time_unix_nano=20, end_time_unix_nano=10)
    with pytest.raises(ValueError, match="end after it starts"):
        span.row(TRACE, "acme")
    endless = span.model_copy(update={"start_time_unix_nano": 1,
                                      "end_time_unix_nano": 11 * 60 * 10**9})
    with pytest.raises(ValueError):
        endless.row(TRACE, "acme")


def test_browser_span_refuses_unknown_fields():
    with pytest.raises(ValidationError):
        BrowserSpanIn.model_validate({"span_id": "00f067aa0ba902b7", "name": "x",
                                      "experiment_id": "e", "start_time_unix_nano": 1,
                                      "end_time_unix_nano": 2,
                                      "attributes": {"lab.tenant.id": "x"}})


def test_verdicts_are_reused_for_a_while_then_worked_out_again(monkeypatch):
    import asyncio

    from labstream.api import console_routes

    calls: list[str] = []

    def fake_explain(trace_id: str, budget_s: float) -> dict:
        calls.append(trace_id)
        return {"n": len(calls)}

    monkeypatch.setattr(console_routes, "explain_document", fake_explain)
    now = [0.0]
    cache = console_routes.VerdictCache(console_routes.ConsoleSettings(explain_cache_s=5),
                                        clock=lambda: now[0])

    async def read_at(moment: float) -> dict:
        now[0] = moment
        return await cache.get(TRACE)

    async def three_reads() -> list[dict]:
        return [await read_at(0.0), await read_at(4.0), await read_at(10.0)]

    assert asyncio.run(three_reads()) == [{"n": 1}, {"n": 1}, {"n": 2}]
    assert calls == [TRACE, TRACE]


def test_a_verdict_that_breaks_is_a_note_not_an_error(monkeypatch):
    from labstream.api import console_routes

    def broken(query: str, sources: object) -> None:
        raise RuntimeError("kafka exploded")

    monkeypatch.setattr("explain.facts.gather_facts", broken)
    document = console_routes.explain_document(TRACE, 1.0)
    assert headline(document) == ("no verdict yet: the verdict could not be worked out: "
                                  "RuntimeError: kafka exploded")


def test_list_query_parses_filters_and_names_the_bad_field():
    from datetime import UTC, datetime

    import pytest

    from labstream.api.console_model import (
        EXPERIMENT_STATUSES,
        QueryError,
        decode_cursor,
        encode_cursor,
        page,
        parse_list_query,
    )

    query = parse_list_query({"q": " 50%_x ", "status": "failed", "since": "2026-12-03T09:00:00Z",
                              "limit": "5"}, statuses=EXPERIMENT_STATUSES)
    params = query.params("acme")
    assert params["q_like"] == "%50\\%\\_x%" and params["status"] == "failed"
    assert params["limit"] == 6 and params["since"] == datetime(2026, 12, 3, 9, tzinfo=UTC)
    trace = parse_list_query({"q": "AB" * 16}, statuses=EXPERIMENT_STATUSES).params("acme")
    assert trace["trace"] == "ab" * 16
    for bad, field in (({"status": "done"}, "status"), ({"limit": "101"}, "limit"),
                       ({"until": "soon"}, "until"), ({"before": "!!"}, "before")):
        with pytest.raises(QueryError) as info:
            parse_list_query(bad, statuses=EXPERIMENT_STATUSES)
        assert info.value.field == field and str(info.value).startswith(f"{field}: ")
    at = datetime(2026, 12, 3, 9, 30, tzinfo=UTC)
    assert decode_cursor(encode_cursor(at, "exp-9")) == (at, "exp-9")
    rows = [{"id": f"e{i}", "created_at": at} for i in range(3)]
    assert page(rows, 3) == (rows, None)
    kept, cursor = page(rows, 2)
    assert kept == rows[:2] and decode_cursor(cursor) == (at, "e1")


def test_a_redriven_jobs_commands_name_the_original_record():
    from labstream.api.console_model import replay_commands

    job = {"source_topic": "lab.public.runs", "source_partition": 0, "source_offset": 99,
           "status": "failed", "replayed_from": "lab.public.runs/0/7"}
    assert replay_commands(job) == {
        "dry_run": "labstream replay run --offsets lab.public.runs:0:7",
        "execute": "labstream replay run --offsets lab.public.runs:0:7 --execute",
    }
