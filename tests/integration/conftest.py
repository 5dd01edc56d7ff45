"""Fixtures for tests against the real local stack (PostgreSQL + Kafka).

Every test in this folder is marked `integration` and uses the session fixture
`stack`, which brings the stack up (idempotent) and applies the migrations. A
service that cannot be reached fails the run loudly: these tests never skip.
"""

from __future__ import annotations

import os
import re
import secrets
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import psycopg
import pytest
from api_helpers import make_token, token_id

from base.errors import LabstreamError
from base.settings import service_settings
from labstream.stack import control

INTEGRATION_DIR = Path(__file__).resolve().parent


@dataclass(frozen=True)
class StackInfo:
    database_url: str
    kafka_bootstrap: str
    statuses: list[control.ServiceStatus]
    migrations_applied: list[str]


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    for item in items:
        if INTEGRATION_DIR in Path(str(item.fspath)).resolve().parents:
            item.add_marker(pytest.mark.integration)


def _migrate(database_url: str) -> list[str]:
    try:
        from labstream.db.migrate import migrate
    except ModuleNotFoundError as exc:
        if exc.name in ("labstream.db", "labstream.db.migrate"):
            return []  # no migrations exist yet
        raise
    return migrate(database_url)


@pytest.fixture(scope="session")
def stack() -> StackInfo:
    # replay's --rerun-succeeded consent is signed with this key, which the worker
    # checks; subprocesses started by the tests inherit it
    os.environ.setdefault("LABSTREAM_REPLAY_CONSENT_KEY", secrets.token_hex(32))
    settings = service_settings()
    try:
        statuses = control.up()
    except LabstreamError as exc:
        pytest.fail(f"the local stack is not usable: {exc}", pytrace=False)
    try:
        applied = _migrate(settings.database_url)
    except Exception as exc:  # any failure here fails every integration test, loudly
        pytest.fail(f"migrating the lab database failed: {type(exc).__name__}: {exc}",
                    pytrace=False)
    down = [item.name for item in statuses if not item.running]
    if down:
        pytest.fail(f"`stack up` returned but these are not running: {down}", pytrace=False)
    return StackInfo(settings.database_url, settings.kafka_bootstrap_servers, statuses, applied)


@pytest.fixture(autouse=True)
def _uses_stack(stack: StackInfo) -> StackInfo:
    return stack


@pytest.fixture(scope="session")
def database_url(stack: StackInfo) -> str:
    return stack.database_url


@pytest.fixture(scope="session")
def kafka_bootstrap(stack: StackInfo) -> str:
    return stack.kafka_bootstrap


@pytest.fixture
def unique_name(request: pytest.FixtureRequest) -> str:
    """`<test name slug>_<8 hex>`: lowercase, [a-z0-9_], starts with a letter, <= 32 chars.

    Valid as a replication slot, publication, topic, consumer group, schema or
    table name, and unique per test (and per run).
    """
    slug = re.sub(r"[^a-z0-9]+", "_", request.node.name.lower()).strip("_")
    slug = re.sub(r"^(test_)?", "", slug)[:22].strip("_") or "t"
    if not slug[0].isalpha():
        slug = f"t{slug}"[:22]
    return f"{slug}_{uuid.uuid4().hex[:8]}"


@pytest.fixture
def api_token(database_url: str) -> Iterator[Callable[..., str]]:
    """`api_token(tenant, role="scientist")` -> a lab API token (`bearer(token)` for headers).

    role: scientist, viewer or operator (tenant None). Operator tokens are deleted
    afterwards; the others go with their tenant.
    """
    made: list[str] = []

    def make(tenant: str | None, role: str = "scientist") -> str:
        token = make_token(database_url, tenant, role)
        made.append(token_id(token))
        return token

    yield make
    with psycopg.connect(database_url, autocommit=True) as conn:
        conn.execute("DELETE FROM labstream.api_tokens WHERE id = ANY(%s)", (made,))
