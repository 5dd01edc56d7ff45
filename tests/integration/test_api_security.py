"""The lab API knows who is calling: tokens, roles, tenants, limits, on the real lab DB.

Two tenants each get an experiment, a job and a trace made through the API; every
check below is made with real tokens (`labstream tokens`) against the real
PostgreSQL, spans stored by the real span exporter.
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
from api_helpers import bearer, token_id
from click.testing import CliRunner
from confluent_kafka.admin import AdminClient, ConfigResource
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from starlette.testclient import TestClient

from base.settings import service_settings
from labstream.api.app import create_app
from labstream.api.settings import ApiSettings
from labstream.api.store import API_SERVICE
from labstream.cli import app as cli_app
from labstream.stack import control, postgres
from tracing.spanstore import DbSpanExporter

pytestmark = pytest.mark.integration


@dataclass(frozen=True)
class Tenant:
    id: str
    auth: dict[str, str]
    experiment: str
    job: str
    trace_id: str


def execute(database_url: str, sql: str, params: Any = None) -> list[Any]:
    with psycopg.connect(database_url, autocommit=True) as conn:
        cursor = conn.execute(sql, params)
        return cursor.fetchall() if cursor.description else []


def app_client(database_url: str, **settings: Any) -> Iterator[tuple[TestClient, Any]]:
    # spans go to the real span store under the API's service name, as in production
    provider = TracerProvider(resource=Resource.create({"service.name": API_SERVICE}))
    provider.add_span_processor(SimpleSpanProcessor(DbSpanExporter(database_url)))
    app = create_app(database_url=database_url, tracer_provider=provider,
                     settings=ApiSettings(**settings))
    with TestClient(app) as client:
        yield client, app
    provider.shutdown()


@pytest.fixture
def client(database_url: str) -> Iterator[TestClient]:
    for running, _ in app_client(database_url):
        yield running


def submit(client: TestClient, auth: dict[str, str], **body: Any) -> Any:
    return client.post("/experiments", json={"kind": "hplc", "submitted_by": "ada", **body},
                       headers=auth)


@pytest.fixture
def tenants(database_url: str, unique_name: str, api_token: Any, client: TestClient
            ) -> Iterator[tuple[Tenant, Tenant]]:
    made = []
    for suffix in ("a", "b"):
        tenant = f"{unique_name.replace('_', '-')}-{suffix}"
        execute(database_url, "INSERT INTO public.tenants (id, name) VALUES (%s, %s)",
                (tenant, tenant))
        auth = bearer(api_token(tenant))
        created = submit(client, auth)
        assert created.status_code == 201, created.text
        body = created.json()
        job = f"job-{uuid.uuid4().hex[:12]}"
        execute(database_url, "INSERT INTO public.jobs (id, job_key, rule_id, tenant_id, "
                "experiment_id, backend, status, trace_id) VALUES (%s, %s, 'r', %s, %s, "
                "'local', 'succeeded', %s)", (job, job, tenant, body["id"], body["trace_id"]))
        made.append(Tenant(tenant, auth, body["id"], job, body["trace_id"]))
    yield made[0], made[1]
    for tenant in made:
        execute(database_url, "DELETE FROM labstream.spans WHERE trace_id = %s",
                (tenant.trace_id,))
        execute(database_url, "DELETE FROM labstream.trace_owners WHERE trace_id = %s",
                (tenant.trace_id,))
        execute(database_url, "DELETE FROM public.jobs WHERE tenant_id = %s", (tenant.id,))
        execute(database_url, "DELETE FROM public.experiments WHERE tenant_id = %s",
                (tenant.id,))
        execute(database_url, "DELETE FROM labstream.operator_audit WHERE tenant_id = %s",
                (tenant.id,))
        execute(database_url, "DELETE FROM public.tenants WHERE id = %s", (tenant.id,))


def data_requests(t: Tenant) -> list[tuple[str, str]]:
    """Every data endpoint, aimed at tenant `t`'s things."""
    return [("GET", "/experiments"), ("POST", "/experiments"),
            ("GET", f"/experiments/{t.experiment}"), ("GET", f"/experiments/{t.experiment}/jobs"),
            ("GET", f"/jobs/{t.job}"), ("GET", f"/jobs/{t.job}/logs"),
            ("GET", f"/traces/{t.trace_id}"), ("GET", f"/traces/{t.trace_id}/explain"),
            ("POST", f"/traces/{t.trace_id}/spans")]


