-- 0012: indexes for the console's search, filters and paging (labstream/api/console_store.py).
-- Pages are keyset pages, newest first: (created_at, id) < (cursor) within one tenant, so each
-- page is an index range scan however deep the user pages.
CREATE INDEX IF NOT EXISTS experiments_tenant_created_idx
    ON public.experiments (tenant_id, created_at DESC, id DESC);
CREATE INDEX IF NOT EXISTS experiments_tenant_status_created_idx
    ON public.experiments (tenant_id, status, created_at DESC, id DESC);
CREATE INDEX IF NOT EXISTS experiments_tenant_submitter_idx
    ON public.experiments (tenant_id, submitted_by);
-- jobs of a tenant, newest first, and by status (the jobs list and its filters)
CREATE INDEX IF NOT EXISTS jobs_tenant_created_idx
    ON public.jobs (tenant_id, created_at DESC, id DESC);
CREATE INDEX IF NOT EXISTS jobs_status_created_idx
    ON public.jobs (status, created_at DESC);
-- the replay span of a trace: the record a re-driven job's record is a copy of
CREATE INDEX IF NOT EXISTS spans_replay_of_idx
    ON labstream.spans (trace_id) WHERE attributes ? 'labstream-replay-of';

-- A re-drive started from the console: who agreed to it, when, for which job and record,
-- written BEFORE the replay starts (so a consent exists for every re-drive, even one
-- that fails), then completed with the replay's id and outcome.
CREATE TABLE IF NOT EXISTS labstream.console_replay_consents (
    id             bigint      GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    tenant_id      text        NOT NULL,
    job_id         text        NOT NULL,
    record         text        NOT NULL,              -- topic/partition/offset re-driven
    command        text        NOT NULL,              -- the equivalent `labstream replay run`
    consented_by   text        NOT NULL CHECK (consented_by <> ''),
    consented_at   timestamptz NOT NULL DEFAULT now(),
    -- labstream.replays.id, written as soon as the replay row exists ('started'): if the
    -- API dies mid-way, `labstream replay resume <replay_id>` continues it
    replay_id      text,
    status         text        NOT NULL DEFAULT 'consented'
                               CHECK (status IN ('consented', 'started', 'succeeded', 'failed')),
    error          text
);
CREATE INDEX IF NOT EXISTS console_replay_consents_job_idx
    ON labstream.console_replay_consents (job_id, consented_at DESC);
