"""What a trace id is, in every form a user pastes or a peer sends, and its OTel form.

Accepted everywhere (`labstream trace`, `labstream explain`, the API, replay):
- 32 hex digits (an OpenTelemetry / W3C trace id);
- a W3C `traceparent` (`00-<32 hex>-<16 hex>-<2 hex>`), whose trace id is taken;
- a beeline UUID (`8-4-4-4-12` hex): the same id with the dashes dropped, which is
  how `tracing.beeline` maps beeline ids into OpenTelemetry.
Every form is normalised to 32 lower-case hex digits. The all-zero id is invalid (W3C).
"""

from __future__ import annotations

import hashlib
import re

_TRACE_ID = re.compile(r"[0-9a-f]{32}")
_SPAN_ID = re.compile(r"[0-9a-f]{16}")
_TRACEPARENT = re.compile(r"([0-9a-f]{2})-([0-9a-f]{32})-([0-9a-f]{16})-([0-9a-f]{2})")
_UUID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")
_HEX_DIGITS = frozenset("0123456789abcdef")
ZERO_TRACE_ID = "0" * 32
FORMS_HINT = "pass 32 hex digits, a traceparent (00-<trace>-<span>-01) or a beeline UUID"


def trace_id_of(text: str | None) -> str | None:
    """The 32-hex trace id in `text` (trace id, traceparent or beeline UUID); else None."""
    if not text:
        return None
    value = text.strip().lower()
    if match := _TRACEPARENT.fullmatch(value):
        trace_id = match.group(2)
    elif _TRACE_ID.fullmatch(value):
        trace_id = value
    elif _UUID.fullmatch(value):
        trace_id = value.replace("-", "")
    else:
        return None
    return None if trace_id == ZERO_TRACE_ID else trace_id


def is_trace_id(text: str) -> bool:
    """True for exactly 32 lower-case hex digits, not all zero (the stored form)."""
    return bool(_TRACE_ID.fullmatch(text)) and text != ZERO_TRACE_ID


def is_span_id(text: str) -> bool:
    """True for exactly 16 lower-case hex digits, not all zero."""
    return bool(_SPAN_ID.fullmatch(text)) and text != "0" * 16


def trace_id_of_traceparent(traceparent: str | None) -> str | None:
    """The trace id of a well-formed traceparent header value only; else None."""
    match = _TRACEPARENT.fullmatch((traceparent or "").strip().lower())
    if not match or match.group(2) == ZERO_TRACE_ID:
        return None
    return match.group(2)


def beeline_hex_id(raw: str, hex_digits: int) -> str:
    """A beeline trace/span id as `hex_digits` hex digits.

    UUIDs and hex ids keep their digits (dashes dropped, left-padded); any other
    string (beelines accept arbitrary ids) is hashed, so the mapping is stable.
    """
    cleaned = raw.replace("-", "").strip().lower()
    if cleaned and set(cleaned) <= _HEX_DIGITS and len(cleaned) <= hex_digits:
        padded = cleaned.rjust(hex_digits, "0")
        if int(padded, 16) != 0:
            return padded
    return hashlib.sha256(raw.encode()).hexdigest()[:hex_digits]
