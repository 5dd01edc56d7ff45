"""One trace id from the front end to the job's container.

Setup (once per process, first thing in `main`)::

    from tracing.setup import configure_tracing, shutdown_tracing

    configure_tracing("labstream-worker")   # labstream-cdc / -job / -api / -simulator
    ...
    shutdown_tracing()                       # flushes every exporter

Where spans go is configuration (`LABSTREAM_TRACING_EXPORTERS`, default `auto`):
the lab DB span store (`db`, always in `auto`, so `labstream trace` works with
nothing else running), Honeycomb (`honeycomb`, auto when `HONEYCOMB_API_KEY` is
set; `HONEYCOMB_REGION=eu` for the EU instance), any OTLP/HTTP collector (`otlp`,
auto when `OTEL_EXPORTER_OTLP_ENDPOINT` or `..._TRACES_ENDPOINT` is set; the SDK
reads `OTEL_EXPORTER_OTLP_HEADERS` itself) and `console`. Several at once:
`LABSTREAM_TRACING_EXPORTERS=db,otlp`. `LABSTREAM_TRACING_ENABLED=false` or
`OTEL_SDK_DISABLED=true` turns tracing off.

Carrying the context across each hop (`tracing.propagation`)::

    headers = inject_headers(headers)              # Kafka producer: traceparent/tracestate
    ctx = extract_headers(record.headers)          # Kafka consumer
    emit_db_trace_context(cursor)                  # inside the writing transaction
    ctx = context_from_db_messages({"traceparent": content})   # CDC connector side
    env.update(job_environment())                  # job launcher: TRACEPARENT/TRACESTATE
    configure_job_logging()                        # inside the job: logs carry trace_id
    ctx = extract_http_headers(request.headers)    # W3C, else X-Honeycomb-Trace (beelines)

Messaging spans (`tracing.semconv`)::

    with send_span(tracer, topic=topic, key=key):
        producer.produce(topic, value, key, headers=inject_headers(headers))
    with process_span(tracer, topic=r.topic, headers=r.headers, partition=r.partition,
                      offset=r.offset, consumer_group=group):
        handle(r)

Reading a trace back: `labstream trace <trace-id|traceparent> [--json]` or
`labstream trace --experiment <id>`. Full guide: docs/tracing.md.
"""
