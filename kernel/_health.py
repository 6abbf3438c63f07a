"""Aggregate plugin health checks, each bounded by a timeout."""

from __future__ import annotations

import logging
import os
import resource
import sys
import time
from collections.abc import Sequence
from typing import Any, Literal

import anyio
import attrs

from ._plugin import HealthCheck

log = logging.getLogger("kernel.health")

Status = Literal["ok", "degraded", "fail"]


@attrs.frozen
class CheckResult:
    """The outcome of one check. ``error`` is for operators' logs, never for HTTP bodies."""

    name: str
    plugin: str
    ok: bool
    critical: bool
    duration_ms: float
    timed_out: bool = False
    error: str | None = None


@attrs.frozen
class HealthReport:
    """Every check's result; ``fail`` if a critical check failed, ``degraded`` for others."""

    status: Status
    checks: tuple[CheckResult, ...]
    uptime_s: float

    @property
    def http_status(self) -> int:
        """200 unless a critical check failed (503)."""
        return 503 if self.status == "fail" else 200

    def to_dict(self, *, include_errors: bool = False) -> dict[str, Any]:
        """JSON-ready form; errors are left out unless asked for."""
        checks: dict[str, Any] = {}
        for c in self.checks:
            entry: dict[str, Any] = {
                "status": "ok" if c.ok else ("timeout" if c.timed_out else "fail"),
                "critical": c.critical,
                "duration_ms": round(c.duration_ms, 2),
            }
            if include_errors and c.error:
                entry["error"] = c.error
            checks[c.name] = entry
        return {
            "status": self.status,
            "uptime_s": round(self.uptime_s, 3),
            "memory": memory_usage(),
            "checks": checks,
        }


def memory_usage() -> dict[str, int]:
    """Resident and peak memory of this process in bytes."""
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    peak_bytes = peak if sys.platform == "darwin" else peak * 1024
    rss = peak_bytes
    try:
        with open("/proc/self/statm", "rb") as fh:
            rss = int(fh.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, IndexError):
        pass
    return {"rss_bytes": rss, "peak_rss_bytes": peak_bytes}


async def run_checks(
    checks: Sequence[tuple[str, HealthCheck]], default_timeout: float, started_at: float
) -> HealthReport:
    """Run all ``(plugin, check)`` pairs concurrently; a hung check times out, never hangs."""
    results: list[CheckResult] = []

    async def one(plugin: str, check: HealthCheck) -> None:
        timeout = check.timeout if check.timeout is not None else default_timeout
        t0 = time.perf_counter()
        ok, error, timed_out = False, None, False
        with anyio.move_on_after(timeout) as scope:
            try:
                ok = (await check.check()) is not False
                if not ok:
                    error = "check returned False"
            except Exception as exc:
                error = f"{type(exc).__name__}: {exc}"
        if scope.cancelled_caught:
            timed_out, ok, error = True, False, f"timed out after {timeout:g}s"
        duration = (time.perf_counter() - t0) * 1000
        if not ok:
            log.warning(
                "health check %s failed: %s", check.name, error,
                extra={"plugin": plugin, "check": check.name},
            )
        results.append(CheckResult(check.name, plugin, ok, check.critical, duration, timed_out, error))

    async with anyio.create_task_group() as tg:
        for plugin, check in checks:
            tg.start_soon(one, plugin, check)
    order = {c.name: i for i, (_, c) in enumerate(checks)}
    results.sort(key=lambda r: order[r.name])
    status: Status = "ok"
    if any(not r.ok and r.critical for r in results):
        status = "fail"
    elif any(not r.ok for r in results):
        status = "degraded"
    return HealthReport(status, tuple(results), time.monotonic() - started_at)
