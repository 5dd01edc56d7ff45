-- 0011: compatibility levels for the lab-database schema registry
-- (connectors/registry/db.py, served in the Confluent REST shape by
-- `labstream registry serve`). One row per subject with its own level; the row
-- with subject '' is the global level. No row at all: BACKWARD, as Confluent.
-- Schema ids: the registry moves the id sequence to LABSTREAM_SCHEMA_REGISTRY_ID_OFFSET
-- (default 1000000000) before its first new id, so lab ids never overlap the ids
-- of another registry (which count up from 1); rows registered before keep theirs.

CREATE TABLE IF NOT EXISTS labstream.schema_registry_config (
    subject       text        PRIMARY KEY,  -- '' = the global level
    compatibility text        NOT NULL CHECK (compatibility IN (
        'NONE', 'BACKWARD', 'BACKWARD_TRANSITIVE', 'FORWARD', 'FORWARD_TRANSITIVE',
        'FULL', 'FULL_TRANSITIVE')),
    updated_at    timestamptz NOT NULL DEFAULT now()
);

-- Subjects registered in an external registry (SCHEMA_REGISTRY_URL) by a labstream
-- process using this database: the lab registry refuses to register them too, and
-- the external path refuses subjects the lab registry has. One topic never carries
-- schema ids of two registries (connectors/registry/guard.py).
CREATE TABLE IF NOT EXISTS labstream.schema_registry_external (
    subject       text        PRIMARY KEY,
    registry_url  text        NOT NULL,
    claimed_at    timestamptz NOT NULL DEFAULT now()
);
