"""The shared contracts: the facts every labstream process must agree on, one copy each.

- `topics`: how topic names are made (CDC, transaction, message, heartbeat, routed,
  decisions, dead-letter).
- `headers`: Kafka header and job environment names, and the one way to read a
  header from a record's header list.
- `traceids`: what a trace id is (W3C trace id, traceparent, beeline hex or UUID)
  and how each maps to the 32-hex OpenTelemetry id.
- `records`: how the bytes of a record are recognised and decoded (Confluent-framed
  Avro, Debezium JsonConverter JSON, text keys).

Change a contract here and every reader and writer changes with it.
"""
