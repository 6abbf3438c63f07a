"""Liveness, readiness and startup probes, and health that follows the plugins' dependencies."""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from pathlib import Path

import anyio
import anyio.lowlevel
import httpx
import pytest

from kernel import ConfigError, HealthCheck, Kernel, Plugin, Route, hookimpl
from kernel._health import chain_length, dependency_map
from kernel.health import HealthReport, begin_drain, draining, end_drain, probe_config
from kernel.testing import boot_kernel, make_kernel
from kernel.web import KernelApp

Check = Callable[[], Awaitable[object]]


def plugin(
    name: str,
    *checks: tuple[str, Check],
    requires: tuple[str, ...] = (),
    optional: tuple[str, ...] = (),
    critical: bool = True,
) -> type[Plugin]:
    """A plugin called ``name`` depending on others, contributing ``checks``."""

    class P(Plugin):
        @hookimpl
        def kernel_health_checks(self) -> list[HealthCheck]:
            return [HealthCheck(n, c, critical=critical) for n, c in checks]

    P.name, P.requires, P.optional = name, requires, optional
    return P


async def ok() -> None:
    return None


async def refused() -> None:
    raise ConnectionError("connection refused")


class Hang:
    """A check that would hang until its timeout; counts its calls."""

    def __init__(self) -> None:
        self.calls = 0

    async def __call__(self) -> None:
        self.calls += 1
        await anyio.sleep_forever()  # hung: only the probe's timeout ends it


def client(app: KernelApp) -> httpx.AsyncClient:
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t")


@pytest.mark.anyio
async def test_dependents_of_a_failed_plugin_are_degraded_without_running_their_checks() -> None:
    hang = Hang()
    plugins = (
        plugin("store", ("store.ping", refused)),
        plugin("cache", ("cache.ping", hang), requires=("store",)),
        plugin("bus", ("bus.ping", hang), optional=("store",)),
        plugin("jobs", ("jobs.ping", hang), requires=("bus",)),  # through bus: store is the root
        plugin("other", ("other.ping", ok)),
    )
    async with boot_kernel(*plugins, settings={"health_timeout": 30}, entry_points=False) as k:
        t0 = time.perf_counter()
        report = await k.health()
        elapsed = time.perf_counter() - t0
        boot_order = k.load_order
    assert hang.calls == 0  # no dependent timed out on its own
    assert elapsed < 5  # not one health_timeout (30 s): the dependents were skipped at once
    by_name = {c.name: c for c in report.checks}
    assert by_name["store.ping"].state == "fail"
    for name in ("cache.ping", "bus.ping", "jobs.ping"):
        assert by_name[name].state == "degraded"
        assert by_name[name].because == ("store",)
        assert by_name[name].error == "degraded because store is down"
    assert by_name["other.ping"].ok
    assert report.status == "fail"  # store's own critical check failed
    tree = report.tree()
    assert list(tree) == boot_order  # every plugin, in boot order
    assert tree["store"]["status"] == "fail"
    assert tree["jobs"] == {
        "status": "degraded",
        "depends_on": ["bus"],
        "because": ["store"],
        "reason": "degraded because store is down",
        "checks": {
            "jobs.ping": {
                "status": "degraded",
                "critical": True,
                "duration_ms": 0.0,
                "because": ["store"],
                "reason": "degraded because store is down",
            }
        },
    }
    assert "connection refused" not in str(tree)  # error text stays out of the public form
    assert "connection refused" in str(report.tree(include_errors=True))


@pytest.mark.anyio
async def test_a_dependency_check_runs_first_and_a_plugin_without_checks_passes_it_on() -> None:
    order: list[str] = []

    def record(name: str) -> Check:
        async def check() -> None:  # yields midway: a check run beside it would start in between
            order.append(f"{name} started")
            for _ in range(5):
                await anyio.lowlevel.checkpoint()
            order.append(f"{name} ended")

        return check

    plugins = (
        plugin("store", ("store.ping", record("store"))),
        plugin("middle", requires=("store",)),  # no checks of its own
        plugin("top", ("top.ping", record("top")), requires=("middle",)),
    )
    async with boot_kernel(*plugins, entry_points=False) as k:
        report = await k.health()
    assert order == ["store started", "store ended", "top started", "top ended"]
    assert report.status == "ok"
    assert report.depends == {"store": (), "middle": ("store",), "top": ("middle",)}

    down = (plugin("store", ("store.ping", refused)), *plugins[1:])
    async with boot_kernel(*down, entry_points=False) as k:
        report = await k.health()
    assert {c.name: c.because for c in report.checks} == {"store.ping": (), "top.ping": ("store",)}
    assert report.tree()["middle"]["reason"] == "degraded because store is down"


