"""What a running connector or worker tells a test, read the way an operator would:
its /metrics (the port it logs when LABSTREAM_METRICS_PORT=0) and its log lines."""

from __future__ import annotations

import re
import urllib.error
import urllib.request

from prometheus_client.parser import text_string_to_metric_families

# the line a process logs when it serves /metrics on a port the OS picked
METRICS_URL = re.compile(r"url=http://[0-9.]+:(\d+)/metrics")


def metrics_base(log_text: str) -> str | None:
    """http://127.0.0.1:<port> of the /metrics a process logged, or None (not yet)."""
    found = METRICS_URL.search(log_text)
    return f"http://127.0.0.1:{found.group(1)}" if found else None


def get(url: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(url, timeout=15) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as error:
        return error.code, error.read().decode()


def scrape(base: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    status, text = get(f"{base}/metrics")
    assert status == 200, text
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for family in text_string_to_metric_families(text) for s in family.samples}


def value(samples: dict, name: str, **labels: str) -> float | None:
    return samples.get((name, tuple(sorted(labels.items()))))


def rule_loaded(log_text: str, rule_id: str) -> bool:
    """Whether the worker logged `rule_id` as loaded into its reference data
    (streams.reference.ReferenceFollower._log_rule, key=value log format)."""
    return f'msg="trigger rule loaded" rule={rule_id} ' in log_text
