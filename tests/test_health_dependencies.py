"""Health follows the real plugins' dependencies: Redis stops, and its dependents say so at once."""

from __future__ import annotations

import os
import signal
import time

import pytest

pytest.importorskip("kernel_redis")
for _module in ("kernel_cache", "kernel_eventbus", "kernel_queue"):
    pytest.importorskip(_module)

from kernel_redis.testing import private_redis_server  # noqa: E402

from kernel import Kernel  # noqa: E402
from kernel.testing import boot_kernel, wait_until  # noqa: E402


@pytest.mark.anyio
@pytest.mark.parametrize("anyio_backend", ["asyncio"])  # redis-py and SAQ are asyncio-only
@pytest.mark.parametrize("outage", ["stopped", "hung"])
async def test_when_redis_is_down_its_dependents_report_it_instead_of_timing_out(outage: str) -> None:
    """``stopped``: connections are refused; ``hung`` (SIGSTOP): they are accepted, never answered."""
    with private_redis_server() as server:
        config = {
            "redis": {"url": server.url},
            "cache": {"backend": "redis"},
            "eventbus": {"adapter": "redis"},
        }
        plugins = ("redis", "cache", "eventbus", "queue")
        async with boot_kernel(*plugins, config=config, settings={"health_timeout": 2}) as k:
            healthy = await k.health()
            assert healthy.status == "ok", healthy.to_dict(include_errors=True)
            ran = {c.name for c in healthy.checks}
            assert {"redis", "cache", "eventbus"} <= ran

            pid = server.pid
            assert pid is not None
            if outage == "stopped":
                server.stop()
            else:
                os.kill(pid, signal.SIGSTOP)
            try:
                t0 = time.perf_counter()
                report = await k.health()
                elapsed = time.perf_counter() - t0
                tree = report.tree()
            finally:  # the plugins' teardown then talks to a live server again
                if outage == "stopped":
                    server.start()
                else:
                    os.kill(pid, signal.SIGCONT)
            await wait_until(lambda: _ok(k), timeout=30, interval=0.1, what="health ok after the restart")

    by_name = {c.name: c for c in report.checks}
    assert by_name["redis"].state == ("fail" if outage == "stopped" else "timeout")
    assert report.status == "fail" and report.http_status == 503
    for name in ("cache", "eventbus"):
        assert by_name[name].state == "degraded", report.to_dict(include_errors=True)
        assert by_name[name].error == "degraded because redis is down"
        assert by_name[name].duration_ms == 0.0  # never run: no second wait on a dead server
    for plugin in ("cache", "eventbus", "queue"):
        assert tree[plugin]["reason"] == "degraded because redis is down", tree[plugin]
    assert tree["queue"]["depends_on"] == ["redis", "eventbus"]  # requires, then the optional it has
    # One check's worth of time (Redis's own), not one per dependent.
    assert elapsed < by_name["redis"].duration_ms / 1000 + 1.0, (elapsed, by_name["redis"].duration_ms)


async def _ok(kernel: Kernel) -> bool:
    return (await kernel.health()).status == "ok"
