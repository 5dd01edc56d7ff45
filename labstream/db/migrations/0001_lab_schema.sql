-- 0001: the lab's own tables (schema public), the data scientists and the
-- front end write. CDC captures every table here as topic lab.public.<table>.
-- Idempotent-safe: a half-applied copy (created by hand) does not break it.
-- REPLICA IDENTITY FULL where consumers need the before-image of an update
-- (status transitions, quantity changes, rule edits).

CREATE OR REPLACE FUNCTION public.set_updated_at() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    NEW.updated_at := now();
    RETURN NEW;
END;
$$;

CREATE TABLE IF NOT EXISTS public.tenants (
    id          text        PRIMARY KEY CHECK (id ~ '^[a-z0-9][a-z0-9_.-]*$'),
    name        text        NOT NULL CHECK (name <> ''),
    tier        text        NOT NULL DEFAULT 'standard'
                            CHECK (tier IN ('free', 'standard', 'enterprise')),
    created_at  timestamptz NOT NULL DEFAULT now(),
    updated_at  timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE IF NOT EXISTS public.experiments (
    id            text        PRIMARY KEY CHECK (id <> ''),  -- 'exp-...' from the front end
    tenant_id     text        NOT NULL REFERENCES public.tenants (id),
    kind          text        NOT NULL
                              CHECK (kind IN ('hplc', 'synthesis', 'cell-culture', 'lc-ms', 'plate-read')),
    status        text        NOT NULL DEFAULT 'submitted'
                              CHECK (status IN ('submitted', 'queued', 'running',
                                                'completed', 'failed', 'cancelled')),
    title         text        NOT NULL DEFAULT '',
    submitted_by  text        NOT NULL,
    protocol      jsonb       NOT NULL DEFAULT '{}'::jsonb,
    priority      integer     NOT NULL DEFAULT 5 CHECK (priority BETWEEN 0 AND 100),
    created_at    timestamptz NOT NULL DEFAULT now(),
    updated_at    timestamptz NOT NULL DEFAULT now(),
    completed_at  timestamptz,
    CHECK (completed_at IS NULL OR status IN ('completed', 'failed', 'cancelled'))
);
CREATE INDEX IF NOT EXISTS experiments_tenant_created_idx
    ON public.experiments (tenant_id, created_at);
CREATE INDEX IF NOT EXISTS experiments_open_status_idx
    ON public.experiments (status) WHERE status IN ('submitted', 'queued', 'running');

CREATE TABLE IF NOT EXISTS public.instruments (
    id              text        PRIMARY KEY,
    name            text        NOT NULL,
    kind            text        NOT NULL
                                -- hplc, lc-ms, plate-reader, incubator, fridge, synthesizer, ...
                                CHECK (kind ~ '^[a-z][a-z0-9-]*$'),
    location        text        NOT NULL DEFAULT '',
    status          text        NOT NULL DEFAULT 'idle'
                                CHECK (status IN ('idle', 'running', 'maintenance', 'offline')),
    current_run_id  text,       -- no FK: runs reference instruments; a cycle would block deletes
    created_at      timestamptz NOT NULL DEFAULT now(),
    updated_at      timestamptz NOT NULL DEFAULT now(),
    CHECK (current_run_id IS NULL OR status = 'running')
);
CREATE INDEX IF NOT EXISTS instruments_kind_status_idx ON public.instruments (kind, status);

CREATE TABLE IF NOT EXISTS public.runs (
    id             text        PRIMARY KEY,
    experiment_id  text        NOT NULL REFERENCES public.experiments (id),
    -- A real FK: the database commits the instrument before any run on it, and
    -- the connector delivers changes in commit order.
    instrument_id  text        NOT NULL REFERENCES public.instruments (id),
    status         text        NOT NULL DEFAULT 'queued'
                               CHECK (status IN ('queued', 'running', 'completed', 'failed')),
    started_at     timestamptz,
    finished_at    timestamptz,
    result         jsonb,      -- e.g. HPLC: {"peaks": [{"rt_min", "area", "height"}, ...]}
    error          text,
    created_at     timestamptz NOT NULL DEFAULT now(),
    updated_at     timestamptz NOT NULL DEFAULT now(),
    CHECK (finished_at IS NULL OR started_at IS NULL OR finished_at >= started_at)
);
CREATE INDEX IF NOT EXISTS runs_experiment_idx ON public.runs (experiment_id);
CREATE INDEX IF NOT EXISTS runs_instrument_idx ON public.runs (instrument_id, status);

CREATE TABLE IF NOT EXISTS public.samples (
    id             text          PRIMARY KEY,
    tenant_id      text          NOT NULL REFERENCES public.tenants (id),
    experiment_id  text          REFERENCES public.experiments (id),
    name           text          NOT NULL,
    material       text          NOT NULL DEFAULT '',
    volume_ul      numeric(10,2) CHECK (volume_ul IS NULL OR volume_ul >= 0),
    created_at     timestamptz   NOT NULL DEFAULT now(),
    updated_at     timestamptz   NOT NULL DEFAULT now()
);
CREATE INDEX IF NOT EXISTS samples_experiment_idx ON public.samples (experiment_id);
CREATE INDEX IF NOT EXISTS samples_tenant_idx ON public.samples (tenant_id);

CREATE TABLE IF NOT EXISTS public.inventory_items (
    id             text          PRIMARY KEY,
    name           text          NOT NULL,
    lot            text          NOT NULL,
    quantity       numeric(12,3) NOT NULL CHECK (quantity >= 0),
    unit           text          NOT NULL CHECK (unit <> ''),  -- ml, g, units, ...
    reorder_level  numeric(12,3) NOT NULL DEFAULT 0 CHECK (reorder_level >= 0),
    expires_at     timestamptz,
    location       text          NOT NULL DEFAULT '',
    created_at     timestamptz   NOT NULL DEFAULT now(),
    updated_at     timestamptz   NOT NULL DEFAULT now()
);
CREATE INDEX IF NOT EXISTS inventory_items_expires_idx ON public.inventory_items (expires_at);
CREATE INDEX IF NOT EXISTS inventory_items_name_idx ON public.inventory_items (name);

-- Insert-only time series: no updated_at, default replica identity.
CREATE TABLE IF NOT EXISTS public.sensor_readings (
    id             bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    sensor_id      text          NOT NULL,
    instrument_id  text          REFERENCES public.instruments (id),
    kind           text          NOT NULL CHECK (kind IN ('temperature', 'door')),
    celsius        numeric(6,2),
    door_open      boolean,
    read_at        timestamptz   NOT NULL DEFAULT now(),
    CHECK ((kind = 'temperature' AND celsius IS NOT NULL AND door_open IS NULL)
        OR (kind = 'door' AND door_open IS NOT NULL AND celsius IS NULL))
);
CREATE INDEX IF NOT EXISTS sensor_readings_sensor_read_at_idx
    ON public.sensor_readings (sensor_id, read_at);
CREATE INDEX IF NOT EXISTS sensor_readings_instrument_read_at_idx
    ON public.sensor_readings (instrument_id, read_at);

CREATE TABLE IF NOT EXISTS public.trigger_rules (
    id               text        PRIMARY KEY CHECK (id ~ '^[a-z0-9][a-z0-9_.-]*$'),  -- slug
    tenant_id        text        REFERENCES public.tenants (id), -- NULL: every tenant
    enabled          boolean     NOT NULL DEFAULT true,
    event_kind       text        NOT NULL CHECK (event_kind <> ''),  -- e.g. 'hplc.completed'
    condition        jsonb       NOT NULL DEFAULT '{}'::jsonb
                                 CHECK (jsonb_typeof(condition) = 'object'),
    backend          text        NOT NULL DEFAULT 'local'
                                 CHECK (backend IN ('local', 'docker', 'kubernetes', 'ecs')),
    image            text,
    command          jsonb       NOT NULL CHECK (jsonb_typeof(command) = 'array'),
    env              jsonb       NOT NULL DEFAULT '{}'::jsonb CHECK (jsonb_typeof(env) = 'object'),
    timeout_s        integer     NOT NULL DEFAULT 600 CHECK (timeout_s > 0),
    max_concurrency  integer     NOT NULL DEFAULT 4 CHECK (max_concurrency > 0),
    description      text        NOT NULL DEFAULT '',
    created_at       timestamptz NOT NULL DEFAULT now(),
    updated_at       timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX IF NOT EXISTS trigger_rules_event_kind_idx ON public.trigger_rules (event_kind);

CREATE TABLE IF NOT EXISTS public.jobs (
    id                text        PRIMARY KEY,
    job_key           text        NOT NULL UNIQUE,  -- rule + event identity: launch once
    rule_id           text        NOT NULL,          -- no FK: a rule may be deleted, its jobs stay
    tenant_id         text,
    experiment_id     text,
    event_kind        text,                          -- routed kind that fired, e.g. 'hplc.completed'
    command           jsonb,                         -- argv after placeholders were filled
    backend           text        NOT NULL
                                  CHECK (backend IN ('local', 'docker', 'kubernetes', 'ecs')),
    status            text        NOT NULL DEFAULT 'queued'
                                  CHECK (status IN ('queued', 'started', 'succeeded', 'failed',
                                                    'timed_out', 'launch_failed')),
    backend_ref       text,       -- pid, container id, Kubernetes Job name or ECS task ARN
    attempt           integer     NOT NULL DEFAULT 1 CHECK (attempt >= 1),
    exit_code         integer,
    error             text,
    trace_id          text,
    traceparent       text,
    source_topic      text,
    source_partition  integer,
    source_offset     bigint,
    created_at        timestamptz NOT NULL DEFAULT now(),
    started_at        timestamptz,
    finished_at       timestamptz,
    updated_at        timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX IF NOT EXISTS jobs_trace_id_idx ON public.jobs (trace_id);
CREATE INDEX IF NOT EXISTS jobs_experiment_idx ON public.jobs (experiment_id);
CREATE INDEX IF NOT EXISTS jobs_rule_status_idx ON public.jobs (rule_id, status);

CREATE TABLE IF NOT EXISTS public.job_log_lines (
    id         bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    job_id     text        NOT NULL REFERENCES public.jobs (id) ON DELETE CASCADE,
    seq        integer     NOT NULL CHECK (seq >= 0),
    stream     text        NOT NULL CHECK (stream IN ('stdout', 'stderr')),
    line       text        NOT NULL,
    trace_id   text,
    logged_at  timestamptz NOT NULL DEFAULT now()
);
CREATE UNIQUE INDEX IF NOT EXISTS job_log_lines_job_seq_idx ON public.job_log_lines (job_id, seq);
CREATE INDEX IF NOT EXISTS job_log_lines_trace_id_idx ON public.job_log_lines (trace_id);

ALTER TABLE public.experiments     REPLICA IDENTITY FULL;
ALTER TABLE public.runs            REPLICA IDENTITY FULL;
ALTER TABLE public.instruments     REPLICA IDENTITY FULL;
ALTER TABLE public.inventory_items REPLICA IDENTITY FULL;
ALTER TABLE public.trigger_rules   REPLICA IDENTITY FULL;
ALTER TABLE public.jobs            REPLICA IDENTITY FULL;

-- updated_at follows every UPDATE, whoever writes it.
DO $$
DECLARE
    table_name text;
BEGIN
    FOREACH table_name IN ARRAY ARRAY['tenants', 'experiments', 'instruments', 'runs', 'samples',
                                      'inventory_items', 'trigger_rules', 'jobs']
    LOOP
        EXECUTE format('DROP TRIGGER IF EXISTS %I ON public.%I',
                       table_name || '_set_updated_at', table_name);
        EXECUTE format('CREATE TRIGGER %I BEFORE UPDATE ON public.%I '
                       'FOR EACH ROW EXECUTE FUNCTION public.set_updated_at()',
                       table_name || '_set_updated_at', table_name);
    END LOOP;
END;
$$;
