"""Aggregate plugin health checks, each bounded by a timeout, each after its plugin's dependencies.

A plugin's checks run once the checks of the plugins it requires (or optionally uses, when
enabled) are done. A plugin is down when one of its critical checks failed (a non-critical one
failing only degrades it); the checks of a plugin depending on one that is down are not run but
reported as degraded because of it, instead of each timing out on its own.
"""

from __future__ import annotations

import logging
import math
import sys
import time
from collections.abc import Iterable, Mapping, Sequence
from typing import TYPE_CHECKING, Any, Literal

import anyio
import attrs

from ._plugin import HealthCheck

if TYPE_CHECKING:
    from ._config import KernelSettings

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
    because: tuple[str, ...] = ()
    """The dependencies (plugin names) that were down, when this check was not run because of them."""

    @property
    def skipped(self) -> bool:
        """Not run: a plugin this check's plugin depends on was down (see ``because``)."""
        return bool(self.because)

    @property
    def state(self) -> str:
        """``ok``, ``fail``, ``timeout`` or ``degraded`` (not run because a dependency is down)."""
        if self.ok:
            return "ok"
        if self.because:
            return "degraded"
        return "timeout" if self.timed_out else "fail"


@attrs.frozen
class HealthReport:
    """Every check's result; ``fail`` if a critical check failed, ``degraded`` for others."""

    status: Status
    checks: tuple[CheckResult, ...]
    uptime_s: float
    depends: Mapping[str, tuple[str, ...]] = attrs.field(factory=dict)
    """Each plugin (in boot order) and the enabled plugins its health follows."""
    because: Mapping[str, tuple[str, ...]] = attrs.field(factory=dict)
    """The plugins whose checks were not run, each with the plugins down that it depends on."""

    @property
    def http_status(self) -> int:
        """200 unless a critical check failed (503)."""
        return 503 if self.status == "fail" else 200

    def to_dict(self, *, include_errors: bool = False) -> dict[str, Any]:
        """JSON-ready form; errors are left out unless asked for."""
        checks: dict[str, Any] = {}
        for c in self.checks:
            checks[c.name] = _check_entry(c, include_errors)
        return {
            "status": self.status,
            "uptime_s": round(self.uptime_s, 3),
            "memory": memory_usage(),
            "checks": checks,
        }

    def plugin_status(self, plugin: str) -> Status:
        """``fail`` if one of the plugin's own critical checks failed, ``degraded`` if another failed or
        its checks were not run because a dependency is down, ``ok`` otherwise."""
        own = [c for c in self.checks if c.plugin == plugin]
        if any(not c.ok and c.critical and not c.skipped for c in own):
            return "fail"
        return "degraded" if plugin in self.because or any(not c.ok for c in own) else "ok"

    def tree(self, *, include_errors: bool = False) -> dict[str, Any]:
        """The checks by plugin, in boot order, each with what it depends on and why it is degraded.

        ``{"redis": {"status": "fail", "depends_on": [], "checks": {...}},
        "cache": {"status": "degraded", "depends_on": ["redis"], "because": ["redis"], ...}}``
        """
        plugins = list(self.depends) + [c.plugin for c in self.checks if c.plugin not in self.depends]
        out: dict[str, Any] = {}
        for plugin in dict.fromkeys(plugins):
            own = [c for c in self.checks if c.plugin == plugin]
            node: dict[str, Any] = {
                "status": self.plugin_status(plugin),
                "depends_on": list(self.depends.get(plugin, ())),
            }
            because = list(self.because.get(plugin, ()))
            if because:
                node["because"] = because
                node["reason"] = degraded_reason(because)
            node["checks"] = {c.name: _check_entry(c, include_errors) for c in own}
            out[plugin] = node
        return out


def degraded_reason(down: Iterable[str]) -> str:
    """``degraded because redis is down`` (``redis and mongo are down`` for several)."""
    names = sorted(down)
    verb = "is" if len(names) == 1 else "are"
    listed = names[0] if len(names) == 1 else ", ".join(names[:-1]) + " and " + names[-1]
    return f"degraded because {listed} {verb} down"


