import os

from labstream_client import ChangeConsumer, ChangeEvent, otel_context
from opentelemetry import trace

env = os.environ.get
tracer = trace.get_tracer("lab-subscriber")
with ChangeConsumer([env("TOPIC", "lab.public.experiments")],
                    bootstrap_servers=env("KAFKA", "127.0.0.1:59092"),
                    group_id=env("APP_ID", "lab-subscriber"),
                    registry_url=env("REGISTRY_URL", "http://127.0.0.1:8081")) as records:
    for record in records:
        change = record.value  # ChangeEvent: op, before, after, source, ts_ms, transaction
        if isinstance(change, ChangeEvent):  # not a tombstone
            with tracer.start_as_current_span("on_change", context=otel_context(record.headers)):
                trace_id = trace.get_current_span().get_span_context().trace_id
                print(f"{change.op} {change.row} {trace_id:032x}", flush=True)
