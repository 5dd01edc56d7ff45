"""Parse PostgreSQL's text output of values (pgoutput sends text) into Python values.

These parsers assume the walsender session's output settings are PostgreSQL's
defaults: `DateStyle=ISO`, `IntervalStyle=postgres`, `bytea_output=hex`. The
connector pins them with the connection's `options`; see docs/events.md.

They are plain functions with no schema knowledge; `connectors.pgtypes` picks one
per column and wraps it into the Debezium representation.
"""

from __future__ import annotations

import re
from decimal import Decimal, InvalidOperation
from typing import Any

from connectors.exceptions import ConversionError

# --- dates and times ---------------------------------------------------------

US_PER_SECOND = 1_000_000
US_PER_DAY = 86_400 * US_PER_SECOND

# Debezium's values for +/-infinity (they mimic the PostgreSQL JDBC driver's).
TIMESTAMP_POSITIVE_INFINITY = 9_223_372_036_825_200_000
TIMESTAMP_NEGATIVE_INFINITY = -9_223_372_036_832_400_000


def days_from_civil(year: int, month: int, day: int) -> int:
    """Days since 1970-01-01 in the proleptic Gregorian calendar (any year, astronomical)."""
    year -= month <= 2
    era = year // 400  # Python's floor division already rounds toward -infinity
    year_of_era = year - era * 400
    day_of_year = (153 * (month + (-3 if month > 2 else 9)) + 2) // 5 + day - 1
    day_of_era = year_of_era * 365 + year_of_era // 4 - year_of_era // 100 + day_of_year
    return era * 146_097 + day_of_era - 719_468


