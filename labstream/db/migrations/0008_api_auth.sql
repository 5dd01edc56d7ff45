-- 0008: who may call the lab API (labstream/auth, labstream/api/auth.py).
-- Schema labstream: never captured by CDC, so token hashes never reach Kafka.

CREATE SCHEMA IF NOT EXISTS labstream;

-- API tokens: `lst_<id>_<secret>`; only the id and an scrypt hash of the secret are
-- kept, so a copy of this table does not give anyone access.
CREATE TABLE IF NOT EXISTS labstream.api_tokens (
    id            text        PRIMARY KEY CHECK (id ~ '^[0-9a-f]{16}$'),
    name          text        NOT NULL,
    role          text        NOT NULL CHECK (role IN ('scientist', 'viewer', 'operator')),
    -- scientist and viewer tokens are bound to one tenant; operator tokens to none
    tenant_id     text        REFERENCES public.tenants (id) ON DELETE CASCADE,
    secret_hash   bytea       NOT NULL,
    salt          bytea       NOT NULL,
    scrypt_n      integer     NOT NULL,
    scrypt_r      integer     NOT NULL,
    scrypt_p      integer     NOT NULL,
    created_at    timestamptz NOT NULL DEFAULT now(),
    expires_at    timestamptz,
    revoked_at    timestamptz,
    last_used_at  timestamptz,
    CHECK ((role = 'operator') = (tenant_id IS NULL))
);
CREATE INDEX IF NOT EXISTS api_tokens_tenant_idx ON labstream.api_tokens (tenant_id);

-- Every request an operator credential makes (refused ones too), committed before
-- anything else is done for it: no audit row, no data.
CREATE TABLE IF NOT EXISTS labstream.operator_audit (
    id          bigserial   PRIMARY KEY,
    at          timestamptz NOT NULL DEFAULT now(),
    subject     text        NOT NULL,  -- token id or OIDC `sub`
    method      text        NOT NULL,
    path        text        NOT NULL,
    tenant_id   text,                  -- the tenant named (X-Lab-Tenant); NULL: none
    trace_id    text                   -- the request's own trace
);
CREATE INDEX IF NOT EXISTS operator_audit_at_idx ON labstream.operator_audit (at DESC);

-- Who started a trace through the API: the first authenticated writer. A request
-- of another tenant carrying the same traceparent never changes this row; deleting
-- the tenant deletes it.
CREATE TABLE IF NOT EXISTS labstream.trace_owners (
    trace_id    text        PRIMARY KEY CHECK (trace_id ~ '^[0-9a-f]{32}$'),
    tenant_id   text        NOT NULL REFERENCES public.tenants (id) ON DELETE CASCADE,
    claimed_by  text        NOT NULL,
    claimed_at  timestamptz NOT NULL DEFAULT now()
);