@pytest.mark.anyio
async def test_a_non_critical_failure_degrades_its_plugin_but_dependents_still_run() -> None:
    ran: list[str] = []

    async def cache_ping() -> None:
        ran.append("cache.ping")

    plugins = (
        plugin("store", ("store.ping", ok)),
        plugin("store.extra", ("store.sentinels", refused), critical=False),
        plugin("cache", ("cache.ping", cache_ping), requires=("store", "store.extra")),
    )
    async with boot_kernel(*plugins, entry_points=False) as k:
        report = await k.health()
        assert ran == ["cache.ping"]  # a non-critical failure is not "down": dependents are checked
        async with client(KernelApp(k)) as c:
            ready = await c.get("/health/ready")
    assert report.status == "degraded" and report.http_status == 200
    assert ready.status_code == 200
    tree = ready.json()["plugins"]
    assert tree["store.extra"]["status"] == "degraded"
    assert tree["cache"]["status"] == "ok" and "because" not in tree["cache"]


@pytest.mark.anyio
async def test_a_skipped_check_degrades_and_only_the_root_decides_readiness() -> None:
    plugins = (
        plugin("store", ("store.ping", refused)),
        plugin("cache", ("cache.ping", ok), requires=("store",)),
    )
    async with boot_kernel(*plugins, entry_points=False) as k, client(KernelApp(k)) as c:
        ready = await c.get("/health/ready")
        health = await c.get("/health")
    assert ready.status_code == 503  # store's critical check failed
    assert ready.json()["plugins"]["cache"]["reason"] == "degraded because store is down"
    assert health.status_code == 503
    assert health.json()["checks"]["cache.ping"] == {
        "status": "degraded",
        "critical": True,
        "duration_ms": 0.0,
        "because": ["store"],
        "reason": "degraded because store is down",
    }


@pytest.mark.anyio
async def test_readiness_fails_on_a_critical_check_while_liveness_never_checks() -> None:
    hang = Hang()
    plugins = (plugin("store", ("store.ping", refused)), plugin("slow", ("slow.ping", hang)))
    async with (
        boot_kernel(*plugins, settings={"health_timeout": 0.2}, entry_points=False) as k,
        client(KernelApp(k)) as c,
    ):
        live = await c.get("/health/live")
        assert hang.calls == 0  # liveness ran no check
        ready = await c.get("/health/ready")
        startup = await c.get("/health/startup")
    assert (live.status_code, live.json()) == (200, {"status": "alive"})
    assert ready.status_code == 503
    body = ready.json()
    assert body["status"] == "fail"
    assert body["plugins"]["store"]["checks"]["store.ping"]["status"] == "fail"
    assert body["plugins"]["slow"]["checks"]["slow.ping"]["status"] == "timeout"
    assert "refused" not in ready.text
    assert ready.headers["cache-control"] == "no-store"
    assert (startup.status_code, startup.json()) == (200, {"status": "started"})


@pytest.mark.anyio
async def test_startup_and_readiness_are_503_until_boot_ends_and_after_it_stopped() -> None:
    k = make_kernel(plugin("store", ("store.ping", ok)), entry_points=False)
    app = KernelApp(k)
    async with client(app) as c:
        before = [(await c.get(p)).status_code for p in ("/health/startup", "/health/ready", "/health/live")]
        async with k:
            during = [(await c.get(p)).status_code for p in ("/health/startup", "/health/ready")]
        after = (await c.get("/health/startup")).status_code
    assert before == [503, 503, 200]
    assert during == [200, 200]
    assert after == 503


@pytest.mark.anyio
async def test_readiness_is_503_while_draining_and_liveness_stays_200() -> None:
    hang = Hang()
    async with (
        boot_kernel(plugin("slow", ("slow.ping", hang)), entry_points=False) as k,
        client(KernelApp(k)) as c,
    ):
        assert not draining()
        begin_drain()
        try:
            ready = await c.get("/health/ready")
            live = await c.get("/health/live")
        finally:
            end_drain()
    assert (ready.status_code, ready.json()) == (503, {"status": "draining"})
    assert hang.calls == 0  # the drain answer waits on no check
    assert live.status_code == 200


