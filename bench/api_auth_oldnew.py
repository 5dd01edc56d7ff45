"""Old (X-Lab-Tenant) vs new (bearer token) lab API, one side per process.

    git archive ad1fcf9 | tar -x -C /tmp/old        # the tree before authentication
    T=bench-oldnew; TOKEN=$(labstream tokens create --tenant $T --name bench)  # tenant,
    # experiment exp-$T made beforehand
    for i in 1 2 3 4 5; do
      PYTHONPATH=/tmp/old .venv/bin/python bench/api_auth_oldnew.py old $T exp-$T x 300
      .venv/bin/python bench/api_auth_oldnew.py new $T exp-$T $TOKEN 300
    done

Each run: 20 warm-up GETs of the experiment, then `requests` timed ones through the
in-process app; prints the side and the median milliseconds.
"""

from __future__ import annotations

import statistics
import sys
import time
from typing import Any

from starlette.testclient import TestClient

import labstream.api.app as app_module


def main() -> None:
    mode, tenant, experiment, token, count = sys.argv[1:6]
    headers = {"X-Lab-Tenant": tenant} if mode == "old" else {
        "Authorization": f"Bearer {token}"}
    kwargs: dict[str, Any] = {}
    if mode == "new":
        from labstream.api.settings import ApiSettings

        kwargs["settings"] = ApiSettings(rate_per_s=1e9, rate_burst=10**9)
    path = f"/experiments/{experiment}"
    with TestClient(app_module.create_app(**kwargs)) as client:
        for _ in range(20):
            assert client.get(path, headers=headers).status_code == 200
        times = []
        for _ in range(int(count)):
            start = time.perf_counter()
            answer = client.get(path, headers=headers)
            times.append((time.perf_counter() - start) * 1000)
            assert answer.status_code == 200
    print(mode, round(statistics.median(times), 3))


if __name__ == "__main__":
    main()
