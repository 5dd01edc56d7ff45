"""Errors of the CDC connector area (decoding, schemas, serialisation, registry)."""

from __future__ import annotations

from base.errors import ConfigError, LabstreamError, PoisonRecord, ServiceUnavailable


class ConnectorError(LabstreamError):
    """Root of the connector area's errors."""


class DecodeError(PoisonRecord):
    """A pgoutput message could not be decoded (unknown message byte, truncated payload)."""


class ConversionError(PoisonRecord):
    """A column's text value could not be converted to its Connect/Avro value."""


class SchemaError(ConnectorError):
    """A table could not be turned into Avro/Connect schemas."""


class SerializationError(PoisonRecord):
    """An event could not be serialised or deserialised (bad framing, schema mismatch)."""


class RegistryError(ConnectorError):
    """The schema registry refused a request (bad schema, incompatible evolution)."""


class RegistryUnavailable(ServiceUnavailable):
    """The schema registry (HTTP or the lab database table) did not answer."""


class UnknownSchemaId(SerializationError):
    """A record names a schema id the registry does not know."""


class CodecConfigError(ConfigError):
    """A codec setting (serializer, decimal handling mode) has a value we do not support."""


class InvalidSchema(RegistryError):
    """A schema text is not a valid Avro schema (Confluent error 42201)."""


class IncompatibleSchema(RegistryError):
    """A new schema breaks the subject's compatibility rule (Confluent error 409)."""

    def __init__(self, message: str, *, messages: list[str], hint: str | None = None) -> None:
        super().__init__(message, hint=hint)
        self.messages = messages


class MixedRegistries(RegistryError):
    """A subject already has schemas in the other registry: its topic would mix ids."""
