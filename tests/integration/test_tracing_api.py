"""The lab API against the real lab DB: trace continuation, DB trace context, tenants.

Each staged tenant gets a scientist token; `as_(tenant)` gives its Authorization header.
"""

from __future__ import annotations

import uuid

import psycopg
import pytest
from api_helpers import bearer
from beeline.propagation import PropagationContext
from beeline.propagation.honeycomb import marshal_propagation_context
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from starlette.testclient import TestClient
from tracing_slots import temporary_slot

from labstream.api.app import create_app
from tracing.spanstore import DbSpanExporter

pytestmark = pytest.mark.integration

# a trace id of this run only: the W3C example id is also used by other tests' records,
# and a trace belongs to whoever started it
INCOMING_TRACE = uuid.uuid4().hex
INCOMING_SPAN = "b7ad6b7169203331"
_AUTH: dict[str, dict[str, str]] = {}  # tenant -> Authorization header, filled by `tenants`


def as_(tenant: str, **more: str) -> dict[str, str]:
    return {**_AUTH[tenant], **more}


@pytest.fixture
def tenants(database_url: str, unique_name: str, api_token):
    mine, theirs = f"{unique_name}-a", f"{unique_name}-b"
    with psycopg.connect(database_url, autocommit=True) as conn:
        for tenant in (mine, theirs):
            conn.execute("INSERT INTO public.tenants (id, name) VALUES (%s, %s)", (tenant, tenant))
    for tenant in (mine, theirs):
        _AUTH[tenant] = bearer(api_token(tenant))
    yield mine, theirs
    for tenant in (mine, theirs):
        _AUTH.pop(tenant, None)
    with psycopg.connect(database_url, autocommit=True) as conn:
        for tenant in (mine, theirs):
            conn.execute(
                "DELETE FROM public.jobs WHERE tenant_id = %s OR experiment_id IN "
                "(SELECT id FROM public.experiments WHERE tenant_id = %s)",
                (tenant, tenant),
            )
            conn.execute("DELETE FROM public.experiments WHERE tenant_id = %s", (tenant,))
            conn.execute("DELETE FROM public.tenants WHERE id = %s", (tenant,))


@pytest.fixture
def traced_client(database_url: str):
    memory = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(memory))
    provider.add_span_processor(SimpleSpanProcessor(DbSpanExporter(database_url)))
    app = create_app(database_url=database_url, tracer_provider=provider)
    with TestClient(app) as client:
        yield client, memory
    provider.shutdown()
    trace_ids = [f"{span.context.trace_id:032x}" for span in memory.get_finished_spans()]
    with psycopg.connect(database_url, autocommit=True) as conn:
        conn.execute("DELETE FROM labstream.spans WHERE trace_id = ANY(%s)", (trace_ids,))


def submit(client: TestClient, tenant: str, headers: dict | None = None, **body):
    payload = {"kind": "hplc", "submitted_by": "ada", **body}
    return client.post(
        "/experiments", json=payload, headers=as_(tenant, **(headers or {}))
    )


def test_post_continues_the_w3c_trace_and_emits_it_in_the_transaction(
    traced_client, tenants, database_url, unique_name
):
    client, memory = traced_client
    tenant, _ = tenants
    with temporary_slot(database_url, f"tr_{unique_name}") as slot:
        response = submit(
            client, tenant, {"traceparent": f"00-{INCOMING_TRACE}-{INCOMING_SPAN}-01"}
        )
        messages = slot.messages()
    assert response.status_code == 201, response.text
    body = response.json()
    assert body["trace_id"] == INCOMING_TRACE
    assert body["tenant_id"] == tenant and body["status"] == "submitted"
    assert response.headers["x-trace-id"] == INCOMING_TRACE

    spans = {span.name: span for span in memory.get_finished_spans()}
    server, insert = spans["POST /experiments"], spans["insert experiment"]
    assert format(server.parent.span_id, "016x") == INCOMING_SPAN
    assert insert.parent.span_id == server.context.span_id
    assert server.attributes["lab.experiment.id"] == body["id"]
    assert server.attributes["http.response.status_code"] == 201
    # the transaction carried the insert span's context: CDC continues under it
    insert_traceparent = f"00-{INCOMING_TRACE}-{insert.context.span_id:016x}-01"
    assert (True, "traceparent", insert_traceparent) in messages
    assert body["traceparent"] == insert_traceparent