def call(client: TestClient, method: str, path: str, headers: dict[str, str]) -> Any:
    body = {"kind": "hplc", "submitted_by": "ada"} if method == "POST" else None
    return client.request(method, path, headers=headers, json=body)


def assert_error(response: Any, status: int) -> dict[str, Any]:
    assert response.status_code == status, (response.request.url, response.text)
    body = response.json()
    assert set(body) == {"error", "hint", "status"} and body["status"] == status, body
    return dict(body)


def test_every_data_endpoint_answers_401_without_a_valid_credential(database_url, tenants):
    ours, _ = tenants
    for client, _ in app_client(database_url, auth_failure_burst=1000):
        refuses_everything_without_a_credential(client, ours)


def refuses_everything_without_a_credential(client: TestClient, ours: Tenant) -> None:
    wrong_secret = ours.auth["Authorization"][:-5] + "AAAAA"
    refused = [{}, {"X-Lab-Tenant": ours.id}, {"Authorization": "Bearer nonsense"},
               {"Authorization": f"Basic {ours.auth['Authorization'][7:]}"},
               {"Authorization": "Bearer lst_0123456789abcdef_" + "x" * 43},
               {"Authorization": wrong_secret}]
    for method, path in data_requests(ours):
        for headers in refused:
            response = call(client, method, path, headers)
            body = assert_error(response, 401)
            assert response.headers["www-authenticate"].startswith("Bearer")
            assert ours.experiment not in response.text and "Traceback" not in body["error"]
    # the same requests with the token get past authentication
    assert client.get(f"/experiments/{ours.experiment}", headers=ours.auth).status_code == 200


def test_a_client_that_keeps_failing_to_authenticate_is_slowed_down(database_url, tenants):
    ours, _ = tenants
    bad = {"Authorization": "Bearer lst_0123456789abcdef_" + "x" * 43}
    for client, _ in app_client(database_url, auth_failures_per_s=0.2, auth_failure_burst=3):
        answers = [client.get("/experiments", headers=bad).status_code for _ in range(4)]
        assert answers == [401, 401, 401, 429]
        # a valid credential from the same address still gets in
        assert client.get("/experiments", headers=ours.auth).status_code == 200


def test_another_tenants_things_answer_404_like_things_that_do_not_exist(client, tenants):
    ours, theirs = tenants
    for method, path in data_requests(theirs):
        if path == "/experiments":
            continue  # the list and the create are always our own tenant's
        response = call(client, method, path, ours.auth)
        assert_error(response, 404)
        assert theirs.id not in response.text
        # exactly what a made-up id of the same kind answers: no enumeration
        made_up = path.replace(theirs.experiment, "exp-doesnotexist").replace(
            theirs.job, "job-doesnotexist").replace(theirs.trace_id, "f" * 32)
        assert call(client, method, made_up, ours.auth).status_code == 404
    listed = client.get("/experiments", headers=ours.auth).json()
    assert listed["tenant_id"] == ours.id
    assert theirs.experiment not in json.dumps(listed)
    # the old header cannot switch tenants either
    switched = client.get(f"/experiments/{theirs.experiment}",
                          headers={**ours.auth, "X-Lab-Tenant": theirs.id})
    assert_error(switched, 403)


def test_a_viewer_reads_its_tenant_but_cannot_write(client, tenants, api_token):
    ours, theirs = tenants
    viewer = bearer(api_token(ours.id, "viewer"))
    assert client.get(f"/experiments/{ours.experiment}", headers=viewer).status_code == 200
    assert client.get(f"/experiments/{theirs.experiment}", headers=viewer).status_code == 404
    assert_error(submit(client, viewer), 403)


