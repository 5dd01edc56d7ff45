-- 0007: the jobs table becomes a durable work queue with leases (see docs/jobs.md).
-- A 'queued' row belongs to nobody: any worker's runner claims it (FOR UPDATE SKIP
-- LOCKED, fair across tenants). A 'started' row is leased: lease_owner runs it and
-- renews lease_expires_at by heartbeat; when the lease expires (owner dead, hung or
-- cut off) another worker kills what is left of the attempt's process group and
-- queues the next attempt. Only live leases count against a tenant's max_concurrency.
ALTER TABLE public.jobs ADD COLUMN IF NOT EXISTS max_concurrency  integer NOT NULL DEFAULT 1
                                                  CHECK (max_concurrency >= 1);
ALTER TABLE public.jobs ADD COLUMN IF NOT EXISTS timeout_s        double precision;
ALTER TABLE public.jobs ADD COLUMN IF NOT EXISTS image            text;
ALTER TABLE public.jobs ADD COLUMN IF NOT EXISTS env              jsonb NOT NULL DEFAULT '{}'::jsonb;
ALTER TABLE public.jobs ADD COLUMN IF NOT EXISTS tracestate       text;
ALTER TABLE public.jobs ADD COLUMN IF NOT EXISTS idempotency_key  text;
ALTER TABLE public.jobs ADD COLUMN IF NOT EXISTS queued_at        timestamptz NOT NULL DEFAULT now();
ALTER TABLE public.jobs ADD COLUMN IF NOT EXISTS lease_owner      text;
ALTER TABLE public.jobs ADD COLUMN IF NOT EXISTS lease_expires_at timestamptz;
ALTER TABLE public.jobs ADD COLUMN IF NOT EXISTS heartbeat_at     timestamptz;
-- the attempt's process (local backend): host, pid and its start time in clock ticks
-- since boot (/proc/<pid>/stat field 22), so a reused pid is never taken for the job
ALTER TABLE public.jobs ADD COLUMN IF NOT EXISTS process_host     text;
ALTER TABLE public.jobs ADD COLUMN IF NOT EXISTS process_pid      integer;
ALTER TABLE public.jobs ADD COLUMN IF NOT EXISTS process_start    bigint;

-- what claims scan: the queued rows per tenant, oldest first
CREATE INDEX IF NOT EXISTS jobs_queued_idx ON public.jobs (tenant_id, queued_at)
    WHERE status = 'queued';
-- what slot counts and takeovers scan: the leased rows
CREATE INDEX IF NOT EXISTS jobs_leased_idx ON public.jobs (tenant_id, rule_id, lease_expires_at)
    WHERE status = 'started';

-- round robin over tenants: the tenant served longest ago is offered a slot first
CREATE TABLE IF NOT EXISTS public.job_tenant_turns (
    tenant_id       text        PRIMARY KEY,
    last_claimed_at timestamptz NOT NULL DEFAULT now()
);
