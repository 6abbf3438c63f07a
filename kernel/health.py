"""What :meth:`kernel.Kernel.health` returns: one report of every plugin's checks."""

from ._health import CheckResult, HealthReport

__all__ = ["CheckResult", "HealthReport"]
