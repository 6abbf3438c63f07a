"""Aggregate plugin health checks, each bounded by a timeout."""

from __future__ import annotations

import logging
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


def _proc_status_bytes(*fields: str) -> dict[str, int] | None:
    """``VmRSS``-style fields of ``/proc/self/status`` in bytes (one snapshot), or None off Linux."""
    found: dict[str, int] = {}
    try:
        with open("/proc/self/status", "rb") as fh:
            for line in fh:
                key, _, value = line.decode("ascii", "replace").partition(":")
                if key in fields:
                    number, _, unit = value.strip().partition(" ")
                    found[key] = int(number) * (1024 if unit.strip().lower() == "kb" else 1)
    except (OSError, ValueError):
        return None
    return found if len(found) == len(fields) else None


def memory_usage() -> dict[str, int]:
    """Resident and peak (high-water mark) memory of this process in bytes; peak >= resident.

    On Linux both come from one read of ``/proc/self/status`` (``VmRSS``, ``VmHWM``):
    ``ru_maxrss`` and ``/proc/self/statm`` are sampled differently and can disagree by a few pages.
    Elsewhere ``ru_maxrss`` is used for both (bytes on macOS, kilobytes on the BSDs); where
    neither exists (Windows) both are 0.
    """
    status = _proc_status_bytes("VmRSS", "VmHWM")
    if status is not None:
        rss, peak = status["VmRSS"], status["VmHWM"]
    else:
        try:
            import resource  # POSIX only: imported here so that ``import kernel`` works on Windows
        except ImportError:
            return {"rss_bytes": 0, "peak_rss_bytes": 0}
        maxrss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        peak = maxrss if sys.platform == "darwin" else maxrss * 1024
        rss = peak
    return {"rss_bytes": rss, "peak_rss_bytes": max(peak, rss)}


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
                "health check %s failed: %s",
                check.name,
                error,
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
