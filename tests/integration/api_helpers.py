"""Calling the lab API as a tenant: API tokens made in the real lab DB.

`api_token(tenant, role)` (the fixture in conftest.py) or `make_token` here give a
token; `bearer(token)` the headers that carry it. Tokens of a deleted tenant go
with it (ON DELETE CASCADE); the fixture deletes the operator tokens it made.
"""

from __future__ import annotations

import psycopg

from labstream.auth.tokens import Role, create_token


def make_token(database_url: str, tenant: str | None, role: str = "scientist",
               name: str = "integration-test") -> str:
    with psycopg.connect(database_url) as conn:
        token, _ = create_token(conn, role=Role(role), tenant_id=tenant, name=name)
    return token


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def token_id(token: str) -> str:
    return token.split("_")[1]