def _check_entry(c: CheckResult, include_errors: bool) -> dict[str, Any]:
    entry: dict[str, Any] = {
        "status": c.state,
        "critical": c.critical,
        "duration_ms": round(c.duration_ms, 2),
    }
    if c.because:
        entry["because"] = list(c.because)
    if c.error and (include_errors or c.because):  # the reason a check was skipped is not an error text
        entry["error" if not c.because else "reason"] = c.error
    return entry


def dependency_map(plugins: Iterable[tuple[str, Iterable[str]]]) -> dict[str, tuple[str, ...]]:
    """``{plugin: enabled plugins it requires or optionally uses}`` from ``(name, deps)`` in boot order.

    Only plugins earlier in boot order count (boot order follows the declared graph), so
    the map has no cycle and a plugin's checks never wait on a later one.
    """
    out: dict[str, tuple[str, ...]] = {}
    for name, deps in plugins:
        out[name] = tuple(d for d in dict.fromkeys(deps) if d in out)
    return out


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


async def _run_one(plugin: str, check: HealthCheck, default_timeout: float) -> CheckResult:
    """Run one check within its timeout; log a failure."""
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
    return CheckResult(check.name, plugin, ok, check.critical, duration, timed_out, error)


async def run_checks(
    checks: Sequence[tuple[str, HealthCheck]],
    default_timeout: float,
    started_at: float,
    depends: Mapping[str, Sequence[str]] | None = None,
) -> HealthReport:
    """Run all ``(plugin, check)`` pairs; a hung check times out, never hangs.

    Checks run concurrently, except that a plugin's checks wait for those of the plugins it
    depends on (``depends``: plugin -> plugins, see :func:`dependency_map`). When one of those
    is down (a critical check failed, or it was itself skipped), the plugin's checks are not run: each is
    reported ``degraded because <plugin> is down`` at once, naming the plugins at the root.
    """
    graph = {p: tuple(d) for p, d in (depends or {}).items()}
    by_plugin: dict[str, list[HealthCheck]] = {}
    for plugin, check in checks:
        by_plugin.setdefault(plugin, []).append(check)
        graph.setdefault(plugin, ())
    done = {p: anyio.Event() for p in graph}
    down: dict[str, frozenset[str]] = {}  # plugin -> the root plugins that make it unusable
    skipped: dict[str, tuple[str, ...]] = {}
    results: list[CheckResult] = []

    async def plugin_checks(plugin: str) -> None:
        try:
            deps = [d for d in graph[plugin] if d in done]
            for dep in deps:
                await done[dep].wait()
            roots = frozenset(r for dep in deps for r in down.get(dep, ()))
            own = by_plugin.get(plugin, [])
            if roots:
                reason = degraded_reason(roots)
                because = skipped[plugin] = tuple(sorted(roots))
                results.extend(
                    CheckResult(c.name, plugin, False, c.critical, 0.0, error=reason, because=because)
                    for c in own
                )
                down[plugin] = roots
                return
            mine: list[CheckResult] = []

            async def one(check: HealthCheck) -> None:
                mine.append(await _run_one(plugin, check, default_timeout))

            async with anyio.create_task_group() as tg:
                for check in own:
                    tg.start_soon(one, check)
            results.extend(mine)
            if any(not r.ok and r.critical for r in mine):  # a non-critical failure only degrades
                down[plugin] = frozenset({plugin})
        finally:
            done[plugin].set()

    async with anyio.create_task_group() as tg:
        for plugin in graph:
            tg.start_soon(plugin_checks, plugin)
    order = {c.name: i for i, (_, c) in enumerate(checks)}
    results.sort(key=lambda r: order[r.name])
    status: Status = "ok"
    if any(not r.ok and r.critical and not r.skipped for r in results):
        status = "fail"
    elif any(not r.ok for r in results):
        status = "degraded"
    return HealthReport(status, tuple(results), time.monotonic() - started_at, graph, skipped)


class _Drain:
    """Whether this process is draining: it got SIGTERM and is about to stop serving."""

    since: float | None = None


