"""The lab simulator: realistic front-end activity written into the lab database.

`model.LabModel` decides what happens next from a seeded random generator (pure,
tested without a database); `writer.LabWriter` turns each decided action into one
ordinary transaction that also carries the action's trace context; `runner`
paces actions at a fixed rate and counts them; `cli.simulate` is the command.
"""

from labstream.simulator.model import LabModel, SimulationConfig

__all__ = ["LabModel", "SimulationConfig"]