def test_a_revoked_token_is_refused_within_the_cache_time(database_url, tenants, api_token):
    ours, _ = tenants
    token = api_token(ours.id)
    path = f"/experiments/{ours.experiment}"
    for client, _ in app_client(database_url, auth_cache_s=1.0):
        assert client.get(path, headers=bearer(token)).status_code == 200
        result = CliRunner().invoke(cli_app, ["tokens", "revoke", token_id(token)])
        assert result.exit_code == 0, result.output
        revoked_at = time.monotonic()
        while client.get(path, headers=bearer(token)).status_code == 200:
            assert time.monotonic() - revoked_at < 1.5, "revoked token still accepted"
            time.sleep(0.05)  # polling the API itself, not waiting for it
        assert_error(client.get(path, headers=bearer(token)), 401)
        # an expired token too
        expired = api_token(ours.id)
        execute(database_url, "UPDATE labstream.api_tokens SET expires_at = now() - "
                "interval '1 second' WHERE id = %s", (token_id(expired),))
        assert_error(client.get(path, headers=bearer(expired)), 401)


def test_the_token_cli_shows_the_secret_once_and_never_stores_it(database_url, tenants):
    ours, _ = tenants
    made = CliRunner().invoke(cli_app, ["tokens", "create", "--tenant", ours.id, "--role",
                                        "viewer", "--name", "cli-test", "--json"])
    assert made.exit_code == 0, made.output
    created = json.loads(made.stdout)
    token = created["token"]
    listed = CliRunner().invoke(cli_app, ["tokens", "list", "--tenant", ours.id, "--json"])
    assert created["id"] in listed.stdout and token.split("_")[2] not in listed.stdout
    [(stored,)] = execute(database_url, "SELECT row_to_json(t)::text FROM labstream.api_tokens"
                          " t WHERE id = %s", (created["id"],))
    assert token.split("_")[2] not in stored  # only the scrypt hash is kept
    refused = CliRunner().invoke(cli_app, ["tokens", "create", "--tenant", "no-such-tenant-x",
                                           "--name", "x"])
    assert refused.exit_code != 0 and "unknown tenant" in str(refused.exception)


def test_an_operator_reads_any_tenant_and_every_request_is_audited(client, tenants, api_token,
                                                                   database_url):
    ours, theirs = tenants
    operator_token = api_token(None, "operator")
    operator = bearer(operator_token)
    assert_error(client.get("/experiments", headers=operator), 403)  # must name the tenant
    for tenant in (ours, theirs):
        asked = {**operator, "X-Lab-Tenant": tenant.id}
        response = client.get(f"/experiments/{tenant.experiment}", headers=asked)
        assert response.status_code == 200 and response.json()["tenant_id"] == tenant.id
        assert client.get(f"/traces/{tenant.trace_id}", headers=asked).status_code == 200
        assert_error(submit(client, asked), 403)  # operators only read
    assert_error(client.get("/experiments", headers={**operator, "X-Lab-Tenant": "no-such-x"}),
                 404)
    assert_error(client.get("/experiments", headers={**operator, "X-Lab-Tenant": "a b"}), 400)
    assert client.get("/auth/whoami", headers=operator).json()["role"] == "operator"
    audit = execute(database_url, "SELECT tenant_id, method, path FROM labstream.operator_audit"
                    " WHERE subject = %s ORDER BY id", (token_id(operator_token),))
    assert audit == [  # every use, refused ones included
        (None, "GET", "/experiments"),
        (ours.id, "GET", f"/experiments/{ours.experiment}"),
        (ours.id, "GET", f"/traces/{ours.trace_id}"),
        (ours.id, "POST", "/experiments"),
        (theirs.id, "GET", f"/experiments/{theirs.experiment}"),
        (theirs.id, "GET", f"/traces/{theirs.trace_id}"),
        (theirs.id, "POST", "/experiments"),
        ("no-such-x", "GET", "/experiments"),
        ("a b", "GET", "/experiments"),
        (None, "GET", "/auth/whoami"),
    ]
    execute(database_url, "DELETE FROM labstream.operator_audit WHERE subject = %s",
            (token_id(operator_token),))


def test_no_audit_row_no_data(database_url, tenants, api_token):
    """If the audit row cannot be written, the operator gets an error, never the data."""
    ours, _ = tenants
    operator = {**bearer(api_token(None, "operator")), "X-Lab-Tenant": ours.id}
    for client, _ in app_client(database_url):
        assert client.get(f"/experiments/{ours.experiment}", headers=operator
                          ).status_code == 200
        execute(database_url, "REVOKE INSERT ON labstream.operator_audit FROM CURRENT_USER")
        try:
            client_errors = TestClient(client.app, raise_server_exceptions=False)
            refused = client_errors.get(f"/experiments/{ours.experiment}", headers=operator)
        finally:
            execute(database_url, "GRANT INSERT ON labstream.operator_audit TO CURRENT_USER")
        body = assert_error(refused, 500)
        assert ours.experiment not in refused.text and "trace id" in body["hint"]


