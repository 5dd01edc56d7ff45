"""labstream: the event backbone of a cloud laboratory.

PostgreSQL change data capture into Kafka as Debezium-compatible Avro events
(`connectors`), Faust agents that enrich, route and trigger container jobs
(`streams`), one trace ID from front end to job logs (`tracing`), and a replay
tool that re-drives history (`replay`), and `explain`, which answers the four
questions. This package is the top layer, the applications: the CLI, the lab API
and console, the demo, the simulator, the lab database schema and the local
stack. What every layer shares lives at the bottom, in `base`.
"""

from base import __version__

__all__ = ["__version__"]
