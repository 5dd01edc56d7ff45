"""Dead letters: a record that cannot be decoded or processed, kept byte for byte.

The dead-letter record on `<app_id>.dlq` has the original key and value bytes
unchanged, the original headers, and four more headers:
`labstream-dlq-error` (exception class and message), `labstream-dlq-topic`,
`labstream-dlq-partition`, `labstream-dlq-offset` (where it was read). The agent
then goes on with the next record. An output (or a dead letter) too large for
Kafka is replaced by a reference: no value, the same headers plus
`labstream-dlq-reference` (target topic and size).
"""

from __future__ import annotations

from dataclasses import dataclass

from base.contracts import headers
from streams.records import Headers, SourceCoordinates

ERROR_HEADER = headers.DLQ_ERROR
TOPIC_HEADER = headers.DLQ_TOPIC
PARTITION_HEADER = headers.DLQ_PARTITION
OFFSET_HEADER = headers.DLQ_OFFSET
REFERENCE_HEADER = headers.DLQ_REFERENCE  # the output that was too large: topic, bytes
DLQ_HEADERS = (ERROR_HEADER, TOPIC_HEADER, PARTITION_HEADER, OFFSET_HEADER, REFERENCE_HEADER)
MAX_ERROR_BYTES = 4096


@dataclass(frozen=True, slots=True)
class DeadLetter:
    key: bytes | None
    value: bytes | None
    headers: Headers


def describe(error: BaseException) -> str:
    return f"{type(error).__name__}: {error}"


def dead_letter(
    error: BaseException | str,
    *,
    key: bytes | None,
    value: bytes | None,
    headers: Headers,
    coordinates: SourceCoordinates,
) -> DeadLetter:
    """The DLQ record for one failed record: original bytes, original headers + ours first."""
    text = error if isinstance(error, str) else describe(error)
    ours = (
        (ERROR_HEADER, text.encode("utf-8", "replace")[:MAX_ERROR_BYTES]),
        (TOPIC_HEADER, coordinates.topic.encode()),
        (PARTITION_HEADER, str(coordinates.partition).encode()),
        (OFFSET_HEADER, str(coordinates.offset).encode()),
    )
    # a record dead-lettered twice (replayed from the DLQ) keeps only the newest of ours
    original = tuple((name, raw) for name, raw in headers if name not in DLQ_HEADERS)
    return DeadLetter(key, value, ours + original)


def record_size(key: bytes | None, value: bytes | None, headers: Headers) -> int:
    """Bytes a record carries (key, value, header names and values)."""
    return (len(key or b"") + len(value or b"")
            + sum(len(name) + len(raw or b"") for name, raw in headers))


def too_large(*, topic: str, size: int, limit: int, key: bytes | None,
              source: SourceCoordinates | None) -> DeadLetter:
    """A reference to an output too large for Kafka: where it came from, not its bytes.

    The source record (topic/partition/offset headers) is still in its topic; the
    output can be made again from it (`labstream replay`) once the limit is raised.
    """
    text = f"output for {topic} is {size} bytes, over the limit of {limit} bytes"
    coordinates = source or SourceCoordinates("", -1, -1)
    ours = (
        (ERROR_HEADER, text.encode()),
        (TOPIC_HEADER, coordinates.topic.encode()),
        (PARTITION_HEADER, str(coordinates.partition).encode()),
        (OFFSET_HEADER, str(coordinates.offset).encode()),
        (REFERENCE_HEADER, f"{topic} {size}".encode()),
    )
    small_key = key if key is not None and len(key) <= MAX_ERROR_BYTES else None
    return DeadLetter(small_key, None, ours)


def read_dead_letter(headers: Headers) -> tuple[str, SourceCoordinates]:
    """(error, coordinates) of a DLQ record, from its headers."""
    found = {name: raw.decode("utf-8", "replace") for name, raw in headers if name in DLQ_HEADERS}
    coordinates = SourceCoordinates(found[TOPIC_HEADER], int(found[PARTITION_HEADER]),
                                    int(found[OFFSET_HEADER]))
    return found[ERROR_HEADER], coordinates
