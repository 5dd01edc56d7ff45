"""The CDC connector's entry point, `CdcConnector(settings).run()`.

The connector is split as Debezium splits it; this module keeps the import path
that the CLI, the tests and the benchmarks use:

- coordinator.py: `CdcConnector`: start-up plan, backoff, the one error classifier
  (classify.py), shutdown;
- snapshot_source.py: `SnapshotSource`: fresh snapshot and hand-over;
- streaming_source.py: `StreamingSource`: the slot to Kafka, confirming behind acks;
- offset_context.py: `OffsetContext`: the acknowledged position and the offsets row;
- context.py: `SourceContext`: what the sources share in one session.
"""

from __future__ import annotations

from connectors.source.context import Stopped
from connectors.source.coordinator import CdcConnector, check_bootstrap_resolves
from connectors.source.streaming_source import HANDOVER_PREFIX

__all__ = ["HANDOVER_PREFIX", "CdcConnector", "Stopped", "check_bootstrap_resolves"]