_DRAIN = _Drain()


def begin_drain() -> None:
    """Mark this process as draining: readiness answers 503 from now on (liveness stays 200).

    ``kernel serve`` calls it when SIGTERM or SIGINT arrives; a host app served some other way
    calls it from its own signal handler. Safe to call from a signal handler (it sets one attribute).
    """
    if _DRAIN.since is None:
        _DRAIN.since = time.monotonic()


def end_drain() -> None:
    """Undo :func:`begin_drain` (for a process that serves again, and for tests)."""
    _DRAIN.since = None


def draining() -> bool:
    """True once :func:`begin_drain` was called in this process."""
    return _DRAIN.since is not None


READINESS_PERIOD = 5
"""Seconds between readiness probes in :func:`probe_config`."""


def _secs(value: float) -> int:
    return max(1, math.ceil(value))


def chain_length(depends: Mapping[str, Sequence[str]]) -> int:
    """The most plugins on one dependency path of ``depends`` (their checks run one after another)."""
    length: dict[str, int] = {}
    for plugin, deps in depends.items():  # boot order: dependencies come first
        length[plugin] = 1 + max((length.get(d, 0) for d in deps), default=0)
    return max(length.values(), default=1)


def probe_config(
    settings: KernelSettings, *, port: int = 4000, health_path: str = "/health", chain: int = 1
) -> str:
    """The Kubernetes probes (YAML) matching ``settings``, for a pod running ``kernel serve``.

    - ``startupProbe`` on ``/health/startup``: liveness and readiness wait until boot ends;
    - ``livenessProbe`` on ``/health/live``: never checks dependencies (no restart loop when
      Redis is down);
    - ``readinessProbe`` on ``/health/ready``: its timeout covers ``health_timeout`` for each of
      the ``chain`` plugins on the longest dependency path (see :func:`chain_length`); it fails
      once within ``drain_delay`` after SIGTERM, so the pod leaves the endpoints before
      ``kernel serve`` stops accepting;
    - ``terminationGracePeriodSeconds`` covers ``drain_timeout`` plus ``shutdown_timeout``
      (the plugins' teardown after the drain).
    """
    period = (
        READINESS_PERIOD if settings.drain_delay <= 0 else min(READINESS_PERIOD, _secs(settings.drain_delay))
    )
    grace = _secs(settings.drain_timeout + settings.shutdown_timeout)
    lines = [
        f"# Kubernetes probes for kernel serve on port {port}: [kernel] drain_delay = "
        f"{settings.drain_delay:g}, drain_timeout = {settings.drain_timeout:g}, "
        f"shutdown_timeout = {settings.shutdown_timeout:g}, health_timeout = {settings.health_timeout:g}",
    ]
    if settings.drain_delay < period:
        lines.append(
            f"# warning: drain_delay ({settings.drain_delay:g}s) is shorter than the readiness period "
            f"({period}s): set [kernel] drain_delay = {period} so the 503 is seen before serving stops"
        )
    lines += [
        "spec:",
        f"  terminationGracePeriodSeconds: {grace}  # drain_timeout + shutdown_timeout",
        "  containers:",
        "    - name: web",
        f"      ports: [{{containerPort: {port}}}]",
        "      startupProbe:",
        f"        httpGet: {{path: {health_path}/startup, port: {port}}}",
        "        periodSeconds: 2",
        "        failureThreshold: 60  # boot may take 2 minutes",
        "      livenessProbe:",
        f"        httpGet: {{path: {health_path}/live, port: {port}}}",
        "        periodSeconds: 10",
        "        timeoutSeconds: 2",
        "        failureThreshold: 3",
        "      readinessProbe:",
        f"        httpGet: {{path: {health_path}/ready, port: {port}}}",
        f"        periodSeconds: {period}",
        f"        timeoutSeconds: {_secs(settings.health_timeout * chain) + 1}  "
        f"# {chain} x health_timeout (longest dependency chain) + 1",
        "        failureThreshold: 1",
    ]
    return "\n".join(lines) + "\n"