def test_post_with_a_beeline_header_keeps_the_beeline_trace(traced_client, tenants):
    client, memory = traced_client
    tenant, _ = tenants
    uuid_trace = str(uuid.uuid4())  # this run only (a trace belongs to its starter)
    header = marshal_propagation_context(PropagationContext(uuid_trace, "abcdef0123456789", {}))
    response = submit(client, tenant, {"X-Honeycomb-Trace": header})
    assert response.status_code == 201, response.text
    assert response.json()["trace_id"] == uuid_trace.replace("-", "")
    server = next(s for s in memory.get_finished_spans() if s.name == "POST /experiments")
    assert server.attributes["beeline.trace_id"] == uuid_trace
    assert format(server.parent.span_id, "016x") == "abcdef0123456789"


def test_post_without_a_header_starts_a_trace(traced_client, tenants):
    client, memory = traced_client
    response = submit(client, tenants[0])
    assert response.status_code == 201
    server = next(s for s in memory.get_finished_spans() if s.name == "POST /experiments")
    assert server.parent is None
    assert response.json()["trace_id"] == format(server.context.trace_id, "032x")


def test_tenants_only_see_their_own_experiments(traced_client, tenants):
    client, _ = traced_client
    mine, theirs = tenants
    experiment_id = submit(client, mine).json()["id"]
    path = f"/experiments/{experiment_id}"
    assert client.get(path, headers=as_(mine)).json()["id"] == experiment_id
    assert client.get(path, headers=as_(theirs)).status_code == 404
    assert client.get(f"{path}/jobs", headers=as_(theirs)).status_code == 404
    missing = client.get(path)
    assert missing.status_code == 401 and "Bearer" in missing.headers["www-authenticate"]
    # naming another tenant with the old header does not switch tenants
    assert client.get(path, headers=as_(theirs, **{"X-Lab-Tenant": mine})).status_code == 403


def test_jobs_and_logs_of_an_experiment(traced_client, tenants, database_url, unique_name):
    client, _ = traced_client
    mine, theirs = tenants
    experiment_id = submit(client, mine).json()["id"]
    job_id = f"job-{unique_name}"
    with psycopg.connect(database_url, autocommit=True) as conn:
        conn.execute(
            "INSERT INTO public.jobs (id, job_key, rule_id, experiment_id, backend, status) "
            "VALUES (%s, %s, 'rule-1', %s, 'local', 'succeeded')",
            (job_id, job_id, experiment_id),
        )
        for seq, line in enumerate(["starting", "peak found", "done"]):
            conn.execute(
                "INSERT INTO public.job_log_lines (job_id, seq, stream, line) "
                "VALUES (%s, %s, 'stdout', %s)",
                (job_id, seq, line),
            )
    jobs = client.get(f"/experiments/{experiment_id}/jobs", headers=as_(mine))
    assert [job["id"] for job in jobs.json()["jobs"]] == [job_id]
    logs = client.get(f"/jobs/{job_id}/logs?after=0", headers=as_(mine))
    assert [line["line"] for line in logs.json()["lines"]] == ["peak found", "done"]
    assert client.get(f"/jobs/{job_id}/logs", headers=as_(theirs)).status_code == 404


def test_trace_endpoint_returns_the_stored_spans_to_their_tenant_only(traced_client, tenants):
    client, _ = traced_client
    mine, theirs = tenants
    trace_id = submit(client, mine).json()["trace_id"]
    response = client.get(f"/traces/{trace_id}", headers=as_(mine))
    assert response.status_code == 200, response.text
    document = response.json()
    names = [span["name"] for span in document["spans"]]
    assert names == ["POST /experiments", "insert experiment"]
    assert document["spans"][1]["parent_span_id"] == document["spans"][0]["span_id"]
    assert client.get(f"/traces/{trace_id}", headers=as_(theirs)).status_code == 404
    # and the owner still reads it, without the planted span
    document = client.get(f"/traces/{trace_id}", headers=as_(mine)).json()
    assert {span["attributes"].get("lab.tenant.id") for span in document["spans"]} <= {mine, None}