def civil_from_days(days: int) -> tuple[int, int, int]:
    """Inverse of `days_from_civil`: (year, month, day), astronomical year numbering."""
    days += 719_468
    era = days // 146_097
    day_of_era = days - era * 146_097
    year_of_era = (
        day_of_era - day_of_era // 1460 + day_of_era // 36_524 - day_of_era // 146_096
    ) // 365
    day_of_year = day_of_era - (365 * year_of_era + year_of_era // 4 - year_of_era // 100)
    mp = (5 * day_of_year + 2) // 153
    day = day_of_year - (153 * mp + 2) // 5 + 1
    month = mp + (3 if mp < 10 else -9)
    return year_of_era + era * 400 + (month <= 2), month, day


# Debezium maps date 'infinity'/'-infinity' to the JDBC driver's sentinel dates.
DATE_POSITIVE_INFINITY = days_from_civil(-5_877_611, 6, 21)
DATE_NEGATIVE_INFINITY = days_from_civil(-5_877_611, 6, 22)


def _split_bc(text: str) -> tuple[str, bool]:
    if text.endswith(" BC"):
        return text[:-3], True
    return text, False


def parse_date(text: str) -> int:
    """`YYYY-MM-DD[ BC]` -> days since the Unix epoch."""
    if text == "infinity":
        return DATE_POSITIVE_INFINITY
    if text == "-infinity":
        return DATE_NEGATIVE_INFINITY
    body, bc = _split_bc(text)
    year_text, month_text, day_text = body.split("-")
    year = int(year_text)
    if bc:
        year = 1 - year  # 1 BC is astronomical year 0
    return days_from_civil(year, int(month_text), int(day_text))


def parse_time_us(text: str) -> int:
    """`HH:MM:SS[.ffffff]` -> microseconds past midnight (24:00:00 allowed)."""
    hours = int(text[0:2])
    minutes = int(text[3:5])
    seconds = int(text[6:8])
    micros = 0
    if len(text) > 8 and text[8] == ".":
        fraction = text[9:]
        micros = int(fraction.ljust(6, "0")[:6])
    return ((hours * 60 + minutes) * 60 + seconds) * US_PER_SECOND + micros


_OFFSET = re.compile(r"([+-])(\d{2})(?::?(\d{2}))?(?::?(\d{2}))?$")


def _split_offset(text: str) -> tuple[str, int]:
    """Split a trailing `+HH[:MM[:SS]]` offset; returns (rest, offset in seconds)."""
    match = _OFFSET.search(text)
    if match is None:
        raise ValueError(f"no UTC offset in {text!r}")
    sign = -1 if match.group(1) == "-" else 1
    seconds = int(match.group(2)) * 3600 + int(match.group(3) or 0) * 60 + int(match.group(4) or 0)
    return text[: match.start()], sign * seconds


def parse_timestamp_us(text: str) -> int:
    """`YYYY-MM-DD HH:MM:SS[.ffffff][ BC]` -> microseconds since the epoch (as if UTC)."""
    if text == "infinity":
        return TIMESTAMP_POSITIVE_INFINITY
    if text == "-infinity":
        return TIMESTAMP_NEGATIVE_INFINITY
    body, bc = _split_bc(text)
    date_text, _, time_text = body.partition(" ")
    days = parse_date(date_text + (" BC" if bc else ""))
    return days * US_PER_DAY + parse_time_us(time_text)


def parse_timestamptz_us(text: str) -> int:
    """`YYYY-MM-DD HH:MM:SS[.ffffff]+HH[:MM][ BC]` -> microseconds since the epoch, UTC."""
    body, bc = _split_bc(text)
    local, offset = _split_offset(body)
    return parse_timestamp_us(local + (" BC" if bc else "")) - offset * US_PER_SECOND


def format_fraction(micros: int, width: int | None) -> str:
    """`.ffffff` with exactly `width` digits; None: Java ISO style (no trailing zeros)."""
    if width is not None and width > 0:
        return "." + f"{micros:06d}"[: min(width, 6)].ljust(width, "0")
    if micros == 0:
        return ""
    return "." + f"{micros:06d}".rstrip("0")


def utc_text_fast(text: str, width: int | None) -> str | None:
    """The hot case `YYYY-MM-DD HH:MM:SS[.f]+00` (server in UTC): pure string surgery.

    Returns None when `text` is not in that shape; callers then take the general path.
    """
    if not text.endswith("+00") or len(text) < 22 or text[10] != " " or text[4] != "-":
        return None
    fraction = text[20:-3] if text[19] == "." else ""
    if width is not None and width > 0:
        digits = fraction[:width].ljust(width, "0")
        return f"{text[:10]}T{text[11:19]}.{digits}Z"
    fraction = fraction.rstrip("0")
    return f"{text[:10]}T{text[11:19]}{'.' + fraction if fraction else ''}Z"


def format_utc_timestamp(epoch_us: int, fraction_width: int | None) -> str:
    """ISO-8601 in UTC with `Z`, like Java's `ISO_OFFSET_DATE_TIME` (years > 9999 get `+`)."""
    days, day_us = divmod(epoch_us, US_PER_DAY)
    year, month, day = civil_from_days(days)
    seconds, micros = divmod(day_us, US_PER_SECOND)
    hours, rest = divmod(seconds, 3600)
    minutes, secs = divmod(rest, 60)
    if 0 <= year <= 9999:
        year_text = f"{year:04d}"
    elif year > 9999:
        year_text = f"+{year}"
    else:
        year_text = f"-{-year:04d}"
    return (
        f"{year_text}-{month:02d}-{day:02d}T{hours:02d}:{minutes:02d}:{secs:02d}"
        f"{format_fraction(micros, fraction_width)}Z"
    )


def format_utc_time(day_us: int, fraction_width: int | None) -> str:
    seconds, micros = divmod(day_us, US_PER_SECOND)
    hours, rest = divmod(seconds, 3600)
    minutes, secs = divmod(rest, 60)
    return f"{hours:02d}:{minutes:02d}:{secs:02d}{format_fraction(micros, fraction_width)}Z"


def parse_timetz_to_utc(text: str) -> int:
    """`HH:MM:SS[.ffffff]+HH[:MM]` -> microseconds past midnight in UTC (wrapped to one day)."""
    local, offset = _split_offset(text)
    return (parse_time_us(local) - offset * US_PER_SECOND) % US_PER_DAY


# --- intervals ---------------------------------------------------------------

# Debezium's MicroDuration: months are 365.25 / 12 days long.
DAYS_PER_MONTH_AVG = 365.25 / 12.0
_INTERVAL_UNITS = {
    "year": "years", "years": "years", "mon": "months", "mons": "months",
    "day": "days", "days": "days",
}


def parse_interval(text: str) -> tuple[int, int, int, int, int, float]:
    """IntervalStyle=postgres text -> (years, months, days, hours, minutes, seconds).

    Split the way the PostgreSQL JDBC driver's PGInterval does (Debezium computes from
    those parts): the sign of the clock part applies to hours, minutes and seconds.
    """
    years = months = days = hours = minutes = 0
    seconds = 0.0
    tokens = text.split()
    index = 0
    while index < len(tokens):
        token = tokens[index]
        if ":" in token:
            sign = -1 if token.startswith("-") else 1
            hours_text, minutes_text, seconds_text = token.lstrip("+-").split(":")
            whole, _, fraction = seconds_text.partition(".")
            micros = int(fraction.ljust(6, "0")[:6]) if fraction else 0
            hours, minutes = sign * int(hours_text), sign * int(minutes_text)
            seconds = sign * int(whole) + (sign * micros) / 1_000_000
            index += 1
            continue
        unit = _INTERVAL_UNITS.get(tokens[index + 1]) if index + 1 < len(tokens) else None
        if unit is None:
            raise ValueError(f"unexpected interval token {token!r} in {text!r}")
        amount = int(token)
        if unit == "years":
            years = amount
        elif unit == "months":
            months = amount
        else:
            days = amount
        index += 2
    return years, months, days, hours, minutes, seconds


def interval_micros(text: str) -> int:
    """Debezium's MicroDuration.durationMicros, in the same double arithmetic.

    Months are 365.25/12 days; the result is truncated toward zero like Java's (long) cast.
    """
    years, months, days, hours, minutes, seconds = parse_interval(text)
    number_of_days = (years * 12 + months) * DAYS_PER_MONTH_AVG + days
    number_of_seconds = ((number_of_days * 24 + hours) * 60 + minutes) * 60 + seconds
    return int(number_of_seconds * 1e6)


# --- numbers and bytes -------------------------------------------------------

NUMERIC_SPECIALS = {"NaN": "NAN", "Infinity": "POSITIVE_INFINITY", "-Infinity": "NEGATIVE_INFINITY"}


def parse_numeric(text: str) -> Decimal | None:
    """Numeric text -> Decimal; None for NaN/Infinity (Debezium's precise mode has no value)."""
    if text in NUMERIC_SPECIALS:
        return None
    try:
        return Decimal(text)
    except InvalidOperation as exc:
        raise ConversionError(f"numeric value {text!r} is not a number") from exc


def unscaled_int(value: Decimal, scale: int) -> int:
    """value * 10**scale as an exact integer (Decimal arithmetic would round at 28 digits)."""
    sign, digits, exponent = value.as_tuple()
    assert isinstance(exponent, int)
    magnitude = int("".join(map(str, digits)) or "0")
    shift = exponent + scale
    if shift >= 0:
        magnitude *= 10**shift
    else:  # more fraction digits than the scale: round half up, as Debezium's setScale would fail
        magnitude = (magnitude + 5 * 10 ** (-shift - 1)) // 10**-shift
    return -magnitude if sign else magnitude


def unscaled_bytes(value: Decimal, scale: int) -> bytes:
    """Connect Decimal encoding: big-endian two's complement of value * 10**scale."""
    unscaled = unscaled_int(value, scale)
    length = (unscaled + (unscaled < 0)).bit_length() // 8 + 1
    return unscaled.to_bytes(length, "big", signed=True)


def strip_trailing_zeros(value: Decimal) -> Decimal:
    """Like Java's stripTrailingZeros but never below scale 0, and exact for any size."""
    sign, digits, exponent = value.as_tuple()
    assert isinstance(exponent, int)
    digit_list = list(digits)
    while exponent < 0 and len(digit_list) > 1 and digit_list[-1] == 0:
        digit_list.pop()
        exponent += 1
    if exponent < 0 and digit_list == [0]:
        exponent = 0
    return Decimal((sign, tuple(digit_list), exponent))


def decimal_scale(value: Decimal) -> int:
    exponent = value.as_tuple().exponent
    return -exponent if isinstance(exponent, int) and exponent < 0 else 0


def parse_money(text: str) -> Decimal:
    """`$1,234.56`, `-$1,234.56` or `($1.00)` (lc_monetary dependent) -> Decimal."""
    negative = text.startswith("-") or text.startswith("(")
    digits = "".join(ch for ch in text if ch.isdigit() or ch == ".")
    value = Decimal(digits) if digits else Decimal(0)
    return -value if negative else value


_OCTAL = re.compile(rb"\\([0-7]{3})|\\\\")


def parse_bytea(text: str) -> bytes:
    r"""`\x0a0b` (bytea_output=hex) or the legacy escape format -> bytes."""
    if text.startswith("\\x"):
        return bytes.fromhex(text[2:])
    raw = text.encode("latin-1", "surrogateescape")
    return _OCTAL.sub(lambda m: bytes([int(m.group(1), 8)]) if m.group(1) else b"\\", raw)


def bits_to_bytes(text: str) -> bytes:
    """Bit string `1011` -> Debezium Bits bytes: little-endian, sized to the highest set bit."""
    value = int(text, 2) if text else 0
    length = (value.bit_length() + 7) // 8
    return value.to_bytes(length, "little")


# --- arrays ------------------------------------------------------------------


def parse_array(text: str, delimiter: str = ",") -> list[Any]:
    """PostgreSQL array literal -> nested lists of `str | None` (unquoted NULL is None).

    Handles quoting, backslash escapes, `NULL`, empty arrays, nested dimensions and the
    `[lo:hi]=` bounds decoration. Multi-dimensional arrays stay nested here.
    """
    if text.startswith("["):
        text = text[text.index("=") + 1 :]
    if not text.startswith("{"):
        raise ValueError(f"array literal must start with '{{': {text[:40]!r}")
    if '"' not in text and "\\" not in text and text.count("{") == 1:
        body = text[1:-1]
        if not body:
            return []
        return [None if item == "NULL" else item.strip() for item in body.split(delimiter)]
    if delimiter == "," and text.count("{") == 1 and text.endswith("}"):
        # one dimension with quoted elements: a regular expression instead of the
        # character loop (2-3x cheaper per array, bench/cdc_types.py text[])
        return [_unquote(quoted) if not plain else (None if plain.strip() == "NULL"
                                                     else plain.strip())
                for quoted, plain in _ARRAY_ITEM.findall(text, 1, len(text) - 1)]
    value, end = _parse_array_at(text, 0, delimiter)
    if text[end:].strip():
        raise ValueError(f"trailing characters after array literal: {text[end:][:40]!r}")
    return value


_ARRAY_ITEM = re.compile(r'"((?:[^"\\]|\\.)*)"|([^,"]+)')
_ESCAPED = re.compile(r"\\(.)", re.DOTALL)


def _unquote(quoted: str) -> str:
    return _ESCAPED.sub(r"\1", quoted) if "\\" in quoted else quoted


def _parse_array_at(text: str, pos: int, delimiter: str) -> tuple[list[Any], int]:
    items: list[Any] = []
    pos += 1  # skip '{'
    length = len(text)
    while pos < length:
        char = text[pos]
        if char == "}":
            return items, pos + 1
        if char == delimiter or char.isspace():
            pos += 1
        elif char == "{":
            nested, pos = _parse_array_at(text, pos, delimiter)
            items.append(nested)
        elif char == '"':
            chars: list[str] = []
            pos += 1
            while text[pos] != '"':
                if text[pos] == "\\":
                    pos += 1
                chars.append(text[pos])
                pos += 1
            items.append("".join(chars))
            pos += 1
        else:
            start = pos
            chars = []
            while text[pos] not in (delimiter, "}"):
                if text[pos] == "\\":
                    pos += 1
                chars.append(text[pos])
                pos += 1
            raw = "".join(chars).strip()
            items.append(None if raw == "NULL" and "\\" not in text[start:pos] else raw)
    raise ValueError("array literal is not closed with '}'")


def flatten(items: list[Any]) -> list[Any]:
    """Row-major flattening of a multi-dimensional array (Connect arrays are one-dimensional)."""
    if not any(isinstance(item, list) for item in items):
        return items
    flat: list[Any] = []
    for item in items:
        if isinstance(item, list):
            flat.extend(flatten(item))
        else:
            flat.append(item)
    return flat


# --- hstore ------------------------------------------------------------------

_HSTORE_PAIR = re.compile(
    r'\s*"((?:[^"\\]|\\.)*)"\s*=>\s*(?:"((?:[^"\\]|\\.)*)"|(NULL))\s*(?:,|$)'
)
_UNESCAPE = re.compile(r"\\(.)")


def parse_hstore(text: str) -> dict[str, str | None]:
    result: dict[str, str | None] = {}
    pos = 0
    while pos < len(text):
        match = _HSTORE_PAIR.match(text, pos)
        if match is None:
            raise ValueError(f"hstore text is malformed near {text[pos:pos + 40]!r}")
        key = _UNESCAPE.sub(r"\1", match.group(1))
        value = None if match.group(3) else _UNESCAPE.sub(r"\1", match.group(2))
        result[key] = value
        pos = match.end()
    return result
