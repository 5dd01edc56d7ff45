"""One Kafka connection config, rendered for every client library labstream uses.

Every process reads the same settings (prefix `LABSTREAM_KAFKA_`): where the cluster
is, how to encrypt (TLS) and how to authenticate (SASL PLAIN or SCRAM), and a client
id. `kafka_connection()` reads them once; each library's constructor gets its own
rendering from one of the methods below, so a production cluster with SASL_SSL is
one set of environment variables for the connector, the worker, replay and explain.

The libraries and their one role each (docs/ARCHITECTURE.md says why):
- confluent-kafka (librdkafka): every producer and admin client; the fast paths.
- faust-streaming (aiokafka inside): the worker's consumer group and agents;
  aiokafka directly only for the worker's own async reference-table follower.
- kafka-python: short synchronous scans (explain, replay selection, demo, stack checks).
"""

from __future__ import annotations

import ssl
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any, Literal

from pydantic import Field, SecretStr, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from base.errors import ConfigError

SecurityProtocol = Literal["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"]
SaslMechanism = Literal["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"]
ENV = "LABSTREAM_KAFKA_"


class KafkaConnection(BaseSettings):
    """Where the Kafka cluster is and how to connect to it (prefix LABSTREAM_KAFKA_)."""

    model_config = SettingsConfigDict(env_prefix=ENV, frozen=True, extra="ignore")

    bootstrap_servers: str = Field(
        default="127.0.0.1:59092",
        description="host:port list, comma separated (LABSTREAM_KAFKA_BOOTSTRAP_SERVERS).",
    )
    security_protocol: SecurityProtocol = Field(
        default="PLAINTEXT",
        description="PLAINTEXT, SSL, SASL_PLAINTEXT or SASL_SSL "
                    "(LABSTREAM_KAFKA_SECURITY_PROTOCOL).",
    )
    sasl_mechanism: SaslMechanism | None = Field(
        default=None,
        description="PLAIN, SCRAM-SHA-256 or SCRAM-SHA-512; required with SASL_* "
                    "(LABSTREAM_KAFKA_SASL_MECHANISM).",
    )
    sasl_username: str | None = Field(default=None, description="LABSTREAM_KAFKA_SASL_USERNAME")
    sasl_password: SecretStr | None = Field(
        default=None, description="LABSTREAM_KAFKA_SASL_PASSWORD (never logged)."
    )
    ssl_ca_location: Path | None = Field(
        default=None,
        description="PEM file of the CA that signed the brokers' certificates; the system "
                    "store when unset (LABSTREAM_KAFKA_SSL_CA_LOCATION).",
    )
    ssl_certificate_location: Path | None = Field(
        default=None, description="client certificate (PEM) for mutual TLS "
                                  "(LABSTREAM_KAFKA_SSL_CERTIFICATE_LOCATION).",
    )
    ssl_key_location: Path | None = Field(
        default=None, description="client key (PEM) for mutual TLS "
                                  "(LABSTREAM_KAFKA_SSL_KEY_LOCATION).",
    )
    ssl_key_password: SecretStr | None = Field(
        default=None, description="LABSTREAM_KAFKA_SSL_KEY_PASSWORD"
    )
    client_id: str = Field(
        default="labstream", description="client.id prefix seen in broker logs and quotas "
                                         "(LABSTREAM_KAFKA_CLIENT_ID)."
    )

    @model_validator(mode="after")
    def _consistent(self) -> KafkaConnection:
        problems = self.problems()
        if problems:
            raise ValueError("; ".join(problems))
        return self

    def problems(self) -> list[str]:
        found: list[str] = []
        if not any(part.strip() for part in self.bootstrap_servers.split(",")):
            found.append(f"{ENV}BOOTSTRAP_SERVERS is empty: set it to host:port[,host:port]")
        if self.uses_sasl:
            if self.sasl_mechanism is None:
                found.append(f"{ENV}SECURITY_PROTOCOL={self.security_protocol} needs "
                             f"{ENV}SASL_MECHANISM (PLAIN, SCRAM-SHA-256 or SCRAM-SHA-512)")
            if not self.sasl_username or self.sasl_password is None:
                found.append(f"{ENV}SECURITY_PROTOCOL={self.security_protocol} needs "
                             f"{ENV}SASL_USERNAME and {ENV}SASL_PASSWORD")
        elif self.sasl_mechanism or self.sasl_username:
            found.append(f"SASL settings are given but {ENV}SECURITY_PROTOCOL is "
                         f"{self.security_protocol}: use SASL_SSL (or SASL_PLAINTEXT)")
        if (self.ssl_certificate_location is None) != (self.ssl_key_location is None):
            found.append(f"mutual TLS needs both {ENV}SSL_CERTIFICATE_LOCATION and "
                         f"{ENV}SSL_KEY_LOCATION")
        return found

    # -- what the settings mean --------------------------------------------------------

    @property
    def uses_tls(self) -> bool:
        return self.security_protocol in ("SSL", "SASL_SSL")

    @property
    def uses_sasl(self) -> bool:
        return self.security_protocol in ("SASL_PLAINTEXT", "SASL_SSL")

    @property
    def servers(self) -> list[str]:
        return [part.strip() for part in self.bootstrap_servers.split(",") if part.strip()]

    def with_bootstrap(self, bootstrap: str | None) -> KafkaConnection:
        """The same connection with other bootstrap servers (a CLI flag); self when None."""
        if not bootstrap or bootstrap == self.bootstrap_servers:
            return self
        return self.model_copy(update={"bootstrap_servers": bootstrap})

    def _client_id(self, role: str | None) -> str:
        return f"{self.client_id}-{role}" if role else self.client_id

    # -- renderings ------------------------------------------------------------------------

    def librdkafka(self, role: str | None = None) -> dict[str, Any]:
        """confluent-kafka Producer / Consumer / AdminClient config (librdkafka names)."""
        config: dict[str, Any] = {
            "bootstrap.servers": ",".join(self.servers),
            "client.id": self._client_id(role),
            "security.protocol": self.security_protocol.lower(),
        }
        if self.uses_sasl:
            config["sasl.mechanism"] = self.sasl_mechanism
            config["sasl.username"] = self.sasl_username
            config["sasl.password"] = self._password()
        if self.uses_tls:
            for key, path in (("ssl.ca.location", self.ssl_ca_location),
                              ("ssl.certificate.location", self.ssl_certificate_location),
                              ("ssl.key.location", self.ssl_key_location)):
                if path is not None:
                    config[key] = str(path)
            if self.ssl_key_password is not None:
                config["ssl.key.password"] = self.ssl_key_password.get_secret_value()
        return config

    def kafka_python(self, role: str | None = None) -> dict[str, Any]:
        """Keyword arguments for kafka-python's KafkaConsumer / KafkaProducer / admin."""
        kwargs: dict[str, Any] = {
            "bootstrap_servers": self.servers,
            "client_id": self._client_id(role),
            "security_protocol": self.security_protocol,
        }
        kwargs.update(self._python_auth())
        return kwargs

    def aiokafka(self, role: str | None = None) -> dict[str, Any]:
        """Keyword arguments for aiokafka's AIOKafkaConsumer / AIOKafkaProducer."""
        kwargs: dict[str, Any] = {
            "bootstrap_servers": ",".join(self.servers),
            "client_id": self._client_id(role),
            "security_protocol": self.security_protocol,
        }
        kwargs.update(self._python_auth())
        return kwargs

    def faust(self) -> dict[str, Any]:
        """`broker` and `broker_credentials` for faust.App."""
        import faust

        credentials: Any = None
        if self.uses_sasl:
            credentials = faust.SASLCredentials(
                username=self.sasl_username, password=self._password(),
                mechanism=self.sasl_mechanism, ssl_context=self.ssl_context(),
            )
        elif self.uses_tls:
            credentials = faust.SSLCredentials(self.ssl_context())
        broker = ";".join(f"kafka://{server}" for server in self.servers)
        return {"broker": broker, "broker_credentials": credentials,
                "broker_client_id": self._client_id("worker")}

    def ssl_context(self) -> ssl.SSLContext | None:
        """The TLS context for the pure-Python clients; None without TLS."""
        if not self.uses_tls:
            return None
        try:
            context = ssl.create_default_context(
                cafile=str(self.ssl_ca_location) if self.ssl_ca_location else None)
            if self.ssl_certificate_location is not None:
                password = self.ssl_key_password.get_secret_value() if self.ssl_key_password \
                    else None
                context.load_cert_chain(str(self.ssl_certificate_location),
                                        str(self.ssl_key_location), password)
        except (OSError, ssl.SSLError) as exc:
            raise ConfigError(f"cannot load the Kafka TLS files: {exc}",
                              hint=f"check {ENV}SSL_CA_LOCATION / SSL_CERTIFICATE_LOCATION / "
                                   "SSL_KEY_LOCATION point at readable PEM files") from exc
        return context

    def _password(self) -> str | None:
        return self.sasl_password.get_secret_value() if self.sasl_password else None

    def _python_auth(self) -> dict[str, Any]:
        auth: dict[str, Any] = {}
        if self.uses_tls:
            auth["ssl_context"] = self.ssl_context()
        if self.uses_sasl:
            auth["sasl_mechanism"] = self.sasl_mechanism
            auth["sasl_plain_username"] = self.sasl_username
            auth["sasl_plain_password"] = self._password()
        return auth

    def describe(self) -> str:
        """One line for logs and errors, with no secret in it."""
        auth = f" {self.sasl_mechanism} as {self.sasl_username}" if self.uses_sasl else ""
        return f"{','.join(self.servers)} ({self.security_protocol}{auth})"


@dataclass(frozen=True)
class _Cached:
    connection: KafkaConnection


@lru_cache(maxsize=1)
def _cached() -> _Cached:
    try:
        return _Cached(KafkaConnection())
    except ValueError as exc:  # pydantic's ValidationError is a ValueError
        raise ConfigError(f"the Kafka connection settings are inconsistent: {_first(exc)}",
                          hint=f"see `{ENV}*` in docs/ARCHITECTURE.md (Kafka connection)") from exc


def _first(exc: ValueError) -> str:
    errors = getattr(exc, "errors", None)
    if callable(errors):
        items = errors()
        if items:
            item = items[0]
            where = ".".join(str(part) for part in item.get("loc", ()))
            message = str(item.get("msg", exc)).removeprefix("Value error, ")
            return f"{ENV}{where.upper()}: {message}" if where else message
    return str(exc).splitlines()[0]


def kafka_connection(bootstrap: str | None = None) -> KafkaConnection:
    """The process's Kafka connection (environment, read once), optionally re-pointed."""
    return _cached().connection.with_bootstrap(bootstrap)
