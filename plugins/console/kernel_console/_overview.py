"""Overview: installed and enabled plugins, the dependency graph, the health tree, process identity."""

from __future__ import annotations

import os
import platform
import socket
import sys
from collections.abc import Mapping
from typing import Any

import kernel
from kernel import Kernel
from kernel.health import CheckResult, HealthReport

from ._graph import Node, dependency_svg
from ._html import Safe, badge, dl, h, join, scrub, table
from ._http import Page, Request


def kernel_of(scope: Mapping[str, Any]) -> Kernel | None:
    """The kernel the server booted (``kernel serve`` and ``lifespan_for`` put it in the lifespan state)."""
    state = scope.get("state")
    found = state.get("kernel") if isinstance(state, Mapping) else None
    return found if isinstance(found, Kernel) else None


def _duration(seconds: float) -> str:
    minutes, s = divmod(int(seconds), 60)
    hours, m = divmod(minutes, 60)
    days, hh = divmod(hours, 24)
    return f"{days}d {hh}h {m}m {s}s" if days else f"{hh}h {m}m {s}s"


def _plugins(k: Kernel) -> Safe:
    enabled = {lp.name: lp for lp in k.plugins}
    rows: list[list[object]] = []
    names = sorted(set(k.discovery.installed) | set(enabled))
    for name in names:
        info = k.discovery.installed.get(name)
        lp = enabled.get(name)
        version = lp.plugin.version if lp else (info.dist_version if info else "") or ""
        rows.append(
            [
                name,
                badge("enabled", "ok") if lp else badge("installed", "info"),
                version,
                (info.distribution if info else None) or "(in-process)",
                ", ".join(lp.plugin.requires) if lp else "",
                ", ".join(lp.plugin.optional) if lp else "",
                k.load_order.index(name) + 1 if lp else "",
            ]
        )
    return table(["plugin", "state", "version", "distribution", "requires", "optional", "boot #"], rows)


def _check_row(c: CheckResult) -> list[object]:
    state = (
        badge("ok", "ok")
        if c.ok
        else badge("timeout" if c.timed_out else "fail", "bad" if c.critical else "warn")
    )
    return [c.name, state, "yes" if c.critical else "no", f"{c.duration_ms:.1f} ms", scrub(c.error or "")]


def _health(report: HealthReport) -> Safe:
    by_plugin: dict[str, list[CheckResult]] = {}
    for c in report.checks:
        by_plugin.setdefault(c.plugin, []).append(c)
    kind = {"ok": "ok", "degraded": "warn", "fail": "bad"}[report.status]
    parts = [h("<p>kernel: {b}</p>", b=badge(report.status, kind))]
    for plugin, checks in sorted(by_plugin.items()):
        worst = (
            "ok"
            if all(c.ok for c in checks)
            else ("bad" if any(c.critical for c in checks if not c.ok) else "warn")
        )
        parts.append(h("<h3>{p} {b}</h3>", p=plugin, b=badge("ok" if worst == "ok" else "failing", worst)))
        parts.append(table(["check", "status", "critical", "took", "error"], [_check_row(c) for c in checks]))
    return join(parts)


async def overview(req: Request) -> Page:
    """The overview page."""
    k = kernel_of(req.scope)
    ident = [
        ("pid", os.getpid()),
        ("host", socket.gethostname()),
        ("python", f"{platform.python_implementation()} {sys.version.split()[0]}"),
        ("milo-kernel", kernel.__version__),
    ]
    if k is None:
        body = h(
            '{ident}<p class="empty">The kernel is not in this request\'s lifespan state: serve it with '
            "<code>kernel serve</code> or a host app using <code>kernel.web.lifespan_for</code> to see "
            "plugins and health here.</p>",
            ident=dl(ident),
        )
        return Page("Overview", body, "overview")
    report = await k.health()
    ident = [("environment", k.settings.env), ("uptime", _duration(report.uptime_s)), *ident]
    nodes = [
        Node(lp.name, lp.plugin.version, i + 1, tuple(lp.plugin.requires), tuple(lp.plugin.optional))
        for i, lp in enumerate(k.plugins)
    ]
    body = h(
        "{ident}<h2>Plugins</h2>{plugins}<h2>Dependencies and load order</h2>"
        "<p>Arrows point from a plugin to what it starts after (dashed: optional).</p>{svg}"
        "<h2>Health</h2>{health}",
        ident=dl(ident),
        plugins=_plugins(k),
        svg=dependency_svg(nodes),
        health=_health(report),
    )
    return Page("Overview", body, "overview")
