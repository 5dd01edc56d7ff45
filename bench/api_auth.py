"""What authentication costs a lab API request, on the real lab DB.

    .venv/bin/python bench/api_auth.py [--requests 200] [--rounds 5]

GET /experiments/{id} through the in-process app (Starlette TestClient, no network),
three ways, interleaved round by round so machine load hits them alike:

- cached:  the verified token is reused (the normal case, LABSTREAM_API_AUTH_CACHE_S=5);
- reread:  the token's row is read again every request (cache time 0), no scrypt;
- scrypt:  the cache is emptied before every request: one scrypt per request, what
           verifying without a cache would cost.

Prints one JSON line: median per-request milliseconds per way, and the scrypt median.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import statistics
import time
import uuid
from typing import Any

import psycopg
from starlette.testclient import TestClient

from base.settings import service_settings
from labstream.api.app import create_app
from labstream.api.settings import ApiSettings
from labstream.auth.tokens import SCRYPT_N, SCRYPT_P, SCRYPT_R, Role, create_token


def timed_requests(client: TestClient, path: str, headers: dict[str, str], count: int,
                   before: Any = None) -> list[float]:
    times = []
    for _ in range(count):
        if before is not None:
            before()
        start = time.perf_counter()
        answer = client.get(path, headers=headers)
        times.append((time.perf_counter() - start) * 1000)
        assert answer.status_code == 200, answer.text
    return times


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--requests", type=int, default=200)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    url = service_settings().database_url
    tenant = f"bench-auth-{uuid.uuid4().hex[:8]}"
    with psycopg.connect(url) as conn:
        conn.execute("INSERT INTO public.tenants (id, name) VALUES (%s, %s)", (tenant, tenant))
        conn.execute("INSERT INTO public.experiments (id, tenant_id, kind, submitted_by) "
                     "VALUES (%s, %s, 'hplc', 'bench')", (f"exp-{tenant}", tenant))
        token, _ = create_token(conn, role=Role.SCIENTIST, tenant_id=tenant, name="bench")
    headers, path = {"Authorization": f"Bearer {token}"}, f"/experiments/exp-{tenant}"
    # no rate limit in the way of the benchmark
    fast: dict[str, Any] = {"rate_per_s": 1e9, "rate_burst": 10**9}
    results: dict[str, list[float]] = {"cached": [], "reread": [], "scrypt": []}
    try:
        with TestClient(create_app(database_url=url, settings=ApiSettings(
                auth_cache_s=60, **fast))) as cached, \
             TestClient(create_app(database_url=url, settings=ApiSettings(
                auth_cache_s=0, **fast))) as reread:
            verifier = cached.app.state.token_verifier  # type: ignore[attr-defined]
            for client in (cached, reread):  # warm up pools and code paths
                timed_requests(client, path, headers, 20)
            for _ in range(args.rounds):
                results["cached"] += timed_requests(cached, path, headers, args.requests)
                results["reread"] += timed_requests(reread, path, headers, args.requests)
                results["scrypt"] += timed_requests(
                    cached, path, headers, max(args.requests // 10, 5),
                    before=verifier._verified.clear)
        salt = os.urandom(16)
        scrypt_ms = []
        for _ in range(20):
            start = time.perf_counter()
            hashlib.scrypt(b"x" * 43, salt=salt, n=SCRYPT_N, r=SCRYPT_R, p=SCRYPT_P,
                           maxmem=256 * SCRYPT_N * SCRYPT_R, dklen=32)
            scrypt_ms.append((time.perf_counter() - start) * 1000)
    finally:
        with psycopg.connect(url) as conn:
            conn.execute("DELETE FROM public.experiments WHERE tenant_id = %s", (tenant,))
            conn.execute("DELETE FROM public.tenants WHERE id = %s", (tenant,))
    medians = {name: round(statistics.median(times), 3) for name, times in results.items()}
    print(json.dumps({
        "median_ms": medians, "samples": {k: len(v) for k, v in results.items()},
        "scrypt_median_ms": round(statistics.median(scrypt_ms), 2),
        "ratio_scrypt_to_cached": round(medians["scrypt"] / medians["cached"], 1),
        "ratio_reread_to_cached": round(medians["reread"] / medians["cached"], 2),
        "loadavg": os.getloadavg()[0],
    }))


if __name__ == "__main__":
    main()
