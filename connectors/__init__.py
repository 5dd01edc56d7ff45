"""labstream's CDC source: every committed change of the lab database, in Kafka.

Run it::

    labstream stack up && labstream db migrate
    labstream cdc                 # snapshot once, then stream; SIGTERM stops it cleanly
    labstream cdc status --json   # slot, confirmed LSN, lag, snapshot state
    labstream cdc reset --yes     # drop slot + offsets: the next run snapshots anew

What arrives in Kafka (Debezium-compatible, so Debezium consumers read it as is):

- `<prefix>.<schema>.<table>` (prefix `lab`): one record per row change, key = the
  primary key, value = Debezium's envelope (`before`, `after`, `source`, `op` in
  c/u/d/r/t, `ts_ms`, `transaction`), Avro with Confluent framing (schema ids from
  `SCHEMA_REGISTRY_URL`, else the lab database's registry table) or Debezium's
  JsonConverter JSON (`LABSTREAM_CDC_SERIALIZER=json`); a tombstone after each delete.
- `<prefix>.message`: `pg_logical_emit_message` calls (op `m`);
  `<prefix>.transaction`: BEGIN/END when `LABSTREAM_CDC_PROVIDE_TRANSACTION_METADATA=true`;
  `__labstream-heartbeat.<prefix>`: heartbeats while the tables are idle.
- Headers `traceparent`/`tracestate` on every record of a transaction that wrote its
  trace context with `tracing.propagation.emit_db_trace_context(cursor)`.

Guarantees: at least once, in commit order per key, nothing lost when the process is
killed at any moment (snapshot and its hand-over to streaming included); deduplicate
on `(source.lsn, source.sequence)`. docs/connector.md explains why, and lists every
`LABSTREAM_CDC_*` setting; docs/events.md describes the records.

Where the code is:

- `pgoutput.py` decodes the replication stream; `pgtypes.py`/`pgtext.py` map column
  types; `schema.py`, `envelope.py`, `serde.py`, `registry/` build and encode events.
- `source/` is the runtime, split as Debezium splits it: `coordinator.py`
  (`CdcConnector`: start-up plan, backoff, shutdown) with `classify.py` (the one error
  classifier: retry or stop), `snapshot_source.py` (fresh snapshot, hand-over),
  `streaming_source.py` (slot to Kafka, confirming behind acks), `offset_context.py`
  (acknowledged position and offsets-row transitions) and `context.py` (what they
  share in a session); below them `replication.py` (slot, stream, feedback),
  `snapshot.py`, `startup.py` (what a start does), `transactions.py` (per-transaction
  buffering and trace context), `events.py`, `emitter.py`, `oversized.py` (records
  too large for their topic) and `producer.py` (Kafka, delivery tracking, topic
  limits), `kafkalog.py`, `offsets.py`, `heartbeat.py`, `status.py`; `connector.py`
  keeps the import path.
- `cli.py` is `labstream cdc`.
"""
