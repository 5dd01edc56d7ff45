"""API tokens: make, list, revoke (the CLI) and look up one (the API).

The secret is hashed with scrypt (hashlib, no extra dependency): slow and
memory-hard, so a leaked table cannot be brute-forced, while the 256-bit random
secret already makes guessing hopeless. Verifying costs one scrypt (~tens of ms);
the API keeps verified tokens for a few seconds (labstream/api/auth.py), so that
cost is paid once per token and not on every request.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Any

import psycopg
from psycopg.rows import dict_row

from base.errors import LabstreamError

PREFIX = "lst"
_TOKEN = re.compile(r"^lst_(?P<id>[0-9a-f]{16})_(?P<secret>[A-Za-z0-9_-]{43})$")
# scrypt cost: n=2**14, r=8 -> 16 MiB and ~50 ms per check (OWASP's minimum is n=2**17
# for passwords; these secrets are 256 random bits, not passwords, so the cost only
# has to defeat an offline attack on a stolen table, which 256 bits already does)
SCRYPT_N, SCRYPT_R, SCRYPT_P = 2**14, 8, 1


class Role(StrEnum):
    SCIENTIST = "scientist"  # own tenant: read and write
    VIEWER = "viewer"  # own tenant: read
    OPERATOR = "operator"  # any tenant: read, every request audited

    @property
    def may_write(self) -> bool:
        return self is Role.SCIENTIST


class TokenError(LabstreamError):
    """A token could not be made or changed (bad tenant, unknown id)."""


@dataclass(frozen=True)
class TokenRow:
    id: str
    name: str
    role: Role
    tenant_id: str | None
    secret_hash: bytes
    salt: bytes
    scrypt_n: int
    scrypt_r: int
    scrypt_p: int
    created_at: datetime
    expires_at: datetime | None
    revoked_at: datetime | None
    last_used_at: datetime | None

    def usable(self, now: datetime) -> bool:
        return self.revoked_at is None and (self.expires_at is None or self.expires_at > now)

    def public(self) -> dict[str, Any]:
        """What `labstream tokens list` shows: never the hash."""
        return {
            "id": self.id, "name": self.name, "role": str(self.role), "tenant_id": self.tenant_id,
            "created_at": self.created_at, "expires_at": self.expires_at,
            "revoked_at": self.revoked_at, "last_used_at": self.last_used_at,
        }


def split_token(token: str) -> tuple[str, str] | None:
    """(id, secret) of a well-formed token, else None."""
    match = _TOKEN.match(token)
    return (match["id"], match["secret"]) if match else None


def hash_secret(secret: str, salt: bytes, n: int = SCRYPT_N, r: int = SCRYPT_R,
                p: int = SCRYPT_P) -> bytes:
    return hashlib.scrypt(secret.encode(), salt=salt, n=n, r=r, p=p, maxmem=256 * n * r,
                          dklen=32)


def secret_matches(row: TokenRow, secret: str) -> bool:
    """Blocking (scrypt): the API runs it in a thread."""
    candidate = hash_secret(secret, row.salt, row.scrypt_n, row.scrypt_r, row.scrypt_p)
    return hmac.compare_digest(candidate, row.secret_hash)


_COLUMNS = ("id, name, role, tenant_id, secret_hash, salt, scrypt_n, scrypt_r, scrypt_p, "
            "created_at, expires_at, revoked_at, last_used_at")


def _row(data: dict[str, Any]) -> TokenRow:
    return TokenRow(**{**data, "role": Role(data["role"]),
                       "secret_hash": bytes(data["secret_hash"]), "salt": bytes(data["salt"])})


def create_token(conn: psycopg.Connection, *, role: Role, tenant_id: str | None,
                 name: str, expires_in: timedelta | None = None) -> tuple[str, TokenRow]:
    """Make a token; returns the token text (shown once) and its stored row."""
    if role is Role.OPERATOR and tenant_id is not None:
        raise TokenError("an operator token reads every tenant: give no --tenant",
                         hint="labstream tokens create --role operator --name <who>")
    if role is not Role.OPERATOR:
        if not tenant_id:
            raise TokenError(f"a {role} token needs --tenant", hint="--tenant <tenant id>")
        if conn.execute("SELECT 1 FROM public.tenants WHERE id = %s",
                        (tenant_id,)).fetchone() is None:
            raise TokenError(f"unknown tenant {tenant_id!r}",
                             hint="see SELECT id FROM public.tenants")
    token_id, secret = secrets.token_hex(8), secrets.token_urlsafe(32)
    salt = secrets.token_bytes(16)
    expires_s = expires_in.total_seconds() if expires_in else None
    with conn.cursor(row_factory=dict_row) as cursor:
        cursor.execute(
            f"INSERT INTO labstream.api_tokens (id, name, role, tenant_id, secret_hash, salt, "
            f"scrypt_n, scrypt_r, scrypt_p, expires_at) VALUES "
            f"(%s, %s, %s, %s, %s, %s, %s, %s, %s, now() + make_interval(secs => %s)) "
            f"RETURNING {_COLUMNS}",
            (token_id, name, str(role), tenant_id, hash_secret(secret, salt), salt,
             SCRYPT_N, SCRYPT_R, SCRYPT_P, expires_s),
        )
        row = cursor.fetchone()
    conn.commit()
    assert row is not None
    return f"{PREFIX}_{token_id}_{secret}", _row(row)


def list_tokens(conn: psycopg.Connection, *, tenant_id: str | None = None) -> list[TokenRow]:
    where, params = ("WHERE tenant_id = %s", (tenant_id,)) if tenant_id else ("", ())
    with conn.cursor(row_factory=dict_row) as cursor:
        cursor.execute(f"SELECT {_COLUMNS} FROM labstream.api_tokens {where} "
                       "ORDER BY created_at", params)
        return [_row(row) for row in cursor.fetchall()]


def revoke_token(conn: psycopg.Connection, token_id: str) -> TokenRow:
    """Revoke now; the API refuses it within `LABSTREAM_API_AUTH_CACHE_S` seconds."""
    token_id = token_id.removeprefix(f"{PREFIX}_").split("_")[0]
    with conn.cursor(row_factory=dict_row) as cursor:
        cursor.execute(
            f"UPDATE labstream.api_tokens SET revoked_at = coalesce(revoked_at, now()) "
            f"WHERE id = %s RETURNING {_COLUMNS}", (token_id,))
        row = cursor.fetchone()
    conn.commit()
    if row is None:
        raise TokenError(f"no token {token_id!r}", hint="labstream tokens list")
    return _row(row)


async def fetch_token(conn: psycopg.AsyncConnection, token_id: str) -> TokenRow | None:
    async with conn.cursor(row_factory=dict_row) as cursor:
        await cursor.execute(f"SELECT {_COLUMNS} FROM labstream.api_tokens WHERE id = %s",
                             (token_id,))
        row = await cursor.fetchone()
    return _row(row) if row else None
