"""A Faust codec for labstream's topics (needs the `faust` extra: faust-streaming).

    topic = app.topic("lab.public.experiments",
                      value_serializer=LabstreamCodec(registry_url="http://localhost:8081"))

Values arrive as `ChangeEvent` / `TransactionMarker` (or a dict, or None for a
tombstone); keys with `key_serializer=LabstreamCodec(...)` as dicts. Iterate
`stream.events()` to get `event.headers`, then `otel_context(event.headers)`.
Read-only: labstream's topics are written by the connector.
"""

from __future__ import annotations

from typing import Any

from faust.serializers.codecs import Codec

from labstream_client.decoding import Decoder


class LabstreamCodec(Codec):
    def __init__(self, registry_url: str | None = None, **kwargs: Any) -> None:
        super().__init__(registry_url=registry_url, **kwargs)
        self.decoder = Decoder(registry_url)

    def _loads(self, s: bytes) -> Any:
        return self.decoder.value(s)

    def _dumps(self, s: Any) -> bytes:
        raise NotImplementedError(
            "LabstreamCodec only reads: labstream's change topics are written by its "
            "connector; use another serializer for your own output topics")
