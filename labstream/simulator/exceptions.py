"""Errors of the simulator."""

from __future__ import annotations

from base.errors import LabstreamError


class SimulatorError(LabstreamError):
    """Root of the simulator's errors."""


class ActionFailed(SimulatorError):
    """One simulated action's transaction was rolled back; the run goes on."""
