"""One Kafka connection config, rendered for confluent-kafka, kafka-python, aiokafka and Faust."""

from __future__ import annotations

import pytest

from base.errors import ConfigError
from base.kafka import KafkaConnection, _cached, kafka_connection


def test_plaintext_by_default_with_one_bootstrap_list_for_every_library() -> None:
    conn = KafkaConnection(bootstrap_servers="a:1, b:2")
    assert conn.librdkafka("cdc") == {"bootstrap.servers": "a:1,b:2",
                                      "client.id": "labstream-cdc",
                                      "security.protocol": "plaintext"}
    assert conn.kafka_python("explain")["bootstrap_servers"] == ["a:1", "b:2"]
    assert conn.aiokafka()["bootstrap_servers"] == "a:1,b:2"
    faust = conn.faust()
    assert faust["broker"] == "kafka://a:1;kafka://b:2" and faust["broker_credentials"] is None


def test_sasl_scram_over_tls_reaches_every_client_without_logging_the_password(
        tmp_path: object) -> None:
    conn = KafkaConnection(bootstrap_servers="k:9093", security_protocol="SASL_SSL",
                           sasl_mechanism="SCRAM-SHA-512", sasl_username="lab",
                           sasl_password="s3cret")  # type: ignore[arg-type]
    rd = conn.librdkafka()
    assert (rd["security.protocol"], rd["sasl.mechanism"], rd["sasl.username"],
            rd["sasl.password"]) == ("sasl_ssl", "SCRAM-SHA-512", "lab", "s3cret")
    py = conn.kafka_python()
    assert py["sasl_mechanism"] == "SCRAM-SHA-512" and py["sasl_plain_password"] == "s3cret"
    assert py["ssl_context"] is not None
    creds = conn.faust()["broker_credentials"]
    assert creds.username == "lab" and creds.ssl_context is not None
    assert "s3cret" not in conn.describe() and "s3cret" not in repr(conn)


@pytest.mark.parametrize(("settings", "names"), [
    ({"security_protocol": "SASL_SSL"}, "SASL_MECHANISM"),
    ({"security_protocol": "SASL_PLAINTEXT", "sasl_mechanism": "PLAIN"}, "SASL_USERNAME"),
    ({"sasl_username": "lab"}, "SECURITY_PROTOCOL is PLAINTEXT"),
    ({"security_protocol": "SSL", "ssl_certificate_location": "/c.pem"}, "SSL_KEY_LOCATION"),
    ({"bootstrap_servers": " , "}, "BOOTSTRAP_SERVERS is empty"),
])
def test_inconsistent_settings_name_the_variable_to_fix(settings: dict[str, str],
                                                          names: str) -> None:
    with pytest.raises(ValueError, match=names):
        KafkaConnection(**settings)  # type: ignore[arg-type]


def test_the_process_config_is_read_from_the_environment_once(
        monkeypatch: pytest.MonkeyPatch) -> None:
    _cached.cache_clear()
    monkeypatch.setenv("LABSTREAM_KAFKA_SECURITY_PROTOCOL", "SASL_SSL")
    try:
        with pytest.raises(ConfigError, match="LABSTREAM_KAFKA_SASL_MECHANISM"):
            kafka_connection()
    finally:
        _cached.cache_clear()
    monkeypatch.delenv("LABSTREAM_KAFKA_SECURITY_PROTOCOL")
    monkeypatch.setenv("LABSTREAM_KAFKA_BOOTSTRAP_SERVERS", "x:1")
    try:
        assert kafka_connection().servers == ["x:1"]
        assert kafka_connection("y:2").servers == ["y:2"]
    finally:
        _cached.cache_clear()


def test_unreadable_tls_files_are_a_config_error(tmp_path: object) -> None:
    conn = KafkaConnection(security_protocol="SSL",
                           ssl_ca_location="/nonexistent/ca.pem")  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match="SSL_CA_LOCATION"):
        conn.ssl_context()
