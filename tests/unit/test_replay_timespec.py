from datetime import UTC, datetime, timedelta, timezone

import pytest

from replay.exceptions import SelectionError
from replay.timespec import format_millis, parse_time, to_millis

NOW = datetime(2026, 11, 25, 14, 0, 0, tzinfo=UTC)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("now", NOW),
        ("-2h", NOW - timedelta(hours=2)),
        ("-30m", NOW - timedelta(minutes=30)),
        ("-1d", NOW - timedelta(days=1)),
        ("-90s", NOW - timedelta(seconds=90)),
        ("-1.5h", NOW - timedelta(minutes=90)),
        ("- 2 H", NOW - timedelta(hours=2)),
        ("2026-11-25T13:00:00Z", datetime(2026, 11, 25, 13, tzinfo=UTC)),
        ("2026-11-25 13:00", datetime(2026, 11, 25, 13, tzinfo=UTC)),  # naive = UTC
        ("2026-11-25T15:00:00+01:00", datetime(2026, 11, 25, 14, tzinfo=UTC)),
        ("2026-11-25", datetime(2026, 11, 25, tzinfo=UTC)),
    ],
)
def test_parses_iso_and_relative_times(text: str, expected: datetime) -> None:
    parsed = parse_time(text, now=NOW)
    assert parsed.tzinfo is not None
    assert parsed == expected


def test_offset_is_kept_not_dropped() -> None:
    parsed = parse_time("2026-11-25T15:00:00+01:00", now=NOW)
    assert parsed.utcoffset() == timezone(timedelta(hours=1)).utcoffset(None)
    assert to_millis(parsed) == to_millis(NOW)


@pytest.mark.parametrize("text", ["", "yesterday", "-2x", "+2h", "-h", "2026-13-01", "12:00:99"])
def test_bad_times_name_the_option(text: str) -> None:
    with pytest.raises(SelectionError) as info:
        parse_time(text, option="--to", now=NOW)
    assert "--to" in info.value.message
    assert info.value.hint


def test_format_millis_is_utc_with_millis() -> None:
    assert format_millis(to_millis(NOW) + 7) == "2026-11-25T14:00:00.007Z"
    assert format_millis(None) == "-"
