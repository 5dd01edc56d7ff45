"""Parse the times a user types: ISO-8601 or relative (`-2h`, `-30m`, `-1d`, `now`).

Every result is timezone-aware (UTC when the input has no offset): Kafka record
timestamps are milliseconds since the epoch, so naive local times would silently
shift a window by the machine's UTC offset. Errors name the option that was wrong.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta

from replay.exceptions import SelectionError

_RELATIVE = re.compile(r"^\s*-\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h|d|w)\s*$", re.IGNORECASE)
_UNIT_SECONDS = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}

EXAMPLES = "e.g. `-2h`, `-30m`, `-1d`, `now`, `2026-11-25T14:00:00Z` or `2026-11-25 14:00+01:00`"


def parse_time(text: str, *, option: str = "--from", now: datetime | None = None) -> datetime:
    """`text` as an aware datetime; `now` is injectable so tests are deterministic."""
    reference = now or datetime.now(UTC)
    raw = text.strip()
    if not raw:
        raise SelectionError(f"{option} is empty", hint=f"give a time, {EXAMPLES}")
    if raw.lower() == "now":
        return reference
    relative = _RELATIVE.match(raw)
    if relative:
        amount, unit = float(relative.group(1)), relative.group(2).lower()
        return reference - timedelta(seconds=amount * _UNIT_SECONDS[unit])
    if raw[0] in "+-":  # ISO dates never start with a sign: this was meant as relative
        raise SelectionError(
            f"{option} {text!r} is not a relative time",
            hint=f"use a number and a unit (ms, s, m, h, d, w) after '-', {EXAMPLES}",
        )
    try:
        parsed = datetime.fromisoformat(raw.replace("z", "Z"))
    except ValueError:
        raise SelectionError(
            f"{option} {text!r} is neither ISO-8601 nor a relative time", hint=EXAMPLES
        ) from None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def to_millis(moment: datetime) -> int:
    """Milliseconds since the epoch, the unit of Kafka record timestamps."""
    return int(moment.timestamp() * 1000)


def from_millis(millis: int) -> datetime:
    return datetime.fromtimestamp(millis / 1000, tz=UTC)


def format_millis(millis: int | None) -> str:
    """`2026-11-25T14:00:00.123Z` for tables and error messages."""
    if millis is None or millis < 0:
        return "-"
    return from_millis(millis).strftime("%Y-%m-%dT%H:%M:%S.") + f"{millis % 1000:03d}Z"
