-- 0006: replays (labstream replay). One row per `labstream replay run`, dry run or
-- re-drive. A re-drive records its progress in small batches, each only after the
-- producer acknowledged every record of the batch, so `labstream replay resume <id>`
-- continues from `progress` without skipping; records produced after the last
-- recorded batch (crash between ack and commit) are found again in the target
-- topic from `target_positions` by their labstream-replay-id header, so nothing is
-- produced twice either. See docs/replay.md.
CREATE SCHEMA IF NOT EXISTS labstream;

CREATE TABLE IF NOT EXISTS labstream.replays (
    id                text        PRIMARY KEY,                -- 'rp-...' (labstream-replay-id)
    created_at        timestamptz NOT NULL DEFAULT now(),
    updated_at        timestamptz NOT NULL DEFAULT now(),
    selection         jsonb       NOT NULL,                   -- replay.selection.Selection.to_json()
    -- [[topic, partition, start, stop], ...]: offsets fixed when the replay started
    plan              jsonb       NOT NULL DEFAULT '[]'::jsonb,
    mode              text        NOT NULL CHECK (mode IN ('dry-run', 'execute')),
    target            text,                                    -- NULL: each record's own topic
    options           jsonb       NOT NULL DEFAULT '{}'::jsonb, -- rate, rerun_succeeded, ...
    status            text        NOT NULL DEFAULT 'running'
                                  CHECK (status IN ('running', 'interrupted', 'failed',
                                                    'succeeded')),
    total             integer,                                 -- records in the plan
    done              integer     NOT NULL DEFAULT 0,          -- scanned so far
    matched           integer     NOT NULL DEFAULT 0,
    undecodable       integer     NOT NULL DEFAULT 0,
    produced          integer     NOT NULL DEFAULT 0,
    -- {"topic/partition": last source offset whose replay was acknowledged}
    progress          jsonb       NOT NULL DEFAULT '{}'::jsonb,
    -- {"target_topic/partition": end offset after the last recorded batch}
    target_positions  jsonb       NOT NULL DEFAULT '{}'::jsonb,
    finished_at       timestamptz,
    error             text
);
CREATE INDEX IF NOT EXISTS replays_created_idx ON labstream.replays (created_at DESC);
