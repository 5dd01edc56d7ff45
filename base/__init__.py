"""The bottom layer of labstream: what every process shares and nothing else.

Errors, settings, structured logging, the lab database connection, the Kafka
connection config and the shared contracts (topic names, header names, trace-id
parsing, record decoding). This package imports nothing of the project; every
other package may import it. The layers above, each importing only those below:

    base <- tracing <- connectors <- streams <- replay, explain <- labstream (apps)

`make lint` checks that order with an import-linter contract.
"""

__version__ = "0.1.0"

__all__ = ["__version__"]
