"""labstream: the event backbone of a cloud laboratory.

PostgreSQL change data capture into Kafka as Debezium-compatible Avro events
(`connectors`), Faust agents that enrich, route and trigger container jobs
(`streams`), one trace ID from front end to job logs (`tracing`), and a replay
tool that re-drives history (`replay`). This package holds what they share: the
CLI, settings, errors, logging, the lab database schema and the local stack.
"""

__version__ = "0.1.0"

__all__ = ["__version__"]
