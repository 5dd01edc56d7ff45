"""The lab API (`labstream api`): experiments in, jobs, logs and traces out.

A small Starlette app. Every request continues the caller's trace (`traceparent`,
or `X-Honeycomb-Trace` from beeline front ends) or starts one; submitting an
experiment writes the trace context into the same transaction
(`emit_db_trace_context`), so the CDC connector and everything after it join
the trace. Every data request needs `Authorization: Bearer <token>`
(`labstream tokens`) or an OIDC JWT; the tenant comes from the credential, and
another tenant's experiment, job or trace answers 404 (docs/security.md).

    POST /experiments               -> 201 {"id", "trace_id", "traceparent", ...}
    GET  /experiments/{id}
    GET  /experiments/{id}/jobs
    GET  /jobs/{id}/logs?after=<seq>
    GET  /traces/{trace_id}         -> the `labstream trace --json` document
    GET  /auth/whoami               -> {"subject", "role", "tenant_id"} of the credential
"""
