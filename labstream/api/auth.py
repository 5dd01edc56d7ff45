"""Who is calling: bearer credential -> `Principal`, role checks, rate limits, audit.

- `Authorization: Bearer lst_<id>_<secret>` (`labstream tokens create`): the id
  finds the row, scrypt checks the secret (in a thread: it takes tens of ms). A
  verified token is kept `auth_cache_s` seconds under the SHA-256 of the whole
  token; after that its row is read again (no scrypt), so a revoked or expired
  token is refused at most that long after the fact.
- Optionally an OpenID Connect JWT (`LABSTREAM_API_OIDC_ISSUER`), see `oidc.py`.

The tenant always comes from the credential. Only an operator credential names
the tenant it reads (`X-Lab-Tenant`), and each of its requests is written to
labstream.operator_audit before any data is read.
"""

from __future__ import annotations

import hashlib
import math
import re
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime

import psycopg
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request

from labstream.api.exceptions import (
    BadInput,
    Forbidden,
    NotFound,
    RateLimited,
    Unauthenticated,
)
from labstream.api.settings import ApiSettings
from labstream.auth import tokens
from labstream.auth.tokens import Role

TENANT_HEADER = "x-lab-tenant"
# experiment, job and tenant ids: what the simulator, the API and the job runner make
ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._:-]{0,127}$")
ID_RULE = "letters, digits and . _ : - (first a letter or digit), at most 128"
READ_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
_CACHE_MAX = 10_000
_REFUSED = "invalid, expired or revoked credential"
_SIGN_IN = "send Authorization: Bearer <token> (labstream tokens create)"


@dataclass(frozen=True)
class Principal:
    subject: str  # token id, or `oidc:<sub>`
    role: Role
    tenant_id: str | None  # None: operator


@dataclass
class _Verified:
    principal: Principal
    token_id: str
    checked_at: float


class TokenVerifier:
    """Verify API tokens, paying scrypt once per token and not once per request."""

    def __init__(self, settings: ApiSettings, clock: Callable[[], float] = time.monotonic):
        self._ttl = settings.auth_cache_s
        self._clock = clock
        self._verified: dict[bytes, _Verified] = {}
        self.scrypt_checks = 0  # for tests and /metrics-style curiosity

    async def verify(self, conn: psycopg.AsyncConnection, token: str) -> Principal:
        parts = tokens.split_token(token)
        if parts is None:
            raise Unauthenticated(f"malformed token: {_REFUSED}", hint=_SIGN_IN)
        token_id, secret = parts
        digest = hashlib.sha256(token.encode()).digest()
        cached = self._verified.get(digest)
        now = self._clock()
        if cached is not None and now - cached.checked_at < self._ttl:
            return cached.principal
        row = await tokens.fetch_token(conn, token_id)
        if row is None or not row.usable(datetime.now(UTC)):
            self._verified.pop(digest, None)
            raise Unauthenticated(_REFUSED, hint=_SIGN_IN)
        if cached is None:  # first sight of this token: the slow check
            self.scrypt_checks += 1
            if not await run_in_threadpool(tokens.secret_matches, row, secret):
                raise Unauthenticated(_REFUSED, hint=_SIGN_IN)
        await conn.execute("UPDATE labstream.api_tokens SET last_used_at = now() WHERE id = %s",
                           (token_id,))
        principal = Principal(subject=row.id, role=row.role, tenant_id=row.tenant_id)
        if len(self._verified) >= _CACHE_MAX:
            self._verified = {k: v for k, v in self._verified.items()
                              if now - v.checked_at < self._ttl}
            if len(self._verified) >= _CACHE_MAX:
                self._verified.clear()
        self._verified[digest] = _Verified(principal, token_id, now)
        return principal


