"""Schema compatibility as Confluent Schema Registry decides it.

Apache Avro's own `avro.compatibility` (a port of the Java `SchemaCompatibility`
that Confluent's registry calls) says whether a reader schema can read data written
with a writer schema; this module maps the registry's levels onto it:

- BACKWARD: the new schema reads data written with the latest version
  (consumers upgrade first); `_TRANSITIVE`: with every version.
- FORWARD: the latest version reads data written with the new schema; FULL: both.
- NONE: anything goes.
"""

from __future__ import annotations

import json
from collections.abc import Sequence

import avro.errors
import avro.schema
from avro.compatibility import ReaderWriterCompatibilityChecker, SchemaCompatibilityType

from connectors.exceptions import InvalidSchema

LEVELS = (
    "NONE",
    "BACKWARD",
    "BACKWARD_TRANSITIVE",
    "FORWARD",
    "FORWARD_TRANSITIVE",
    "FULL",
    "FULL_TRANSITIVE",
)
DEFAULT_LEVEL = "BACKWARD"


def parse(schema_str: str) -> avro.schema.Schema:
    """The parsed Avro schema, or `InvalidSchema` naming what is wrong."""
    try:
        return avro.schema.parse(schema_str)
    except (avro.errors.AvroException, json.JSONDecodeError, TypeError, ValueError) as exc:
        raise InvalidSchema(
            f"invalid Avro schema: {exc}", hint="send the schema as Avro JSON text"
        ) from exc


def check_level(level: str) -> str:
    upper = level.strip().upper()
    if upper not in LEVELS:
        raise ValueError(f"compatibility level {level!r} is not one of {', '.join(LEVELS)}")
    return upper


def _problems(reader: avro.schema.Schema, writer: avro.schema.Schema, role: str) -> list[str]:
    result = ReaderWriterCompatibilityChecker().get_compatibility(reader, writer)
    if result.compatibility is SchemaCompatibilityType.compatible:
        return []
    kinds = ", ".join(sorted(str(k.value) for k in result.incompatibilities)) or "incompatible"
    names = ", ".join(sorted(str(m) for m in result.messages))
    locations = ", ".join(sorted(str(m) for m in result.locations))
    return [f"{role}: {kinds} ({names}) at {locations}"]


def incompatibilities(level: str, new: str, existing: Sequence[str]) -> list[str]:
    """Why `new` breaks `level` against `existing` (oldest first); empty: compatible."""
    level = check_level(level)
    if level == "NONE" or not existing:
        return []
    candidate = parse(new)
    against = existing if level.endswith("_TRANSITIVE") else existing[-1:]
    problems: list[str] = []
    for text in reversed(against):  # newest first: the likeliest break is reported first
        old = parse(text)
        if level.startswith(("BACKWARD", "FULL")):
            problems += _problems(candidate, old, "the new schema cannot read data written "
                                  "with an earlier version")
        if level.startswith(("FORWARD", "FULL")):
            problems += _problems(old, candidate, "an earlier version cannot read data written "
                                  "with the new schema")
    return problems
