"""The stream worker: CDC changes in; typed lab events, trigger decisions and jobs out.

Run it::

    labstream worker                 # one worker process (group labstream-worker)
    labstream worker --concurrency 3 # three processes in the same group
    labstream worker --no-jobs       # decisions only, no job launched

For each record of `lab.public.{runs,experiments,inventory_items,sensor_readings}`:

1. **decode** (`streams.codec`): Confluent-framed Avro via the schema registry;
   a record that does not decode goes to the dead-letter topic `<app_id>.dlq`;
2. **enrich** (`streams.enrich.enrich`): join tenant, experiment, instrument,
   samples, inventory from in-memory reference tables (`streams.reference`:
   every worker follows all partitions of the reference CDC topics); late
   reference rows are waited for, then marked `complete=False, missing=[...]`;
3. **route** (`streams.route.route`): typed events on `lab.routed.<kind>`
   (`hplc.completed`, `run.failed`, `experiment.submitted`, `inventory.low`,
   `inventory.lot_expiring`, `fridge.excursion`), one Avro schema per topic
   (`streams.schemas`);
4. **trigger** (`streams.trigger.decide`): every rule of `trigger_rules` for the
   event's kind gives a decision (fired / skipped and why / failed) on
   `lab.decisions`; fired ones become a `streams.jobs.JobRequest` with a
   deterministic job key, handed to `streams.jobs.JobRunner`.

Everything runs inside a CONSUMER span `process <topic>` whose parent is the
trace context from the record's headers; produced records and the job carry it
on. enrich/route/decide are pure functions over `streams.records` types, used
as is by replay; `streams.agents.RecordHandler` is the whole chain for one
record without Faust, and `streams.app` is the thin Faust wiring (agent
concurrency 1: see docs/topics.md, "Delivery guarantees").

Topics, schemas, the decisions and dead-letter formats: docs/topics.md.
Settings: `streams.config.WorkerSettings` (`LABSTREAM_WORKER_*`).
"""
