"""The error tree of the load generator.

    BenchError
    ├── PlanError       the options make no runnable plan (a rate of zero, no target)
    ├── SpawnError      a bank or ceiling process the bench started did not come up
    ├── TargetError     a target did not accept the bench's connections in time
    └── PlotError       a plot was asked for and cannot be drawn (matplotlib missing)

Failures of the parties' setup keep their own types: ``clients.errors.ClientError``
(``TransportError``, ``RegistrationError``) and setcore's ``ProtocolError`` /
``PeerError``; the command line reports them. Failures of single requests during the
load are never raised: they are counted (by gRPC status or SET error code) in the report.
"""

from __future__ import annotations


class BenchError(Exception):
    """Base of every error the load generator raises."""


class PlanError(BenchError):
    """The options make no runnable plan."""


class SpawnError(BenchError):
    """A process the bench started did not come up (its log's last lines attached)."""


class TargetError(BenchError):
    """A target did not accept the bench's connections in time."""


class PlotError(BenchError):
    """The plot cannot be drawn."""
