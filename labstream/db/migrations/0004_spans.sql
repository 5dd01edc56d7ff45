-- 0004: finished OpenTelemetry spans, written by tracing/spanstore.py (the default
-- exporter) and read by `labstream trace` / `labstream explain`.
-- Schema labstream: never captured by CDC (a span about a change must not cause one).
-- Ids are lower-case hex as in W3C traceparent; times are Unix nanoseconds as in
-- OTLP, with a generated timestamptz for humans and time-range queries.

CREATE SCHEMA IF NOT EXISTS labstream;

CREATE TABLE IF NOT EXISTS labstream.spans (
    trace_id             text        NOT NULL CHECK (trace_id ~ '^[0-9a-f]{32}$'),
    span_id              text        NOT NULL CHECK (span_id ~ '^[0-9a-f]{16}$'),
    parent_span_id       text                 CHECK (parent_span_id ~ '^[0-9a-f]{16}$'),
    name                 text        NOT NULL,
    kind                 text        NOT NULL
                                     CHECK (kind IN ('INTERNAL', 'SERVER', 'CLIENT',
                                                     'PRODUCER', 'CONSUMER')),
    service_name         text        NOT NULL,
    start_time_unix_nano bigint      NOT NULL,
    end_time_unix_nano   bigint      NOT NULL,
    start_time           timestamptz GENERATED ALWAYS AS
                                     (to_timestamp(start_time_unix_nano / 1e9::double precision))
                                     STORED,
    duration_ns          bigint      GENERATED ALWAYS AS
                                     (end_time_unix_nano - start_time_unix_nano) STORED,
    status_code          text        NOT NULL DEFAULT 'UNSET'
                                     CHECK (status_code IN ('UNSET', 'OK', 'ERROR')),
    status_message       text,
    attributes           jsonb       NOT NULL DEFAULT '{}'::jsonb,
    events               jsonb       NOT NULL DEFAULT '[]'::jsonb,
    links                jsonb       NOT NULL DEFAULT '[]'::jsonb,
    resource             jsonb       NOT NULL DEFAULT '{}'::jsonb,
    scope_name           text,
    inserted_at          timestamptz NOT NULL DEFAULT now(),
    -- a re-exported batch must not duplicate spans: inserts use ON CONFLICT DO NOTHING
    PRIMARY KEY (trace_id, span_id)
);

CREATE INDEX IF NOT EXISTS spans_start_time_idx ON labstream.spans (start_time);
-- `labstream trace --experiment <id>`
CREATE INDEX IF NOT EXISTS spans_experiment_idx
    ON labstream.spans ((attributes ->> 'lab.experiment.id'))
    WHERE attributes ? 'lab.experiment.id';
-- spans in other traces that link into a trace (replays, batches)
CREATE INDEX IF NOT EXISTS spans_links_idx ON labstream.spans USING gin (links jsonb_path_ops);
