"""PostgreSQL over TLS through the libpq URL, against the local stack's PostgreSQL.

The test makes a CA and a server certificate for 127.0.0.1, turns `ssl` on in the
local cluster (ALTER SYSTEM as the postgres OS user, then a reload) and connects
with `sslmode=verify-full&sslrootcert=<the CA>`: the lab API's pool works over it,
a client trusting another CA is refused. Afterwards `ssl` is reset.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import time
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit

import psycopg
import pytest
from api_helpers import bearer
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from starlette.testclient import TestClient

from base.db import connect
from base.errors import ServiceUnavailable
from base.settings import service_settings
from labstream.api.app import create_app
from labstream.stack import control
from labstream.stack.paths import socket_dir_for
from labstream.stack.postgres import bin_dir
from labstream.stack.runas import give_to_pg_user, run_as_pg

pytestmark = pytest.mark.integration


def _name(common: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common)])


def make_ca(common: str) -> tuple[ec.EllipticCurvePrivateKey, x509.Certificate]:
    key = ec.generate_private_key(ec.SECP256R1())
    now = dt.datetime.now(dt.UTC)
    cert = (x509.CertificateBuilder().subject_name(_name(common)).issuer_name(_name(common))
            .public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(minutes=5))
            .not_valid_after(now + dt.timedelta(days=1))
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .sign(key, hashes.SHA256()))
    return key, cert


def make_server_cert(ca_key: ec.EllipticCurvePrivateKey, ca: x509.Certificate
                     ) -> tuple[ec.EllipticCurvePrivateKey, x509.Certificate]:
    key = ec.generate_private_key(ec.SECP256R1())
    now = dt.datetime.now(dt.UTC)
    cert = (x509.CertificateBuilder().subject_name(_name("127.0.0.1")).issuer_name(ca.subject)
            .public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(minutes=5))
            .not_valid_after(now + dt.timedelta(days=1))
            .add_extension(x509.SubjectAlternativeName([
                x509.IPAddress(ipaddress.ip_address("127.0.0.1")), x509.DNSName("localhost")]),
                critical=False)
            .sign(ca_key, hashes.SHA256()))
    return key, cert


def pem(cert: x509.Certificate) -> bytes:
    return cert.public_bytes(serialization.Encoding.PEM)


def psql_as_postgres(home: Path, port: int, sql: str) -> None:
    paths = control.state_paths(service_settings())
    done = run_as_pg([str(bin_dir(paths) / "psql"), "-h", str(socket_dir_for(home)),
                      "-p", str(port), "-d", "postgres", "-v", "ON_ERROR_STOP=1", "-c", sql],
                     cwd=home)
    assert done.returncode == 0, done.stderr


def ssl_is(database_url: str, wanted: str, timeout_s: float = 20) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        with psycopg.connect(database_url, sslmode="disable") as conn:
            row = conn.execute("SHOW ssl").fetchone()
        if row and row[0] == wanted:
            return
        time.sleep(0.2)
    raise AssertionError(f"ssl never became {wanted}")


@pytest.fixture
def tls_ca(database_url: str, tmp_path: Path) -> Iterator[Path]:
    """The CA file that verifies the local PostgreSQL, with ssl on while the test runs."""
    home = control.state_paths(service_settings()).pg_link.resolve()
    port = urlsplit(database_url).port or 5432
    ca_key, ca = make_ca("labstream test CA")
    key, cert = make_server_cert(ca_key, ca)
    data = home / "data"
    for name, body in (("labstream_test_server.crt", pem(cert)), (
            "labstream_test_server.key", key.private_bytes(
                serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                serialization.NoEncryption()))):
        (data / name).write_bytes(body)
        (data / name).chmod(0o600)
        give_to_pg_user(data / name)
    ca_file = tmp_path / "ca.pem"
    ca_file.write_bytes(pem(ca))
    psql_as_postgres(home, port, "ALTER SYSTEM SET ssl_cert_file = 'labstream_test_server.crt'")
    psql_as_postgres(home, port, "ALTER SYSTEM SET ssl_key_file = 'labstream_test_server.key'")
    psql_as_postgres(home, port, "ALTER SYSTEM SET ssl = on")
    psql_as_postgres(home, port, "SELECT pg_reload_conf()")
    try:
        ssl_is(database_url, "on")
        yield ca_file
    finally:
        for setting in ("ssl", "ssl_cert_file", "ssl_key_file"):
            psql_as_postgres(home, port, f"ALTER SYSTEM RESET {setting}")
        psql_as_postgres(home, port, "SELECT pg_reload_conf()")
        ssl_is(database_url, "off")


def with_params(database_url: str, **params: str) -> str:
    joiner = "&" if "?" in database_url else "?"
    return database_url + joiner + "&".join(f"{k}={v}" for k, v in params.items())


def test_the_lab_db_url_carries_verified_tls(tls_ca: Path, database_url: str, tmp_path: Path,
                                             unique_name: str, api_token) -> None:
    url = with_params(database_url, sslmode="verify-full", sslrootcert=str(tls_ca))
    with connect(url) as conn:
        row = conn.execute("SELECT ssl, version FROM pg_stat_ssl "
                           "WHERE pid = pg_backend_pid()").fetchone()
    assert row is not None and row[0] is True and row[1].startswith("TLS"), row
    # a client that trusts another CA refuses the server
    _, other_ca = make_ca("someone else's CA")
    other = tmp_path / "other-ca.pem"
    other.write_bytes(pem(other_ca))
    with pytest.raises(ServiceUnavailable, match="certificate verify failed"):
        connect(with_params(database_url, sslmode="verify-full", sslrootcert=str(other)))
    # the lab API's pool over the same URL
    tenant = unique_name.replace("_", "-")
    with psycopg.connect(database_url, autocommit=True) as conn:
        conn.execute("INSERT INTO public.tenants (id, name) VALUES (%s, %s)", (tenant, tenant))
    try:
        with TestClient(create_app(database_url=url)) as client:
            answer = client.get("/experiments", headers=bearer(api_token(tenant)))
            assert answer.status_code == 200, answer.text  # its pool could only use TLS
    finally:
        with psycopg.connect(database_url, autocommit=True) as conn:
            conn.execute("DELETE FROM public.tenants WHERE id = %s", (tenant,))