def test_a_foreign_traceparent_cannot_take_a_trace_away(client, tenants, database_url):
    """Regression (issue 14): one request of tenant B carrying A's traceparent made A's
    trace unreadable to A for good."""
    ours, theirs = tenants
    forged = {**theirs.auth, "traceparent": f"00-{ours.trace_id}-b7ad6b7169203331-01"}
    # B reads with A's trace context (its spans land in A's trace) ...
    assert client.get("/experiments", headers=forged).status_code == 200
    # ... so does someone without a credential (refused, but their span is stored) ...
    assert_error(client.get("/experiments", headers={"traceparent": forged["traceparent"]}),
                 401)
    # ... and tries to write into it, which would make it B's
    response = submit(client, forged)
    assert_error(response, 409)
    planted = execute(database_url, "SELECT count(*) FROM labstream.spans WHERE trace_id = %s "
                      "AND attributes ->> 'lab.tenant.id' = %s", (ours.trace_id, theirs.id))
    assert planted[0][0] >= 1, "B's spans should be stored in A's trace (the attack)"
    assert execute(database_url, "SELECT tenant_id FROM labstream.trace_owners WHERE "
                   "trace_id = %s", (ours.trace_id,)) == [(ours.id,)]
    # A still reads its trace, without B's spans; B never does
    document = client.get(f"/traces/{ours.trace_id}", headers=ours.auth)
    assert document.status_code == 200, document.text
    # (spans that name no tenant, e.g. a running connector's, are kept)
    named = {s["attributes"].get("lab.tenant.id") for s in document.json()["spans"]}
    assert named - {None} == {ours.id}, named
    refused = [s for s in document.json()["spans"]
               if s["attributes"].get("http.response.status_code") == 401]
    assert refused == [], "the unauthenticated request's span is shown to the owner"
    assert client.get(f"/traces/{ours.trace_id}/explain", headers=ours.auth).status_code == 200
    assert_error(client.get(f"/traces/{ours.trace_id}", headers=theirs.auth), 404)


def test_bodies_and_fields_over_their_limits_are_413_naming_the_limit(client, tenants):
    ours, _ = tenants
    huge = json.dumps({"kind": "hplc", "submitted_by": "ada", "title": "x" * 300_000})
    response = client.post("/experiments", content=huge, headers={
        **ours.auth, "Content-Type": "application/json"})
    assert "262144" in assert_error(response, 413)["error"]

    def chunks() -> Iterator[bytes]:  # no Content-Length: counted while read
        yield b'{"kind": "hplc", "submitted_by": "ada", "title": "'
        for _ in range(40):
            yield b"y" * 10_000
        yield b'"}'

    response = client.post("/experiments", content=chunks(), headers=ours.auth)
    assert "262144" in assert_error(response, 413)["error"]
    for field, value, limit in (("title", "t" * 501, "500"),
                                ("submitted_by", "s" * 201, "200"),
                                ("protocol", {"trace": "p" * 140_000}, "131072")):
        body = assert_error(submit(client, ours.auth, **{field: value}), 413)
        assert field in body["error"] and limit in body["error"], body
    assert submit(client, ours.auth, title="t" * 500).status_code == 201


def test_the_largest_accepted_experiment_fits_in_a_kafka_record(kafka_bootstrap):
    """A change record carries the row before and after: twice the body must fit."""
    admin = AdminClient({"bootstrap.servers": kafka_bootstrap})
    resource = ConfigResource(ConfigResource.Type.BROKER, "1")
    try:
        configs = admin.describe_configs([resource])[resource].result(timeout=20)
    except Exception:  # the local broker's id is not 1: ask the first one it names
        broker = str(next(iter(admin.list_topics(timeout=20).brokers)))
        resource = ConfigResource(ConfigResource.Type.BROKER, broker)
        configs = admin.describe_configs([resource])[resource].result(timeout=20)
    max_message = int(configs["message.max.bytes"].value)
    # Avro is no bigger than the JSON body; 64 KiB left for schema id, source block, headers
    assert 2 * ApiSettings().max_body_bytes + 64 * 1024 <= max_message, max_message


