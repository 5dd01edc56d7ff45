-- 0002: the built-in schema registry (connectors/registry/db.py).
-- Avro schemas by subject (<topic>-key / <topic>-value) and id, so records carry
-- Confluent framing (magic 0 + 4-byte id) without running a registry service.
-- Same schema registered twice under a subject -> same row (unique fingerprint);
-- a changed schema -> next version. Idempotent-safe.

CREATE SCHEMA IF NOT EXISTS labstream;

CREATE TABLE IF NOT EXISTS labstream.schema_registry (
    id          serial      PRIMARY KEY,
    subject     text        NOT NULL CHECK (subject <> ''),
    version     integer     NOT NULL CHECK (version > 0),
    schema      text        NOT NULL,
    fingerprint text        NOT NULL,  -- sha256 of the canonical JSON text
    created_at  timestamptz NOT NULL DEFAULT now(),
    UNIQUE (subject, fingerprint),
    UNIQUE (subject, version)
);
