"""Health of a kernel: the report of every plugin's checks, and this process's drain state.

- :class:`HealthReport`, :class:`CheckResult`: what :meth:`kernel.Kernel.health` returns (checks
  follow the plugins' dependencies: a plugin whose dependency is down is reported degraded).
- :func:`begin_drain`, :func:`draining`, :func:`end_drain`: readiness (``/health/ready``) answers
  503 once the process is draining (``kernel serve`` begins it at SIGTERM).
- :func:`probe_config`: the Kubernetes probes matching a kernel's settings (``kernel health --probes``).
"""

from ._health import CheckResult, HealthReport, begin_drain, draining, end_drain, probe_config

__all__ = ["CheckResult", "HealthReport", "begin_drain", "draining", "end_drain", "probe_config"]
