"""The lab console's endpoints against the real lab DB, with jobs and spans staged in it.

Two tenants each get an experiment, a job (with log lines and a source record) and a
trace; every read must show a tenant only its own, and another tenant's job, trace or
verdict answers 404.
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import psycopg
import pytest
from api_helpers import bearer, make_token
from starlette.testclient import TestClient

from base.settings import service_settings
from labstream.api.app import create_app

pytestmark = pytest.mark.integration

NS = 1_000_000_000


_TOKENS: dict[str, dict[str, str]] = {}


def headers_for(tenant: str) -> dict[str, str]:
    """The one place this module says who is asking: a scientist token of `tenant`."""
    if tenant not in _TOKENS:
        _TOKENS[tenant] = bearer(make_token(service_settings().database_url, tenant))
    return _TOKENS[tenant]


@dataclass(frozen=True)
class Staged:
    tenant: str
    experiment: str
    job: str
    trace_id: str
    api_span: str
    auth: dict[str, str]  # Authorization header with a scientist token of the tenant


def execute(database_url: str, sql: str, params: Any = None) -> list[Any]:
    with psycopg.connect(database_url, autocommit=True) as conn:
        cursor = conn.execute(sql, params)
        return cursor.fetchall() if cursor.description else []


def stage_tenant(database_url: str, name: str, exit_code: int) -> Staged:
    tenant = name.replace("_", "-")
    experiment, job = f"exp-{uuid.uuid4().hex[:12]}", f"job-{uuid.uuid4().hex[:12]}"
    trace_id, api_span = uuid.uuid4().hex, uuid.uuid4().hex[:16]
    now = time.time_ns()
    status = "succeeded" if exit_code == 0 else "failed"
    execute(database_url, "INSERT INTO public.tenants (id, name) VALUES (%s, %s)", (tenant, tenant))
    execute(database_url, "INSERT INTO public.experiments (id, tenant_id, kind, title, "
            "submitted_by) VALUES (%s, %s, 'hplc', 'staged', 'ada')", (experiment, tenant))
    execute(database_url,
            "INSERT INTO public.jobs (id, job_key, rule_id, tenant_id, experiment_id, backend, "
            "status, exit_code, trace_id, source_topic, source_partition, source_offset, "
            "started_at, finished_at) VALUES (%s, %s, 'r-peaks', %s, %s, 'local', %s, %s, %s, "
            "'lab.public.experiments', 0, 42, now() - interval '3 seconds', now())",
            (job, f"key-{job}", tenant, experiment, status, exit_code, trace_id))
    for seq, line in enumerate(["starting", f"done with {exit_code}"]):
        execute(database_url, "INSERT INTO public.job_log_lines (job_id, seq, stream, line, "
                "trace_id) VALUES (%s, %s, 'stdout', %s, %s)", (job, seq, line, trace_id))
    attributes = json.dumps({"lab.tenant.id": tenant, "lab.experiment.id": experiment})
    execute(database_url,
            "INSERT INTO labstream.spans (trace_id, span_id, parent_span_id, name, kind, "
            "service_name, start_time_unix_nano, end_time_unix_nano, attributes) VALUES "
            "(%s, %s, NULL, 'POST /experiments', 'SERVER', 'labstream-api', %s, %s, %s)",
            (trace_id, api_span, now - NS, now, attributes))
    return Staged(tenant, experiment, job, trace_id, api_span,
                  bearer(make_token(database_url, tenant)))


def unstage(database_url: str, staged: Staged) -> None:
    execute(database_url, "DELETE FROM labstream.spans WHERE trace_id = %s", (staged.trace_id,))
    execute(database_url, "DELETE FROM public.jobs WHERE id = %s", (staged.job,))
    execute(database_url, "DELETE FROM public.experiments WHERE tenant_id = %s", (staged.tenant,))
    execute(database_url, "DELETE FROM public.tenants WHERE id = %s", (staged.tenant,))


@pytest.fixture
def tenants(database_url: str, unique_name: str) -> Iterator[tuple[Staged, Staged]]:
    ours = stage_tenant(database_url, f"{unique_name}-a", exit_code=2)
    theirs = stage_tenant(database_url, f"{unique_name}-b", exit_code=0)
    try:
        yield ours, theirs
    finally:
        unstage(database_url, ours)
        unstage(database_url, theirs)


@pytest.fixture
def client(database_url: str, monkeypatch: pytest.MonkeyPatch) -> Iterator[TestClient]:
    monkeypatch.setenv("LABSTREAM_CONSOLE_EXPLAIN_BUDGET_S", "2")
    with TestClient(create_app(database_url=database_url)) as running:
        yield running


def test_experiments_list_shows_only_the_tenants_own_with_jobs_and_trace(client, tenants):
    ours, theirs = tenants
    response = client.get("/experiments", headers=ours.auth)
    assert response.status_code == 200, response.text
    experiments = response.json()["experiments"]
    assert [e["id"] for e in experiments] == [ours.experiment]  # not theirs.experiment
    assert theirs.job not in response.text
    assert experiments[0]["trace_id"] == ours.trace_id
    [job] = experiments[0]["jobs"]
    assert (job["id"], job["rule_id"], job["backend"], job["status"]) == (
        ours.job, "r-peaks", "local", "failed")
    assert 2.5 < job["duration_s"] < 10


def test_experiments_list_needs_a_credential(client, tenants):
    assert client.get("/experiments").status_code == 401
    # the header alone, the old way to say who you are, opens nothing
    assert client.get("/experiments", headers={"X-Lab-Tenant": tenants[0].tenant}
                      ).status_code == 401
    assert client.get("/experiments?limit=x", headers=tenants[0].auth
                      ).status_code == 422


def test_job_view_gives_exit_status_and_replay_command(client, tenants):
    ours, _ = tenants
    response = client.get(f"/jobs/{ours.job}", headers=ours.auth)
    assert response.status_code == 200, response.text
    job = response.json()
    assert (job["status"], job["exit_code"], job["finished"]) == ("failed", 2, True)
    assert job["log_line_count"] == 2
    assert job["source"] == "lab.public.experiments/0/42"
    assert job["replay"] == {
        "dry_run": "labstream replay run --offsets lab.public.experiments:0:42",
        "execute": "labstream replay run --offsets lab.public.experiments:0:42 --execute",
    }


def test_another_tenants_job_is_not_found(client, tenants):
    ours, theirs = tenants
    headers = ours.auth
    for path in (f"/jobs/{theirs.job}", f"/jobs/{theirs.job}/logs"):
        response = client.get(path, headers=headers)
        assert response.status_code == 404, (path, response.text)
        assert theirs.tenant not in response.text
    # the owner sees it
    assert client.get(f"/jobs/{theirs.job}", headers=theirs.auth
                      ).status_code == 200


def test_another_tenants_trace_verdict_and_span_are_refused(client, tenants, database_url):
    ours, theirs = tenants
    headers = ours.auth
    assert client.get(f"/traces/{theirs.trace_id}/explain", headers=headers).status_code == 404
    span = browser_span(ours.experiment)
    response = client.post(f"/traces/{theirs.trace_id}/spans", headers=headers, json=span)
    assert response.status_code == 404
    stored = execute(database_url, "SELECT count(*) FROM labstream.spans WHERE trace_id = %s "
                     "AND span_id = %s", (theirs.trace_id, span["span_id"]))
    assert stored == [(0,)]


def browser_span(experiment_id: str) -> dict[str, Any]:
    now = time.time_ns()
    return {"span_id": uuid.uuid4().hex[:16], "name": "submit experiment",
            "experiment_id": experiment_id, "start_time_unix_nano": now - 2 * NS,
            "end_time_unix_nano": now - NS, "url_path": "/console/"}


def test_page_span_becomes_the_root_of_the_tenants_trace(client, tenants, database_url):
    ours, theirs = tenants
    headers = ours.auth
    span = browser_span(ours.experiment)
    response = client.post(f"/traces/{ours.trace_id}/spans", headers=headers, json=span)
    assert response.status_code == 201, response.text
    again = client.post(f"/traces/{ours.trace_id}/spans", headers=headers, json=span)
    assert (again.status_code, again.json()["stored"]) == (200, False)
    trace = client.get(f"/traces/{ours.trace_id}", headers=headers).json()
    root = trace["spans"][0]
    assert (root["span_id"], root["service_name"], root["kind"], root["parent_span_id"]) == (
        span["span_id"], "labstream-console", "CLIENT", None)
    assert root["attributes"]["lab.tenant.id"] == ours.tenant
    # an experiment of another tenant cannot be named in our span
    other = browser_span(theirs.experiment)
    assert client.post(f"/traces/{ours.trace_id}/spans", headers=headers, json=other
                       ).status_code == 404
    bad = {**browser_span(ours.experiment), "span_id": "xyz"}
    assert client.post(f"/traces/{ours.trace_id}/spans", headers=headers, json=bad
                       ).status_code == 422


def test_a_span_planted_in_our_trace_leaves_it_ours(client, tenants, database_url):
    ours, theirs = tenants
    # a later span that says it is the other tenant's, in our trace (a forged traceparent)
    now = time.time_ns()
    execute(database_url,
            "INSERT INTO labstream.spans (trace_id, span_id, name, kind, service_name, "
            "start_time_unix_nano, end_time_unix_nano, attributes) VALUES "
            "(%s, %s, 'GET /experiments', 'SERVER', 'labstream-api', %s, %s, %s)",
            (ours.trace_id, uuid.uuid4().hex[:16], now, now + NS,
             json.dumps({"lab.tenant.id": theirs.tenant})))
    assert client.get(f"/traces/{ours.trace_id}/explain", headers=ours.auth).status_code == 200
    assert client.get(f"/traces/{ours.trace_id}/explain", headers=theirs.auth
                      ).status_code == 404
    spans = client.get(f"/traces/{ours.trace_id}", headers=ours.auth).json()["spans"]
    assert [span["span_id"] for span in spans] == [ours.api_span]  # the planted one left out


def test_verdict_of_own_trace_names_the_failed_job(client, tenants):
    ours, _ = tenants
    response = client.get(f"/traces/{ours.trace_id}/explain", headers=ours.auth)
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["explanation"]["experiment_id"] == ours.experiment
    assert ours.trace_id in body["explanation"]["trace_ids"]
    assert body["headline"]
    # nothing of the staged chain reached Kafka, so the verdict stops at the first answer
    assert body["explanation"]["first_problem"] == "captured"


def test_console_page_is_served(client):
    page = client.get("/console/")
    assert page.status_code == 200 and 'src="app.js"' in page.text
    script = client.get("/console/app.js")
    assert script.status_code == 200 and "javascript" in script.headers["content-type"]
    redirect = client.get("/", follow_redirects=False)
    assert (redirect.status_code, redirect.headers["location"]) == (307, "/console/")


def add_experiment(database_url: str, tenant: str, *, title: str, status: str = "submitted",
                   kind: str = "hplc", by: str = "ada", age_s: int = 0) -> str:
    experiment = f"exp-{uuid.uuid4().hex[:12]}"
    execute(database_url, "INSERT INTO public.experiments (id, tenant_id, kind, title, "
            "submitted_by, status, created_at) VALUES (%s, %s, %s, %s, %s, %s, "
            "now() - make_interval(secs => %s))", (experiment, tenant, kind, title, by, status,
                                                   age_s))
    return experiment


def test_search_filters_and_pages_over_experiments(client, tenants, database_url):
    ours, theirs = tenants
    headers = headers_for(ours.tenant)
    made = [add_experiment(database_url, ours.tenant, title=f"column {i}", age_s=100 + i,
                           status="completed" if i % 2 else "submitted", by=f"u{i % 3}")
            for i in range(5)]
    # pages of 2, newest first, the cursor walking the rest; nothing twice, nothing lost
    seen, before = [], None
    for _ in range(5):
        url = "/experiments?limit=2" + (f"&before={before}" if before else "")
        body = client.get(url, headers=headers).json()
        seen += [e["id"] for e in body["experiments"]]
        before = body["next_before"]
        if before is None:
            break
    assert seen == [ours.experiment, *made], seen
    by_status = client.get("/experiments?status=completed", headers=headers).json()
    assert [e["id"] for e in by_status["experiments"]] == [made[1], made[3]]
    by_title = client.get("/experiments?q=column%203", headers=headers).json()
    assert [e["id"] for e in by_title["experiments"]] == [made[3]]
    # a job id, a trace id and a rule find the experiment they belong to
    for q in (ours.job, ours.trace_id.upper(), ):
        found = client.get("/experiments", params={"q": q}, headers=headers).json()
        assert [e["id"] for e in found["experiments"]] == [ours.experiment], q
    by_rule = client.get("/experiments?rule=r-peaks&job_status=failed", headers=headers).json()
    assert [e["id"] for e in by_rule["experiments"]] == [ours.experiment]
    by_submitter = client.get("/experiments?submitted_by=u1", headers=headers).json()
    assert [e["id"] for e in by_submitter["experiments"]] == [made[1], made[4]]
    # another tenant's ids find nothing
    assert client.get("/experiments", params={"q": theirs.job}, headers=headers
                      ).json()["experiments"] == []


def test_bad_filters_are_422_naming_the_field(client, tenants):
    headers = headers_for(tenants[0].tenant)
    for query, field in (("status=done", "status"), ("limit=0", "limit"),
                         ("since=yesterday", "since"), ("before=xyz", "before"),
                         ("kind=nmr", "kind")):
        response = client.get(f"/experiments?{query}", headers=headers)
        assert response.status_code == 422, (query, response.text)
        assert response.json()["error"].startswith(f"{field}:"), response.text
        assert response.json()["hint"]


def test_jobs_list_searches_the_tenants_jobs(client, tenants):
    ours, theirs = tenants
    body = client.get("/jobs?status=failed", headers=headers_for(ours.tenant)).json()
    assert [j["id"] for j in body["jobs"]] == [ours.job] and body["next_before"] is None
    assert client.get("/jobs", params={"q": theirs.job}, headers=headers_for(ours.tenant)
                      ).json()["jobs"] == []


def test_experiment_overview_has_jobs_traces_and_replays(client, tenants, database_url):
    ours, theirs = tenants
    replay_trace, replay_span = uuid.uuid4().hex, uuid.uuid4().hex[:16]
    now = time.time_ns()
    link = json.dumps([{"trace_id": ours.trace_id, "span_id": ours.api_span, "attributes": {}}])
    execute(database_url,
            "INSERT INTO labstream.spans (trace_id, span_id, name, kind, service_name, "
            "start_time_unix_nano, end_time_unix_nano, attributes, links) VALUES "
            "(%s, %s, 'replay lab.public.runs', 'PRODUCER', 'labstream-replay', %s, %s, %s, %s)",
            (replay_trace, replay_span, now, now + NS, json.dumps({
                "lab.tenant.id": ours.tenant, "lab.replay.id": "rp-1",
                "labstream-replay-of": "lab.public.runs/0/7"}), link))
    # a re-driven job: its row names the copy, its trace the original; one runner span per
    # attempt (the first in the submission's trace, the second in the replay's)
    execute(database_url, "UPDATE public.jobs SET trace_id = %s, source_offset = 99, "
            "attempt = 2 WHERE id = %s", (replay_trace, ours.job))
    for trace_id, attempt, start in ((ours.trace_id, 1, now - 5 * NS), (replay_trace, 2, now)):
        execute(database_url,
                "INSERT INTO labstream.spans (trace_id, span_id, name, kind, service_name, "
                "start_time_unix_nano, end_time_unix_nano, attributes) VALUES "
                "(%s, %s, 'job r-peaks', 'INTERNAL', 'labstream-worker', %s, %s, %s)",
                (trace_id, uuid.uuid4().hex[:16], start, start + NS, json.dumps({
                    "lab.tenant.id": ours.tenant, "lab.experiment.id": ours.experiment,
                    "lab.job.id": ours.job, "lab.job.attempt": attempt,
                    "lab.job.status": "failed", "lab.job.exit_code": 2})))
    try:
        headers = headers_for(ours.tenant)
        overview = client.get(f"/experiments/{ours.experiment}/overview", headers=headers)
        assert overview.status_code == 200, overview.text
        body = overview.json()
        assert body["experiment"]["id"] == ours.experiment
        [job] = body["jobs"]
        assert job["id"] == ours.job and job["replayed_from"] == "lab.public.runs/0/7"
        assert job["replay"]["dry_run"] == "labstream replay run --offsets lab.public.runs:0:7"
        assert [(a["attempt"], a["trace_id"], a["exit_code"]) for a in job["attempts"]] == [
            (1, ours.trace_id, 2), (2, replay_trace, 2)]
        traces = {t["trace_id"]: t for t in body["traces"]}
        assert set(traces) == {ours.trace_id, replay_trace}
        assert traces[replay_trace]["replay_id"] == "rp-1"
        # the submission's trace shows the replay that links into it
        trace = client.get(f"/traces/{ours.trace_id}", headers=headers).json()
        assert [s["span_id"] for s in trace["linking_spans"]] == [replay_span]
        related = client.get(f"/traces/{ours.trace_id}/related", headers=headers).json()
        assert related["experiments"] == [ours.experiment]
        assert [(t["trace_id"], t["relation"]) for t in related["traces"]] == [
            (replay_trace, "replay of this trace")]
        # nobody else sees any of it
        other = headers_for(theirs.tenant)
        assert client.get(f"/experiments/{ours.experiment}/overview", headers=other
                          ).status_code == 404
        assert client.get(f"/traces/{ours.trace_id}/related", headers=other).status_code == 404
    finally:
        execute(database_url, "DELETE FROM labstream.spans WHERE trace_id = %s", (replay_trace,))


def test_redrive_from_the_page_needs_the_job_id_and_a_name_and_records_consent_first(
        client, tenants, database_url):
    ours, theirs = tenants
    headers = headers_for(ours.tenant)
    # a record in a topic that does not exist: the re-drive fails after the consent is kept
    missing_topic = f"lab.nosuch-{uuid.uuid4().hex[:8]}"
    execute(database_url, "UPDATE public.jobs SET source_topic = %s WHERE id = %s",
            (missing_topic, ours.job))
    url = f"/jobs/{ours.job}/replay/execute"
    wrong = client.post(url, headers=headers, json={"confirm_job_id": "job-x",
                                                    "consented_by": "ada"})
    assert wrong.status_code == 422 and wrong.json()["error"].startswith("confirm_job_id:")
    nameless = client.post(url, headers=headers, json={"confirm_job_id": ours.job})
    assert nameless.status_code == 422 and "consented_by" in nameless.json()["error"]
    assert client.post(f"/jobs/{theirs.job}/replay/execute", headers=headers, json={
        "confirm_job_id": theirs.job, "consented_by": "ada"}).status_code == 404
    assert execute(database_url, "SELECT count(*) FROM labstream.console_replay_consents "
                   "WHERE job_id IN (%s, %s)", (ours.job, theirs.job)) == [(0,)]
    failed = client.post(url, headers=headers, json={"confirm_job_id": ours.job,
                                                     "consented_by": "ada"})
    assert failed.status_code == 409, failed.text
    assert "does not exist" in failed.json()["error"] and "Traceback" not in failed.text
    [consent] = execute(database_url, "SELECT tenant_id, record, consented_by, status, error, "
                        "command FROM labstream.console_replay_consents WHERE job_id = %s",
                        (ours.job,))
    assert consent[:4] == (ours.tenant, f"{missing_topic}:0:42", "ada", "failed")
    assert "does not exist" in consent[4] and consent[5].endswith("--execute")
    execute(database_url, "DELETE FROM labstream.console_replay_consents WHERE job_id = %s",
            (ours.job,))


def test_a_job_in_another_trace_is_linked_from_the_submissions_trace(
        client, tenants, database_url):
    """The run's job runs in a trace of its own: the submission's trace still leads to it."""
    ours, _ = tenants
    run_trace, job = uuid.uuid4().hex, f"job-{uuid.uuid4().hex[:12]}"
    execute(database_url,
            "INSERT INTO public.jobs (id, job_key, rule_id, tenant_id, experiment_id, backend, "
            "status, trace_id) VALUES (%s, %s, 'r-run', %s, %s, 'local', 'queued', %s)",
            (job, f"key-{job}", ours.tenant, ours.experiment, run_trace))
    try:
        related = client.get(f"/traces/{ours.trace_id}/related",
                             headers=headers_for(ours.tenant)).json()
        assert [(t["trace_id"], t["relation"]) for t in related["traces"]] == [
            (run_trace, "same experiment")]
        back = client.get(f"/traces/{run_trace}/related", headers=headers_for(ours.tenant)).json()
        assert [j["id"] for j in back["jobs"]] == [job]
        assert ours.trace_id in [t["trace_id"] for t in back["traces"]]
    finally:
        execute(database_url, "DELETE FROM public.jobs WHERE id = %s", (job,))
