-- 0003: where each CDC connector is (labstream cdc). One row per connector.
-- The replication slot holds the real streaming position (confirmed_flush_lsn);
-- this row says which slot that is, whether the initial snapshot finished, and
-- the last acknowledged commit (for `labstream cdc status`). See docs/connector.md
-- for why the slot is never confirmed past consistent_point before
-- snapshot_state = 'done' is written here.
CREATE SCHEMA IF NOT EXISTS labstream;

CREATE TABLE IF NOT EXISTS labstream.connector_offsets (
    connector_name      text        PRIMARY KEY,
    slot_name           text        NOT NULL,
    -- pending: not started; running: snapshot reading; done: snapshot durable in
    -- Kafka; skipped: snapshot_mode never (no snapshot wanted)
    snapshot_state      text        NOT NULL DEFAULT 'pending'
                                    CHECK (snapshot_state IN ('pending', 'running', 'done', 'skipped')),
    snapshot_progress   jsonb       NOT NULL DEFAULT '{}'::jsonb,
    consistent_point    pg_lsn,
    -- a hand-over slot being prepared (snapshot restarted after a crash)
    pending_slot        text,
    -- a slot replaced by a hand-over, dropped on the next start if still there
    retired_slot        text,
    last_commit_lsn     pg_lsn,
    last_commit_at      timestamptz,
    last_acked_at       timestamptz,
    updated_at          timestamptz NOT NULL DEFAULT now()
);
