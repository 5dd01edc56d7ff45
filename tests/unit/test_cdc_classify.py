"""The connector's one error classifier and librdkafka's rate-limited log."""

from __future__ import annotations

import logging

import psycopg
import pytest
from confluent_kafka import KafkaError, KafkaException

from base.errors import ServiceUnavailable
from connectors.source.classify import classify
from connectors.source.exceptions import CdcConfigError, DeliveryFailed, SourceDisconnected
from connectors.source.kafkalog import RateLimitedKafkaLog


def _wrapped(text: str) -> ServiceUnavailable:
    """What base.db.connect raises: ServiceUnavailable caused by psycopg's error."""
    try:
        try:
            raise psycopg.OperationalError(text)
        except psycopg.OperationalError as exc:
            raise ServiceUnavailable(f"cannot connect: {text}") from exc
    except ServiceUnavailable as outer:
        return outer


@pytest.mark.parametrize(("text", "cause"), [
    ('connection failed: FATAL:  password authentication failed for user "lab"',
     "refused the password of user lab"),
    ('FATAL:  database "nosuch" does not exist', "no database nosuch"),
    ('FATAL:  role "bob" does not exist', "no role bob"),
    ('could not translate host name "db.invalid" to address', "host db.invalid does not resolve"),
    ('FATAL:  no pg_hba.conf entry for replication connection', "pg_hba.conf"),
])
def test_connection_errors_that_no_retry_fixes_are_permanent(text, cause):
    verdict = classify(_wrapped(text))
    assert verdict is not None and not verdict.transient
    assert cause in verdict.cause and verdict.fix


def test_malformed_url_is_permanent():
    verdict = classify(psycopg.ProgrammingError(
        'invalid dsn: missing "=" after "not" in connection info string'))
    assert verdict is not None and not verdict.transient
    assert "not a valid PostgreSQL URL" in verdict.line() and "fix:" in verdict.line()


@pytest.mark.parametrize("exc", [
    _wrapped("connection to server at 127.0.0.1, port 5432 failed: Connection refused"),
    _wrapped("FATAL:  the database system is starting up"),
    psycopg.OperationalError("server closed the connection unexpectedly"),
    KafkaException(KafkaError(KafkaError._TRANSPORT)),
    SourceDisconnected("Kafka did not answer", kafka_error_name="_TRANSPORT"),
    DeliveryFailed("not acknowledged", kafka_error_name="_MSG_TIMED_OUT"),
])
def test_restarts_and_dropped_connections_are_transient(exc):
    verdict = classify(exc)
    assert verdict is not None and verdict.transient


@pytest.mark.parametrize("name", ["_RESOLVE", "MSG_SIZE_TOO_LARGE", "SASL_AUTHENTICATION_FAILED",
                                  "TOPIC_AUTHORIZATION_FAILED"])
def test_kafka_errors_no_retry_fixes_are_permanent(name):
    verdict = classify(DeliveryFailed("refused", kafka_error_name=name))
    assert verdict is not None and not verdict.transient and verdict.fix


def test_our_config_errors_are_permanent_and_bugs_are_not_classified():
    verdict = classify(CdcConfigError("bad include list", hint="escape dots"))
    assert verdict is not None and not verdict.transient and verdict.fix == "escape dots"
    assert classify(KeyError("a bug")) is None


def test_librdkafka_log_passes_one_line_per_kind_per_window(caplog):
    caplog.set_level(logging.DEBUG, logger="librdkafka")
    kafka_log = RateLimitedKafkaLog(window_s=60)
    for _ in range(500):
        kafka_log.log(logging.ERROR, "%s [%s] %s", "FAIL", "rdkafka#producer-1", "Connect refused")
    kafka_log.log(logging.WARNING, "%s [%s] %s", "CONFWARN", "rdkafka#producer-1", "a warning")
    messages = [r.getMessage() for r in caplog.records]
    assert messages == ["FAIL [rdkafka#producer-1] Connect refused",
                        "CONFWARN [rdkafka#producer-1] a warning"]
    assert kafka_log.held_back == 499
