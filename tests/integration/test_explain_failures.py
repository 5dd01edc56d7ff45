"""`labstream explain` on four injected failures, with the real connector and worker.

1. the change is never captured (its table is not in the connector's publication);
2. no rule matched (the rule's condition is false for the event);
3. the job could not be launched (its program does not exist);
4. the job exited non-zero.

Each time explain must put ✘ on the right question, say why with the evidence,
and give the next step.
"""

from __future__ import annotations

import json
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from click.testing import CliRunner
from explain_helpers import Chain, chain, execute

from labstream.cli import app as cli_app

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def lab_chain(stack: Any, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Chain]:
    with chain(stack.database_url, stack.kafka_bootstrap, tmp_path_factory.mktemp("chain"),
               otlp_endpoint=None) as running:
        yield running


def run_explain(lab_chain: Chain, query: str, *extra: str) -> Any:
    return CliRunner().invoke(cli_app, ["explain", query, *lab_chain.cli_args(), *extra],
                              env={"LABSTREAM_DATABASE_URL": lab_chain.database_url,
                                   "LABSTREAM_KAFKA_BOOTSTRAP_SERVERS": lab_chain.bootstrap})


def explain_until(lab_chain: Chain, query: str, done: Callable[[dict[str, Any]], bool],
                  timeout: float = 90) -> dict[str, Any]:
    """Run `explain --json` until `done(document)` (the chain may still be moving)."""
    deadline = time.monotonic() + timeout
    while True:
        result = run_explain(lab_chain, query, "--json")
        assert result.exit_code == 0, result.output
        document = json.loads(result.output)
        if done(document) or time.monotonic() > deadline:
            return document
        time.sleep(1)


def diagnose(lab_chain: Chain, document: dict[str, Any]) -> str:
    """What a failed assertion shows: explain's answer and the end of the worker's log."""
    return f"{json.dumps(document, indent=1)}\nworker log:\n{lab_chain.log('worker')}"