@pytest.mark.anyio
async def test_probes_follow_a_custom_health_path_and_a_plugin_route_claiming_one_fails_loudly() -> None:
    async with (
        boot_kernel(plugin("store", ("store.ping", ok)), entry_points=False) as k,
        client(KernelApp(k, health_path="/_/health")) as c,
    ):
        assert (await c.get("/_/health/live")).status_code == 200
        assert (await c.get("/_/health/ready")).status_code == 200

    class Claims(Plugin):
        name = "claims"

        @hookimpl
        def kernel_routes(self) -> list[Route]:
            return [Route("/health/ready", KernelApp(k))]

    async with boot_kernel(Claims, entry_points=False) as claimed:
        with pytest.raises(ValueError, match="two routes claim '/health/ready'"):
            _ = KernelApp(claimed).routes


def test_drain_settings_are_validated_naming_the_key() -> None:
    with pytest.raises(ConfigError) as caught:
        Kernel.from_dict({"kernel": {"drain_delay": 20, "drain_timeout": 10}}, entry_points=False)
    assert caught.value.errors == [
        "kernel.drain_delay: must be less than drain_timeout (10), the deadline it is part of, got 20.0"
    ]
    with pytest.raises(ConfigError) as caught:
        Kernel.from_dict({"kernel": {"drain_timeout": 0, "drain_delay": -1}}, entry_points=False)
    assert caught.value.errors == [
        "kernel.drain_delay: must be >= 0: -1.0",
        "kernel.drain_timeout: must be > 0: 0.0",
    ]


def test_probe_config_matches_the_drain_settings() -> None:
    k = Kernel.from_dict({"kernel": {"drain_delay": 10, "drain_timeout": 25}}, entry_points=False)
    yaml = probe_config(k.settings, port=8080)
    assert "terminationGracePeriodSeconds: 55" in yaml  # drain_timeout 25 + shutdown_timeout 30
    assert "httpGet: {path: /health/live, port: 8080}" in yaml
    assert "httpGet: {path: /health/ready, port: 8080}" in yaml
    assert "httpGet: {path: /health/startup, port: 8080}" in yaml
    assert "warning" not in yaml
    # readiness fails once (failureThreshold 1) within one period (5 s) <= drain_delay
    ready = yaml[yaml.index("readinessProbe:") :]
    assert "periodSeconds: 5" in ready and "failureThreshold: 1" in ready
    assert "timeoutSeconds: 6" in ready  # health_timeout 5 + 1

    short = probe_config(Kernel.from_dict({}, entry_points=False).settings)
    assert "# warning: drain_delay (0s) is shorter than the readiness period (5s)" in short


def test_kernel_health_probes_prints_the_yaml_without_booting(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from kernel._cli import main

    config = tmp_path / "kernel.toml"
    config.write_text("[kernel]\ndrain_delay = 5\ndrain_timeout = 20\n")
    assert main(["--config", str(config), "health", "--probes", "--port", "9000"]) == 0
    out = capsys.readouterr().out
    assert out == probe_config(Kernel.from_config(config, entry_points=False).settings, port=9000)
    assert "terminationGracePeriodSeconds: 50" in out


@pytest.mark.anyio
async def test_kernel_health_prints_the_tree(capsys: pytest.CaptureFixture[str]) -> None:
    from kernel._cli import _print_health_tree

    plugins = (
        plugin("store", ("store.ping", refused)),
        plugin("cache", ("cache.ping", ok), requires=("store",)),
    )
    async with boot_kernel(*plugins, entry_points=False) as k:
        report: HealthReport = await k.health()
    _print_health_tree(report)
    lines = capsys.readouterr().out.splitlines()
    assert lines[0] == "  store: fail"
    assert lines[1].split()[:2] == ["store.ping", "FAIL"]
    assert lines[1].endswith("ConnectionError: connection refused")
    assert lines[2] == "  cache (depends on store): degraded because store is down"
    assert lines[3].split()[:2] == ["cache.ping", "degraded"]


def test_the_readiness_timeout_covers_the_longest_dependency_chain() -> None:
    depends = dependency_map(
        [("redis", ()), ("metrics", ()), ("queue", ("redis", "metrics")), ("x", ("queue",))]
    )
    assert chain_length(depends) == 3
    assert chain_length({}) == 1
    settings = Kernel.from_dict({}, entry_points=False).settings
    ready = probe_config(settings, chain=2)
    ready = ready[ready.index("readinessProbe:") :]
    assert "timeoutSeconds: 11  # 2 x health_timeout (longest dependency chain) + 1" in ready
