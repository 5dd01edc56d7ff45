"""The connector's one error classifier: retry with backoff, or stop and say why.

`classify(exc)` looks at an exception and its causes and answers with a
`Verdict`: transient failures (PostgreSQL or Kafka restarting, a dropped
connection, a broker refusing for a while) keep the coordinator's backoff;
permanent ones (wrong password, missing database or role, malformed URL,
unknown host, a record Kafka will never take) end the connector after a few
attempts with one line that names the cause and the fix. Anything else (a
bug) is not ours to retry: `None`, and the coordinator lets it propagate.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from base.errors import LabstreamError, RetryableError, ServiceUnavailable

# librdkafka error names (KafkaError.name()) that no retry can fix
_PERMANENT_KAFKA = {
    "_RESOLVE": ("a Kafka bootstrap host name does not resolve",
                 "fix LABSTREAM_KAFKA_BOOTSTRAP_SERVERS (host:port of a reachable broker)"),
    "_AUTHENTICATION": ("Kafka refused the client's credentials",
                        "fix the Kafka SASL/TLS settings"),
    "SASL_AUTHENTICATION_FAILED": ("Kafka refused the client's credentials",
                                   "fix the Kafka SASL/TLS settings"),
    "TOPIC_AUTHORIZATION_FAILED": ("Kafka denied access to a topic",
                                   "grant the connector's principal WRITE/CREATE on its topics"),
    "CLUSTER_AUTHORIZATION_FAILED": ("Kafka denied a cluster operation (topic creation)",
                                     "grant the connector's principal CREATE on the cluster"),
    "MSG_SIZE_TOO_LARGE": ("Kafka refused a record as too large",
                           "raise LABSTREAM_CDC_MAX_RECORD_BYTES together with the topic's "
                           "max.message.bytes, or keep the default oversized-record mode "
                           "'reference'"),
}

# (pattern over the message of any exception in the chain, cause, fix)
_PERMANENT_TEXT: tuple[tuple[re.Pattern[str], str, str], ...] = tuple(
    (re.compile(pattern, re.IGNORECASE), cause, fix) for pattern, cause, fix in (
        (r"password authentication failed for user \"?([^\"\s]*)",
         "PostgreSQL refused the password of user {0}",
         "correct the user/password in LABSTREAM_DATABASE_URL"),
        (r"role \"([^\"]*)\" does not exist",
         "PostgreSQL has no role {0}",
         "correct the user in LABSTREAM_DATABASE_URL or create the role"),
        (r"database \"([^\"]*)\" does not exist",
         "PostgreSQL has no database {0}",
         "correct the database name in LABSTREAM_DATABASE_URL or create it "
         "(`labstream db migrate` on a new database)"),
        (r"no pg_hba\.conf entry",
         "PostgreSQL's pg_hba.conf refuses this client",
         "add a pg_hba.conf line for this host/user (replication needs its own line)"),
        (r"could not translate host name \"?([^\"\s]*)|Name or service not known|"
         r"nodename nor servname",
         "the database host {0} does not resolve",
         "correct the host in LABSTREAM_DATABASE_URL"),
        (r"invalid dsn|missing \"=\" after|invalid connection option|invalid URI|"
         r"invalid integer value|invalid port|Port could not be cast",
         "LABSTREAM_DATABASE_URL is not a valid PostgreSQL URL",
         "use postgresql://user:password@host:port/database"),
        (r"must be superuser or replication role|permission denied to (start|create) "
         r"(WAL sender|replication slot)|must have the REPLICATION",
         "the database user may not use logical replication",
         "ALTER ROLE <user> REPLICATION (or use a user that has it)"),
    )
)

# messages that would match a pattern above but mean "starting up, try again"
_TRANSIENT_TEXT = re.compile(
    r"the database system is (starting up|shutting down|in recovery mode)|"
    r"terminating connection due to administrator command|server closed the connection",
    re.IGNORECASE,
)


@dataclass(frozen=True)
class Verdict:
    transient: bool
    cause: str
    fix: str | None = None

    def line(self) -> str:
        """The one line a user reads."""
        return self.cause if not self.fix else f"{self.cause} (fix: {self.fix})"


def _chain(exc: BaseException) -> list[BaseException]:
    seen: list[BaseException] = []
    current: BaseException | None = exc
    while current is not None and current not in seen and len(seen) < 8:
        seen.append(current)
        current = current.__cause__ or current.__context__
    return seen


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def _kafka_name(exc: BaseException) -> str | None:
    """The librdkafka error name of a KafkaException (or of our errors that carry one)."""
    name = getattr(exc, "kafka_error_name", None)
    if isinstance(name, str):
        return name
    args = getattr(exc, "args", ())
    if args and hasattr(args[0], "name") and hasattr(args[0], "code"):
        try:
            return str(args[0].name())
        except Exception:
            return None
    return None


def classify(exc: BaseException) -> Verdict | None:
    """Transient, permanent, or None (not an error the connector knows how to handle)."""
    chain = _chain(exc)
    for item in chain:
        name = _kafka_name(item)
        if name in _PERMANENT_KAFKA:
            cause, fix = _PERMANENT_KAFKA[name]
            return Verdict(False, f"{cause}: {_first_line(item)}", fix)
    texts = " | ".join(_first_line(item) for item in chain)
    if not _TRANSIENT_TEXT.search(texts):
        for pattern, cause, fix in _PERMANENT_TEXT:
            match = pattern.search(texts)
            if match:
                groups = [g for g in match.groups() if g] or [""]
                return Verdict(False, cause.format(groups[0]).replace("  ", " "), fix)
    if isinstance(exc, LabstreamError) and not isinstance(
            exc, (RetryableError, ServiceUnavailable)):
        return Verdict(False, exc.message, exc.hint)
    if _is_transient_type(exc):
        return Verdict(True, _first_line(exc))
    return None


def _is_transient_type(exc: BaseException) -> bool:
    """Connection-level failures of our clients: PostgreSQL or Kafka went away."""
    if isinstance(exc, (RetryableError, ServiceUnavailable)):
        return True
    import psycopg
    import psycopg2

    if isinstance(exc, (psycopg.OperationalError, psycopg2.OperationalError,
                        psycopg2.InterfaceError)):
        return True
    from confluent_kafka import KafkaException

    return isinstance(exc, KafkaException)