def answers(document: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {answer["id"]: answer for answer in document["answers"]}


def statuses(document: dict[str, Any]) -> list[str]:
    return [answer["status"] for answer in document["answers"]]


def experiment_with_completed_run(lab_chain: Chain, tenant: str) -> tuple[str, str]:
    experiment_id = f"exp-{uuid.uuid4().hex[:12]}"
    execute(lab_chain.database_url, "INSERT INTO public.experiments (id, tenant_id, kind, "
            "submitted_by) VALUES (%s, %s, 'hplc', 'ada')", (experiment_id, tenant))
    instrument = lab_chain.instrument()
    run_id = lab_chain.complete_run(experiment_id, instrument, None, None)
    return experiment_id, run_id


def test_no_rule_matched_names_the_rule_condition_and_the_replay(lab_chain):
    tenant = lab_chain.tenant()
    rule = lab_chain.rule(tenant, [sys.executable, "-c", "print('never')"],
                          condition={"payload.peak_count": 99})
    experiment_id, run_id = experiment_with_completed_run(lab_chain, tenant)
    document = explain_until(lab_chain, experiment_id,
                             lambda d: answers(d)["triggered"]["data"].get("reason") is not None)
    assert statuses(document) == ["yes", "no", "not_reached", "not_reached"], \
        diagnose(lab_chain, document)
    triggered = answers(document)["triggered"]
    assert triggered["data"]["reason"] == "condition_false", diagnose(lab_chain, document)
    assert triggered["data"]["rule_id"] == rule
    assert "payload.peak_count is 2, wanted 99" in triggered["summary"]
    assert document["first_problem"] == "triggered"
    assert f"WHERE id = '{rule}'" in document["next_step"]
    replay = f"labstream replay run --topic {lab_chain.name}.public.runs --key {run_id} --execute"
    assert any(replay in fix for fix in triggered["fix"])


def test_launch_failure_is_reported_at_did_the_job_start(lab_chain):
    tenant = lab_chain.tenant()
    missing = f"/nonexistent/labstream-{uuid.uuid4().hex[:6]}"
    rule = lab_chain.rule(tenant, [missing, "--run", "{payload.run_id}"])
    experiment_id, run_id = experiment_with_completed_run(lab_chain, tenant)
    job = lab_chain.job_of(experiment_id, rule)
    assert job["status"] == "launch_failed", job
    document = explain_until(lab_chain, experiment_id,
                             lambda d: answers(d)["started"]["status"] == "no")
    assert statuses(document) == ["yes", "yes", "no", "not_reached"], diagnose(lab_chain, document)
    started = answers(document)["started"]
    assert job["id"] in started["summary"] and "could not be launched" in started["summary"]
    assert missing in started["summary"]
    assert started["data"]["jobs"][0]["status"] == "launch_failed"
    assert f"fix rule {rule}'s command" in document["next_step"]
    assert any(f"--key {run_id} --execute" in fix for fix in started["fix"])


def test_non_zero_exit_shows_the_code_and_the_last_log_lines(lab_chain):
    tenant = lab_chain.tenant()
    program = "import sys; print('reading peaks'); print('boom: no main peak', file=sys.stderr)" \
              "; sys.exit(3)"
    rule = lab_chain.rule(tenant, [sys.executable, "-c", program])
    experiment_id, _ = experiment_with_completed_run(lab_chain, tenant)
    job = lab_chain.job_of(experiment_id, rule)
    assert job["status"] == "failed" and job["exit_code"] == 3, job
    document = explain_until(lab_chain, experiment_id,
                             lambda d: answers(d)["succeeded"]["status"] == "no")
    assert statuses(document) == ["yes", "yes", "yes", "no"], diagnose(lab_chain, document)
    succeeded = answers(document)["succeeded"]
    assert f"job {job['id']} (rule {rule}) exited with code 3" in succeeded["summary"]
    assert any("boom: no main peak" in line for line in succeeded["evidence"])
    assert succeeded["data"]["jobs"][0]["exit_code"] == 3
    assert f"job_id = '{job['id']}'" in document["next_step"]
    # the human output says the same, with the symbols
    text = run_explain(lab_chain, experiment_id)
    assert text.exit_code == 0, text.output
    assert "✘ 4. Did it succeed?" in text.output and "✔ 3. Did the job start?" in text.output
    assert "next: read its log" in text.output


def test_an_unknown_id_is_a_clear_error_with_exit_1(lab_chain):
    result = run_explain(lab_chain, f"exp-{uuid.uuid4().hex}")
    assert result.exit_code == 1
    assert "is neither an experiment id nor a trace id" in str(result.exception)
    result = run_explain(lab_chain, uuid.uuid4().hex)
    assert result.exit_code == 1
    assert "nothing is known about" in str(result.exception)


def test_table_not_in_the_publication_then_fixed(stack, tmp_path):
    published = ["public.tenants", "public.experiments", "public.instruments"]  # no runs
    with chain(stack.database_url, stack.kafka_bootstrap, tmp_path, otlp_endpoint=None,
               worker=False, publication_tables=published) as lab_chain:
        tenant = lab_chain.tenant()
        experiment_id, run_id = experiment_with_completed_run(lab_chain, tenant)
        document = explain_until(lab_chain, experiment_id, lambda d: any(
            "exp" in line for line in answers(d)["captured"]["evidence"]), timeout=30)
        assert statuses(document) == ["no", "not_reached", "not_reached", "not_reached"]
        captured_answer = answers(document)["captured"]
        assert f"runs {run_id}" in captured_answer["summary"]
        assert f"table public.runs is not in publication {lab_chain.name}" in \
            captured_answer["summary"]
        assert any(experiment_id in line for line in captured_answer["evidence"])
        fix = f"ALTER PUBLICATION {lab_chain.name} ADD TABLE public.runs;"
        assert document["next_step"].startswith(fix)
        # follow the advice: publish the table, write the change again
        execute(stack.database_url, fix)
        execute(stack.database_url, "UPDATE public.runs SET status = 'running', finished_at = "
                "NULL WHERE id = %s", (run_id,))
        execute(stack.database_url, "UPDATE public.runs SET status = 'completed', finished_at "
                "= now() WHERE id = %s", (run_id,))
        document = explain_until(lab_chain, experiment_id,
                                 lambda d: answers(d)["captured"]["status"] == "yes", timeout=30)
        assert answers(document)["captured"]["status"] == "yes", document
        # no worker runs in this chain: explain says so at the next question
        triggered = answers(document)["triggered"]
        assert triggered["status"] == "no" and "no committed offsets" in triggered["summary"]
        assert "labstream worker" in document["next_step"]