def test_bursts_over_the_rate_answer_429_with_retry_after(database_url, tenants):
    ours, theirs = tenants
    for client, _ in app_client(database_url, rate_per_s=0.5, rate_burst=3):
        answers = [client.get("/experiments", headers=ours.auth) for _ in range(4)]
        assert [a.status_code for a in answers] == [200, 200, 200, 429]
        body = assert_error(answers[-1], 429)
        assert int(answers[-1].headers["retry-after"]) >= 1 and "requests/s" in body["error"]
        # per credential: the other tenant is not slowed down by ours
        assert client.get("/experiments", headers=theirs.auth).status_code == 200


def test_nul_bytes_negative_numbers_and_bad_ids_are_400(client, tenants):
    ours, _ = tenants
    for path in ("/jobs/job-1%00x", "/experiments?limit=%00", f"/jobs/{ours.job}/logs?limit=-5",
                 f"/jobs/{ours.job}/logs?after=-2", "/experiments?limit=-5",
                 "/experiments/exp%20with%20space", "/experiments/" + "e" * 129,
                 "/jobs/job;drop"):
        response = client.get(path, headers=ours.auth)
        assert_error(response, 400)
    # after=-1 means "from the first line" (the console's first read): allowed
    assert client.get(f"/jobs/{ours.job}/logs?after=-1", headers=ours.auth).status_code == 200
    nul = assert_error(submit(client, ours.auth, title="bad\x00title"), 400)
    assert "title" in nul["error"]
    nested = assert_error(submit(client, ours.auth, protocol={"a": {"b": "x\x00"}}), 400)
    assert "protocol.a.b" in nested["error"]
    negative = assert_error(submit(client, ours.auth, priority=-1), 400)
    assert "priority" in negative["error"]
    # any JSON body, e.g. the console's page span
    span = assert_error(client.post(f"/traces/{ours.trace_id}/spans", headers=ours.auth,
                                    json={"span_id": "a" * 16, "name": "x\x00"}), 400)
    assert "name" in span["error"]
    # a negative number inside the protocol is data, not a count: accepted
    assert submit(client, ours.auth, protocol={"temperature_c": -20}).status_code == 201


def test_security_headers_and_one_error_shape(client, tenants):
    ours, _ = tenants
    data = client.get("/experiments", headers=ours.auth)
    page = client.get("/console/")
    for response in (data, page, client.get("/experiments")):
        assert "frame-ancestors 'none'" in response.headers["content-security-policy"]
        assert response.headers["x-content-type-options"] == "nosniff"
        assert response.headers["x-frame-options"] == "DENY"
    assert data.headers["cache-control"] == "no-store"
    assert "no-store" not in page.headers.get("cache-control", "")
    assert_error(client.get("/no-such-route"), 404)
    assert_error(client.delete("/experiments", headers=ours.auth), 405)


def test_verifying_a_token_costs_one_scrypt_then_a_cache_hit(database_url, tenants):
    ours, _ = tenants
    for client, app in app_client(database_url, auth_cache_s=30):
        for _ in range(20):
            assert client.get(f"/jobs/{ours.job}", headers=ours.auth).status_code == 200
        assert app.state.token_verifier.scrypt_checks == 1


def test_the_api_answers_503_while_postgresql_restarts_and_recovers_alone(database_url,
                                                                            tenants):
    """PostgreSQL stopped under a running API: 503 in the one error shape (not 500, no
    traceback), then every request succeeds again once it is back, with no restart."""
    ours, _ = tenants
    path = f"/experiments/{ours.experiment}"
    paths = control.state_paths(service_settings())
    # cache time 0: the token's row must be read from the restarted database too
    for client, _ in app_client(database_url, pool_timeout_s=2, auth_cache_s=0):
        assert client.get(path, headers=ours.auth).status_code == 200
        assert postgres.stop(paths), "the local PostgreSQL was not running"
        try:
            down = client.get(path, headers=ours.auth)
        finally:
            control.up()
        body = assert_error(down, 503)
        assert "did not answer" in body["error"]
        answers = [client.get(path, headers=ours.auth).status_code for _ in range(5)]
        assert answers == [200] * 5, answers
