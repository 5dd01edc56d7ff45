"""Loads the compiled hot-path module (connectors/_speedups.c), if built and not off.

Kept apart from `connectors.speedups` (the writers' plans) so the decoder modules can
ask for it without importing the writers. `LABSTREAM_CDC_SPEEDUPS=0` (read at import of
each user) turns every compiled path off: pure Python, as before issue 13 item 6.
"""

from __future__ import annotations

import importlib
import os
from types import ModuleType


def load(module: str = "connectors._speedups") -> ModuleType | None:
    """The compiled `module`, or None (switched off, or not built: pure Python then).
    Also loads the replay/worker Avro reader (`streams._avrodecode`)."""
    if os.environ.get("LABSTREAM_CDC_SPEEDUPS", "1") == "0":
        return None
    try:
        return importlib.import_module(module)
    except ImportError:
        return None
