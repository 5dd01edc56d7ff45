"""OpenID Connect bearer JWTs: checked against a JWKS served over HTTP, on the real lab DB.

The test is the identity provider: it makes an RSA key pair, serves the public
key as a JWKS from a local HTTP server, and signs JWTs carrying the lab's
tenant and role claims.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import jwt
import psycopg
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from starlette.testclient import TestClient

from labstream.api.app import create_app
from labstream.api.settings import ApiSettings

pytestmark = pytest.mark.integration

ISSUER, AUDIENCE, KID = "https://id.lab.test", "labstream-api", "test-key-1"


def new_key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


@pytest.fixture(scope="module")
def signing_key() -> rsa.RSAPrivateKey:
    return new_key()


@pytest.fixture(scope="module")
def jwks_url(signing_key: rsa.RSAPrivateKey) -> Iterator[str]:
    public = json.loads(jwt.algorithms.RSAAlgorithm.to_jwk(signing_key.public_key()))
    body = json.dumps({"keys": [{**public, "kid": KID, "use": "sig", "alg": "RS256"}]}).encode()

    class Jwks(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Jwks)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}/jwks.json"
    server.shutdown()


@pytest.fixture
def tenant(database_url: str, unique_name: str) -> Iterator[str]:
    name = unique_name.replace("_", "-")
    with psycopg.connect(database_url, autocommit=True) as conn:
        conn.execute("INSERT INTO public.tenants (id, name) VALUES (%s, %s)", (name, name))
    yield name
    with psycopg.connect(database_url, autocommit=True) as conn:
        conn.execute("DELETE FROM labstream.operator_audit WHERE tenant_id = %s", (name,))
        conn.execute("DELETE FROM public.experiments WHERE tenant_id = %s", (name,))
        conn.execute("DELETE FROM public.tenants WHERE id = %s", (name,))


@pytest.fixture
def client(database_url: str, jwks_url: str) -> Iterator[TestClient]:
    settings = ApiSettings(oidc_issuer=ISSUER, oidc_audience=AUDIENCE, oidc_jwks_url=jwks_url)
    with TestClient(create_app(database_url=database_url, settings=settings)) as running:
        yield running


def token(key: Any, *, algorithm: str = "RS256", kid: str = KID, **claims: Any) -> str:
    now = int(time.time())
    payload = {"iss": ISSUER, "aud": AUDIENCE, "sub": "ada", "iat": now, "exp": now + 300,
               **claims}
    return jwt.encode({k: v for k, v in payload.items() if v is not None}, key,
                      algorithm=algorithm, headers={"kid": kid})


def hs256_with(secret: bytes, claims: dict[str, Any]) -> str:
    """The key-confusion attack, made by hand (PyJWT refuses to make it)."""
    def part(data: dict[str, Any]) -> str:
        return base64.urlsafe_b64encode(json.dumps(data).encode()).rstrip(b"=").decode()

    signing_input = f"{part({'alg': 'HS256', 'typ': 'JWT', 'kid': KID})}.{part(claims)}"
    mac = hmac.new(secret, signing_input.encode(), hashlib.sha256).digest()
    return f"{signing_input}.{base64.urlsafe_b64encode(mac).rstrip(b'=').decode()}"


def auth(jwt_text: str, **more: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {jwt_text}", **more}


def test_a_signed_jwt_gives_its_tenant_and_role(client, signing_key, tenant):
    scientist = token(signing_key, lab_tenant=tenant, lab_role="scientist")
    created = client.post("/experiments", json={"kind": "hplc", "submitted_by": "ada"},
                          headers=auth(scientist))
    assert created.status_code == 201, created.text
    assert created.json()["tenant_id"] == tenant
    listed = client.get("/experiments", headers=auth(scientist)).json()
    assert [e["id"] for e in listed["experiments"]] == [created.json()["id"]]
    who = client.get("/auth/whoami", headers=auth(scientist)).json()
    assert who == {"subject": "oidc:ada", "role": "scientist", "tenant_id": tenant}
    viewer = token(signing_key, lab_tenant=tenant, lab_role="viewer")
    assert client.get("/experiments", headers=auth(viewer)).status_code == 200
    assert client.post("/experiments", json={"kind": "hplc", "submitted_by": "ada"},
                       headers=auth(viewer)).status_code == 403


def test_an_oidc_operator_is_audited(client, signing_key, tenant, database_url):
    operator = token(signing_key, sub="oncall-7", lab_role="operator")
    assert client.get("/experiments", headers=auth(operator)).status_code == 403
    assert client.get("/experiments", headers=auth(operator, **{"X-Lab-Tenant": tenant})
                      ).status_code == 200
    with psycopg.connect(database_url) as conn:
        rows = conn.execute("SELECT subject, path FROM labstream.operator_audit "
                            "WHERE tenant_id = %s", (tenant,)).fetchall()
    assert rows == [("oidc:oncall-7", "/experiments")]
    with psycopg.connect(database_url, autocommit=True) as conn:  # the refused one named none
        refused = conn.execute("DELETE FROM labstream.operator_audit WHERE subject = "
                               "'oidc:oncall-7' AND tenant_id IS NULL RETURNING path").fetchall()
    assert refused == [("/experiments",)]


def test_bad_jwts_are_401(client, signing_key, tenant):
    other_key = new_key()
    public_pem = signing_key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    good = {"lab_tenant": tenant, "lab_role": "scientist"}
    now = int(time.time())
    bad = {
        "expired": token(signing_key, exp=now - 10, **good),
        "other audience": token(signing_key, aud="someone-else", **good),
        "other issuer": token(signing_key, iss="https://evil.test", **good),
        "signed by another key": token(other_key, **good),
        "unknown kid": token(signing_key, kid="nope", **good),
        "HS256 keyed with the public key": hs256_with(
            public_pem, {"iss": ISSUER, "aud": AUDIENCE, "sub": "x", "exp": now + 60, **good}),
        "no tenant": token(signing_key, lab_role="scientist"),
        "no such role": token(signing_key, lab_tenant=tenant, lab_role="admin"),
        "no exp": token(signing_key, exp=None, **good),
    }
    for what, text in bad.items():
        response = client.get("/experiments", headers=auth(text))
        assert response.status_code == 401, (what, response.text)
        assert set(response.json()) == {"error", "hint", "status"}
    unknown_tenant = token(signing_key, lab_tenant="no-such-tenant-x", lab_role="scientist")
    assert client.get("/experiments", headers=auth(unknown_tenant)).status_code == 403
