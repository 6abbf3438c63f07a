"""Helpers for tests of code that runs queue workers."""

from __future__ import annotations

from typing import Any

__all__ = ["FAST_TIMERS"]

FAST_TIMERS: dict[str, Any] = {
    "heartbeat_interval": 0.2,
    "stall_timeout": 1.0,
    "sweep_interval": 0.25,
    "schedule_interval": 0.05,
    "poll_interval": 0.2,
    "shutdown_grace": 5.0,
}
"""``[plugins.queue]`` timers short enough for tests: stalled jobs, scheduled jobs and new jobs are
noticed within a fraction of a second (the docs explain the production defaults). Copy it before
changing it: ``{**FAST_TIMERS, "poll_interval": 0.1}``."""
