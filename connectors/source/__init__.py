"""The CDC runtime: `CdcConnector(CdcSettings()).run()` is `labstream cdc run`.

See `connectors/__init__.py` for the user guide and docs/connector.md for the
guarantees and settings.
"""

from connectors.source.config import CdcSettings
from connectors.source.connector import CdcConnector
from connectors.source.status import connector_status, reset_connector

__all__ = ["CdcConnector", "CdcSettings", "connector_status", "reset_connector"]