class RateLimiter:
    """A token bucket per credential (in this process: each API replica has its own)."""

    def __init__(self, rate_per_s: float, burst: int,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.rate, self.burst, self._clock = rate_per_s, float(burst), clock
        self._buckets: dict[str, tuple[float, float]] = {}  # subject -> (tokens, at)

    def take(self, subject: str) -> None:
        now = self._clock()
        level, at = self._buckets.get(subject, (self.burst, now))
        level = min(self.burst, level + (now - at) * self.rate)
        if level < 1:
            retry_after = max(1, math.ceil((1 - level) / self.rate))
            self._buckets[subject] = (level, now)
            raise RateLimited(
                f"rate limit: {self.rate:g} requests/s per credential (burst {self.burst:g})",
                retry_after=retry_after, hint=f"retry after {retry_after}s")
        self._buckets[subject] = (level - 1, now)
        if len(self._buckets) > _CACHE_MAX:  # forget full buckets: they mean nothing
            self._buckets = {k: v for k, v in self._buckets.items() if v[0] < self.burst - 1}


def bearer_token(request: Request) -> str:
    header = request.headers.get("authorization", "")
    scheme, _, credential = header.partition(" ")
    if scheme.lower() != "bearer" or not credential.strip():
        raise Unauthenticated("authentication required", hint=_SIGN_IN)
    return credential.strip()


async def authenticate(request: Request, conn: psycopg.AsyncConnection) -> Principal:
    """The caller, rate-limited per credential (429) before the costly checks; a client
    address that keeps failing is rate-limited too (guessing costs it time)."""
    try:
        principal = await _authenticate(request, conn)
    except Unauthenticated:
        failures: RateLimiter = request.app.state.failure_limiter
        failures.take(f"ip:{request.client.host if request.client else '?'}")
        raise
    if principal.role is Role.OPERATOR:  # every use, refused ones included
        await audit(conn, principal, request,
                    request.headers.get(TENANT_HEADER, "").strip() or None)
    return principal


async def _authenticate(request: Request, conn: psycopg.AsyncConnection) -> Principal:
    token = bearer_token(request)
    state = request.app.state
    limiter: RateLimiter = state.rate_limiter
    if token.count(".") == 2 and getattr(state, "oidc", None) is not None:
        principal: Principal = await state.oidc.verify(token)
        limiter.take(principal.subject)
        return principal
    parts = tokens.split_token(token)
    if parts is None:
        raise Unauthenticated(f"malformed token: {_REFUSED}", hint=_SIGN_IN)
    # by token id, before scrypt: wrong secrets for a known id cannot burn CPU unbounded
    limiter.take(parts[0])
    verifier: TokenVerifier = state.token_verifier
    return await verifier.verify(conn, token)


def check_role(principal: Principal, method: str) -> None:
    if method not in READ_METHODS and not principal.role.may_write:
        raise Forbidden(f"a {principal.role} credential may only read",
                        hint="writing needs a scientist token of this tenant")


async def tenant_of(request: Request, conn: psycopg.AsyncConnection,
                    principal: Principal) -> str:
    """The tenant this request reads or writes; operators name it (audited already)."""
    asked = request.headers.get(TENANT_HEADER, "").strip()
    if principal.role is not Role.OPERATOR:
        assert principal.tenant_id is not None
        if asked and asked != principal.tenant_id:
            raise Forbidden("this credential is bound to its own tenant",
                            hint="drop X-Lab-Tenant: the tenant comes from the token")
        if principal.subject.startswith("oidc:") and not await _tenant_exists(
                conn, principal.tenant_id):
            raise Forbidden(f"the credential's tenant {principal.tenant_id!r} is not in the lab",
                            hint="ask the lab to add the tenant")
        return principal.tenant_id
    if not asked:
        raise Forbidden("an operator credential must name the tenant it reads",
                        hint="send X-Lab-Tenant: <tenant id> (the request is audited)")
    if not ID.match(asked):
        raise BadInput(f"X-Lab-Tenant {asked[:64]!r} is not a valid tenant id", hint=ID_RULE)
    if not await _tenant_exists(conn, asked):
        raise NotFound(f"no tenant {asked!r}")
    return asked


async def _tenant_exists(conn: psycopg.AsyncConnection, tenant_id: str) -> bool:
    cursor = await conn.execute("SELECT 1 FROM public.tenants WHERE id = %s", (tenant_id,))
    return await cursor.fetchone() is not None


async def audit(conn: psycopg.AsyncConnection, principal: Principal, request: Request,
                tenant_id: str | None) -> None:
    """One row per operator request, committed before anything else is done for it."""
    from tracing.propagation import trace_id_hex

    query = f"?{request.url.query}" if request.url.query else ""
    await conn.execute(
        "INSERT INTO labstream.operator_audit (subject, method, path, tenant_id, trace_id)"
        " VALUES (%s, %s, %s, %s, %s)",
        # bounded: an audit row must not become a way to fill the disk
        (principal.subject, request.method, (request.url.path + query)[:2000],
         tenant_id[:200] if tenant_id else None, trace_id_hex()),
    )
    # commit now: the pool rolls back a request that ends in an error, the audit must stay
    await conn.commit()
