"""Health aggregation: concurrent checks, each bounded by a timeout."""

from __future__ import annotations

import time

import anyio
import pytest

from kernel import HealthCheck, Plugin, hookimpl
from kernel.testing import boot_kernel
from kernel.web import KernelApp


def checks_plugin(*checks: HealthCheck) -> type[Plugin]:
    class P(Plugin):
        name = "probe"

        @hookimpl
        def kernel_health_checks(self) -> list[HealthCheck]:
            return list(checks)

    return P


async def ok() -> None:
    return None


async def hang() -> None:
    await anyio.sleep(60)


async def boom() -> None:
    raise ConnectionError("redis://:hunter2@db:6379 refused")


async def false() -> bool:
    return False


@pytest.mark.anyio
async def test_a_hung_check_times_out_instead_of_hanging_health() -> None:
    plugin = checks_plugin(HealthCheck("db", hang), HealthCheck("cache", ok))
    async with boot_kernel(plugin, settings={"health_timeout": 0.2}, entry_points=False) as k:
        t0 = time.perf_counter()
        report = await k.health()
        elapsed = time.perf_counter() - t0
    assert elapsed < 2
    assert report.status == "fail"
    assert report.http_status == 503
    db, cache = report.checks
    assert (db.name, db.ok, db.timed_out) == ("db", False, True)
    assert cache.ok


@pytest.mark.anyio
async def test_checks_run_concurrently() -> None:
    running, peak = 0, 0

    async def slowish() -> None:
        nonlocal running, peak
        running += 1
        peak = max(peak, running)
        await anyio.sleep(0.3)
        running -= 1

    plugin = checks_plugin(*(HealthCheck(f"c{i}", slowish) for i in range(5)))
    async with boot_kernel(plugin, entry_points=False) as k:
        report = await k.health()
    assert peak == 5  # all five at once (a count, not a wall-clock bound a loaded CI machine can miss)
    assert report.status == "ok"


@pytest.mark.anyio
async def test_non_critical_failures_degrade_and_critical_ones_fail() -> None:
    plugin = checks_plugin(HealthCheck("optional", false, critical=False), HealthCheck("main", ok))
    async with boot_kernel(plugin, entry_points=False) as k:
        report = await k.health()
    assert report.status == "degraded"
    assert report.http_status == 200


@pytest.mark.anyio
async def test_error_text_stays_out_of_the_public_form() -> None:
    plugin = checks_plugin(HealthCheck("db", boom), HealthCheck("per-check-timeout", hang, timeout=0.05))
    async with boot_kernel(plugin, entry_points=False) as k:
        report = await k.health()
    public = report.to_dict()
    assert "hunter2" not in str(public)
    assert public["checks"]["db"]["status"] == "fail"
    assert public["checks"]["per-check-timeout"]["status"] == "timeout"
    assert public["memory"]["rss_bytes"] > 0
    private = report.to_dict(include_errors=True)
    assert "ConnectionError" in private["checks"]["db"]["error"]


@pytest.mark.anyio
async def test_health_endpoint_serves_the_report_without_error_text() -> None:
    import httpx

    plugin = checks_plugin(HealthCheck("db", boom))
    async with boot_kernel(plugin, entry_points=False) as k:
        transport = httpx.ASGITransport(app=KernelApp(k))
        async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
            resp = await client.get("/health")
            missing = await client.get("/nope")
            wrong = await client.post("/health")
    assert resp.status_code == 503
    assert resp.json()["checks"]["db"]["status"] == "fail"
    assert "hunter2" not in resp.text and "ConnectionError" not in resp.text
    assert missing.status_code == 404
    assert wrong.status_code == 405
    assert wrong.headers["allow"] == "GET"


@pytest.mark.anyio
async def test_duplicate_check_names_fail_the_boot() -> None:
    from kernel import BootError

    plugin = checks_plugin(HealthCheck("x", ok), HealthCheck("x", ok))
    with pytest.raises(BootError, match="duplicate health check names: x"):
        async with boot_kernel(plugin, entry_points=False):
            pass


def test_peak_rss_is_never_below_the_current_rss() -> None:
    """Both numbers come from one consistent source, in bytes: peak >= current, in a fresh process too."""
    import json
    import subprocess
    import sys

    from kernel._health import memory_usage

    probe = (
        "import json\n"
        "from kernel._health import memory_usage\n"
        "samples = [memory_usage()]\n"
        "held = bytearray(64 * 1024 * 1024)\n"  # zero-filled: every page resident now
        "samples.append(memory_usage())\n"
        "del held\n"
        "samples.append(memory_usage())\n"
        "print(json.dumps(samples))\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, check=True, timeout=60
    )
    fresh, holding, released = json.loads(out.stdout)
    for sample in (fresh, holding, released, memory_usage()):
        assert 0 < sample["rss_bytes"] <= sample["peak_rss_bytes"], sample
    assert holding["rss_bytes"] >= fresh["rss_bytes"] + 60 * 1024 * 1024  # bytes, not kB or pages
    # The kernel's RSS counters are approximate (per-CPU batches): allow a little slack across reads.
    assert released["peak_rss_bytes"] >= holding["rss_bytes"] - 4 * 1024 * 1024
