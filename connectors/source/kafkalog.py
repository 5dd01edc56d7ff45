"""librdkafka's log, through the project's logger, at most one line per kind per window.

Without a `logger`, librdkafka prints `%3|1700000000.123|FAIL|rdkafka#producer-1| ...`
to stderr for every failed connection attempt of every client (several per second
while a broker is down), burying the connector's own one useful line. Every Kafka
client the connector builds gets this object as its `logger` config: confluent-kafka
then calls `log(level, fmt, facility, client, message)` from `poll()`, and we pass one
line per (level, facility) per `window_s`, saying how many were held back.
"""

from __future__ import annotations

import logging
import time


class RateLimitedKafkaLog:
    """Duck-typed `logging.Logger` for confluent-kafka's `logger` setting."""

    def __init__(self, name: str = "librdkafka", window_s: float = 30.0) -> None:
        self._log = logging.getLogger(name)
        self.window_s = window_s
        self._last: dict[tuple[int, str], float] = {}
        self._held: dict[tuple[int, str], int] = {}

    def log(self, level: int, fmt: str, *args: object) -> None:
        facility = str(args[0]) if args else ""
        kind = (level, facility)
        now = time.monotonic()
        last = self._last.get(kind)
        if last is not None and now - last < self.window_s:
            self._held[kind] = self._held.get(kind, 0) + 1
            return
        self._last[kind] = now
        held = self._held.pop(kind, 0)
        message = fmt % args if args else fmt
        if held:
            message += f" ({held} similar lines in the last {self.window_s:.0f}s not shown)"
        # librdkafka's errors are reported again, classified, by the connector itself
        self._log.log(min(level, logging.WARNING), "%s", message)

    # confluent-kafka only calls log(); these keep the object usable as a Logger elsewhere
    def isEnabledFor(self, level: int) -> bool:
        return self._log.isEnabledFor(level)

    @property
    def held_back(self) -> int:
        return sum(self._held.values())
