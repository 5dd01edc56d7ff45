"""Dead letters: a record that cannot be decoded or processed, kept byte for byte.

The dead-letter record on `<app_id>.dlq` has the original key and value bytes
unchanged, the original headers, and four more headers:
`labstream-dlq-error` (exception class and message), `labstream-dlq-topic`,
`labstream-dlq-partition`, `labstream-dlq-offset` (where it was read). The agent
then goes on with the next record.
"""

from __future__ import annotations

from dataclasses import dataclass

from base.contracts import headers
from streams.records import Headers, SourceCoordinates

ERROR_HEADER = headers.DLQ_ERROR
TOPIC_HEADER = headers.DLQ_TOPIC
PARTITION_HEADER = headers.DLQ_PARTITION
OFFSET_HEADER = headers.DLQ_OFFSET
DLQ_HEADERS = (ERROR_HEADER, TOPIC_HEADER, PARTITION_HEADER, OFFSET_HEADER)
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


def read_dead_letter(headers: Headers) -> tuple[str, SourceCoordinates]:
    """(error, coordinates) of a DLQ record, from its headers."""
    found = {name: raw.decode("utf-8", "replace") for name, raw in headers if name in DLQ_HEADERS}
    coordinates = SourceCoordinates(found[TOPIC_HEADER], int(found[PARTITION_HEADER]),
                                    int(found[OFFSET_HEADER]))
    return found[ERROR_HEADER], coordinates
