import os

import faust
from labstream_client import LabstreamCodec, otel_context
from opentelemetry import trace

env = os.environ.get
tracer = trace.get_tracer("lab-subscriber")
broker = "kafka://" + env("KAFKA", "127.0.0.1:59092")
app = faust.App(env("APP_ID", "lab-subscriber"), broker=broker, web_enabled=False)
codec = LabstreamCodec(registry_url=env("REGISTRY_URL", "http://127.0.0.1:8081"))
changes = app.topic(env("TOPIC", "lab.public.experiments"), value_serializer=codec)


@app.agent(changes)
async def on_change(stream):
    async for event in stream.events():
        change = event.value  # ChangeEvent: op, before, after, source, ts_ms, transaction
        if change is not None:  # not a tombstone
            with tracer.start_as_current_span("on_change", context=otel_context(event.headers)):
                trace_id = trace.get_current_span().get_span_context().trace_id
                print(f"{change.op} {change.row} {trace_id:032x}", flush=True)


if __name__ == "__main__":
    app.main()