def test_invalid_bodies_are_422_and_duplicates_409(traced_client, tenants):
    client, _ = traced_client
    tenant, _ = tenants
    bad = submit(client, tenant, kind="telepathy")
    assert bad.status_code == 422 and "kind" in bad.json()["error"]
    first = submit(client, tenant, id=f"exp-dup-{tenant}")
    assert first.status_code == 201
    assert submit(client, tenant, id=f"exp-dup-{tenant}").status_code == 409



def test_a_forged_traceparent_does_not_open_another_tenants_trace(
    traced_client, tenants, database_url
):
    """Regression: tenant B sent a request carrying A's traceparent, which stored a
    span tagged B inside A's trace; "any span names the tenant" then let B read it."""
    client, _ = traced_client
    mine, theirs = tenants
    trace_id = submit(client, mine).json()["trace_id"]
    forged = as_(theirs, traceparent=f"00-{trace_id}-{INCOMING_SPAN}-01")
    client.get("/experiments", headers=forged)
    with psycopg.connect(database_url, autocommit=True) as conn:
        planted = conn.execute(
            "SELECT count(*) FROM labstream.spans"
            " WHERE trace_id = %s AND attributes ->> 'lab.tenant.id' = %s",
            (trace_id, theirs),
        ).fetchone()
    assert planted is not None and planted[0] >= 1, "the forged span should be stored"
    assert client.get(f"/traces/{trace_id}", headers=as_(theirs)).status_code == 404
    # and the owner still reads it, without the planted span
    document = client.get(f"/traces/{trace_id}", headers=as_(mine)).json()
    assert {span["attributes"].get("lab.tenant.id") for span in document["spans"]} <= {mine, None}


def test_metrics_health_and_readiness_need_no_tenant_and_make_no_span(traced_client, tenants):
    from prometheus_client.parser import text_string_to_metric_families

    client, memory = traced_client
    mine, _ = tenants
    assert submit(client, mine).status_code == 201
    assert client.get("/healthz").status_code == 200
    ready = client.get("/readyz")
    assert ready.status_code == 200 and ready.json()["checks"]["database"] == {"ok": True}
    response = client.get("/metrics")
    assert response.status_code == 200
    families = {f.name: f for f in text_string_to_metric_families(response.text)}
    requests = [s for s in families["labstream_http_request_duration_seconds"].samples
                if s.name.endswith("_count") and s.labels["route"] == "/experiments"
                and s.labels["method"] == "POST" and s.labels["status"] == "201"]
    assert requests and requests[0].value >= 1
    assert "labstream_spans_dropped" in families
    names = {span.name for span in memory.get_finished_spans()}
    assert not {n for n in names if "metrics" in n or "healthz" in n or "readyz" in n}, names


def test_readiness_fails_when_the_database_does_not_answer(monkeypatch):
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        closed = sock.getsockname()[1]
    monkeypatch.setattr("labstream.api.ops_routes.READY_TIMEOUT_S", 0.5)
    app = create_app(database_url=f"postgresql://lab:lab@127.0.0.1:{closed}/lab",
                     tracer_provider=TracerProvider())
    with TestClient(app) as client:
        assert client.get("/healthz").status_code == 200  # alive: restart it not
        ready = client.get("/readyz")
    assert ready.status_code == 503
    assert ready.json()["checks"]["database"]["ok"] is False
    assert ready.json()["checks"]["database"]["reason"]


def test_responses_carry_the_beeline_header_when_configured(traced_client, tenants):
    from beeline.propagation.honeycomb import unmarshal_propagation_context

    from tracing.propagation import set_beeline_outbound

    client, _ = traced_client
    mine, _ = tenants
    traceparent = {"traceparent": f"00-{INCOMING_TRACE}-{INCOMING_SPAN}-01"}
    assert "X-Honeycomb-Trace" not in submit(client, mine, traceparent).headers  # default off
    set_beeline_outbound(True)
    try:
        response = submit(client, mine, traceparent)
    finally:
        set_beeline_outbound(False)
    assert response.status_code == 201
    trace_id, parent_id, _ = unmarshal_propagation_context(response.headers["X-Honeycomb-Trace"])
    assert trace_id == INCOMING_TRACE
    assert response.headers["traceparent"].split("-")[2] == parent_id  # the API's own span
