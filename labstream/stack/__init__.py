"""The local stack: our own PostgreSQL (Debian packages) and Kafka (Maven Central jars).

`up()` is idempotent and returns only when a SQL query as the lab role and a Kafka
produce/consume round trip both succeed; `down()` stops exactly what it started.
"""

from labstream.stack.control import ServiceStatus, down, status, up

__all__ = ["ServiceStatus", "down", "status", "up"]
