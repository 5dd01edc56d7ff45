-- 0009: column values too large for their Kafka record (labstream cdc,
-- LABSTREAM_CDC_OVERSIZED_RECORD_MODE=reference). The change record carries
-- `labstream-oversized:<id>` in the column's place; the value is kept here, written
-- (synchronous_commit on) before the record is sent, so the slot is never confirmed
-- past a change whose value is not durable. A re-sent record (after a restart) finds
-- its row again through the unique key and carries the same id. See docs/connector.md.
CREATE SCHEMA IF NOT EXISTS labstream;

CREATE TABLE IF NOT EXISTS labstream.cdc_oversized_values (
    id           bigserial   PRIMARY KEY,
    topic        text        NOT NULL,
    table_name   text        NOT NULL,               -- schema.table
    record_key   text        NOT NULL,               -- the record's key as JSON ('null': none)
    lsn          pg_lsn      NOT NULL,               -- source.lsn of the change
    op           text        NOT NULL,               -- c, u, d, r
    image        text        NOT NULL CHECK (image IN ('before', 'after')),
    column_name  text        NOT NULL,
    value_text   text,                                -- text, json, xml, ... columns
    value_bytes  bytea,                               -- bytea columns
    created_at   timestamptz NOT NULL DEFAULT now()
);
-- md5: a wide composite key would not fit a btree entry
CREATE UNIQUE INDEX IF NOT EXISTS cdc_oversized_values_change
    ON labstream.cdc_oversized_values (topic, lsn, md5(record_key), op, image, column_name);
