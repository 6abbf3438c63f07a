"""Plugin wiring: config, the sample processor, event bus and metrics integration, the CLI."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import anyio
import pytest
from kernel_queue import JobContext, QueueManager, notification_processor, register_sample_processors

from kernel import ConfigError, Kernel
from kernel.testing import boot_kernel, make_kernel, wait_until


def test_config_rejects_a_stall_timeout_too_close_to_the_heartbeat() -> None:
    with pytest.raises(ConfigError, match="stall_timeout"):
        make_kernel("redis", "queue", config={"queue": {"heartbeat_interval": 5.0, "stall_timeout": 6.0}})
    with pytest.raises(ConfigError, match=r"plugins\.queue\.nope: unknown key"):
        make_kernel("redis", "queue", config={"queue": {"nope": 1}})


@pytest.mark.anyio
async def test_bad_processor_hook_is_a_config_error(redis_url: str) -> None:
    with pytest.raises(Exception, match="cannot import 'no_such_module:register'") as info:
        async with boot_kernel(
            "redis",
            "queue",
            config={"redis": {"url": redis_url}, "queue": {"processors": ["no_such_module:register"]}},
        ):
            pass
    assert info.value is not None


@pytest.mark.anyio
async def test_sample_notification_processor(
    fast_config: dict[str, Any], redis_url: str, qname: str, subscribed: Any
) -> None:
    async with boot_kernel(
        "redis",
        "queue",
        config={
            "redis": {"url": redis_url},
            "queue": {**fast_config, "processors": ["kernel_queue:register_sample_processors"]},
        },
    ) as k:
        manager = k.get(QueueManager)
        assert manager.processors.resolve("notifications", "send-notification") is notification_processor
        # The same processor on a private queue, so tests never share "notifications".
        manager.register_processor(qname, "send-notification", notification_processor)
        events: list[dict[str, Any]] = []
        manager.listen_to_queue_events(qname, events.append)
        await subscribed(manager, qname)
        jid = await manager.add_job(
            qname, "send-notification", {"notification_id": "123", "user_id": "456", "type": "push"}
        )
        await manager.create_worker(qname, concurrency=5)

        async def done() -> bool:
            info = await manager.get_job(qname, jid)
            return info is not None and info.state == "completed"

        await wait_until(done)
        info = await manager.get_job(qname, jid)
        assert info is not None and info.result["success"] is True
        assert info.result["notification_id"] == "123" and info.result["sent_at"].endswith("+00:00")
        await wait_until(lambda: any(e["event"] == "completed" for e in events))
        assert [e["progress"] for e in events if e["event"] == "progress"] == [10, 100]
    register_sample_processors  # re-exported for hosts  # noqa: B018


@pytest.mark.anyio
async def test_events_reach_the_event_bus(fast_config: dict[str, Any], redis_url: str, qname: str) -> None:
    pytest.importorskip("kernel_eventbus", reason="the eventbus plugin is not installed in this environment")
    async with boot_kernel(
        "redis", "eventbus", "queue", config={"redis": {"url": redis_url}, "queue": fast_config}
    ) as k:
        bus = k.registry.get("eventbus")
        manager = k.get(QueueManager)
        got: list[tuple[str, Any]] = []

        async def on(event: str) -> Any:
            async def handler(data: Any, meta: Any) -> None:
                got.append((event, data))

            return handler

        for name in ("waiting", "active", "completed", "failed"):
            bus.subscribe(f"queue.job.{name}", await on(name), group=f"test-{name}")

        async def proc(job: JobContext) -> str:
            if job.data == "bad":
                raise RuntimeError("nope")
            return "ok"

        await manager.create_worker(qname, proc)
        ok = await manager.add_job(qname, "x", "good")
        bad = await manager.add_job(qname, "x", "bad")

        async def both() -> bool:
            return {("completed", ok), ("failed", bad)} <= {(e, d["job_id"]) for e, d in got}

        await wait_until(both)
        kinds = [e for e, d in got if d["job_id"] == ok]
        assert kinds[:1] == ["waiting"] and "active" in kinds and kinds[-1] == "completed"
        assert all(d["queue"] == qname for _, d in got)


@pytest.fixture
async def with_metrics(fast_config: dict[str, Any], redis_url: str, qname: str) -> AsyncIterator[Kernel]:
    """A kernel with the metrics plugin (skipped when not installed), stopped before ``qname``'s cleanup."""
    pytest.importorskip("kernel_metrics", reason="the metrics plugin is not installed in this environment")
    config = {"redis": {"url": redis_url}, "queue": fast_config}
    async with boot_kernel("redis", "metrics", "queue", config=config) as k:
        yield k


def exposition(k: Kernel) -> str:
    """The metrics page of kernel ``k``."""
    body, _ = k.registry.get("metrics").render()
    return str(body.decode())


@pytest.mark.anyio
async def test_metrics_are_recorded_when_enabled(with_metrics: Kernel, qname: str) -> None:
    manager = with_metrics.get(QueueManager)

    async def proc(job: JobContext) -> None:
        return None

    await manager.create_worker(qname, proc)
    jid = await manager.add_job(qname, "x", {})

    counted = f'queue_jobs_total{{event="completed",queue="{qname}"}} 1.0'

    async def done() -> bool:
        # The hooks run after the job's record is written: another task can see "completed" in
        # Redis before the worker's task has counted it, so wait for both.
        info = await manager.get_job(qname, jid)
        return info is not None and info.state == "completed" and counted in exposition(with_metrics)

    await wait_until(done, what="the job completed and counted")
    text = exposition(with_metrics)
    assert f'queue_job_duration_seconds_count{{queue="{qname}",status="completed"}} 1.0' in text


def _cli(config: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "kernel", "--config", str(config), *args],
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ},
    )


@pytest.mark.anyio
async def test_cli_queue_stats_pause_resume_clean_retry(
    manager: QueueManager, qname: str, redis_url: str, tmp_path: Path
) -> None:
    config = tmp_path / "kernel.toml"
    config.write_text(
        f'[kernel]\nplugins = ["redis", "queue"]\nlog_level = "WARNING"\n\n'
        f'[plugins.redis]\nurl = "{redis_url}"\n'
    )

    async def proc(job: JobContext) -> None:
        if job.data == "bad":
            raise RuntimeError("bad")

    await manager.create_worker(qname, proc)
    good = await manager.add_job(qname, "x", "good")
    bad = await manager.add_job(qname, "x", "bad")

    async def settled() -> bool:
        s = await manager.get_queue_stats(qname)
        return (s["completed"], s["failed"]) == (1, 1)

    await wait_until(settled)

    out = await anyio.to_thread.run_sync(lambda: _cli(config, "queue", "stats", qname, "--json"))
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout)[0] == {
        "queue_name": qname,
        "waiting": 0,
        "active": 0,
        "completed": 1,
        "failed": 1,
        "delayed": 0,
        "total": 0,
        "paused": False,
    }
    out = await anyio.to_thread.run_sync(lambda: _cli(config, "queue", "stats"))
    assert out.returncode == 0 and qname in out.stdout and "completed" in out.stdout.splitlines()[0]

    out = await anyio.to_thread.run_sync(lambda: _cli(config, "queue", "pause", qname))
    assert out.returncode == 0 and await manager.is_paused(qname)
    out = await anyio.to_thread.run_sync(lambda: _cli(config, "queue", "resume", qname))
    assert out.returncode == 0 and not await manager.is_paused(qname)

    out = await anyio.to_thread.run_sync(
        lambda: _cli(config, "queue", "clean", qname, "--status", "completed")
    )
    assert out.returncode == 0 and "removed 1 completed" in out.stdout
    assert await manager.get_job(qname, good) is None

    out = await anyio.to_thread.run_sync(lambda: _cli(config, "queue", "retry", qname, "--job", "missing"))
    assert out.returncode == 1 and "no job 'missing'" in out.stderr
    out = await anyio.to_thread.run_sync(lambda: _cli(config, "queue", "retry", qname))
    assert out.returncode == 0 and "re-queued 1 failed" in out.stdout
    info = await manager.get_job(qname, bad)
    assert info is not None and info.attempts >= 1


def test_cli_worker_without_processors_explains(tmp_path: Path, redis_url: str) -> None:
    config = tmp_path / "kernel.toml"
    config.write_text(
        f'[kernel]\nplugins = ["redis", "queue"]\nlog_level = "WARNING"\n\n'
        f'[plugins.redis]\nurl = "{redis_url}"\n'
    )
    out = _cli(config, "worker")
    assert out.returncode == 2 and "no queue to process" in out.stderr
    embedded = tmp_path / "embedded.toml"
    embedded.write_text(
        '[kernel]\nplugins = ["redis", "queue"]\nlog_level = "WARNING"\n\n[plugins.redis]\nurl = "embedded"\n'
    )
    out = _cli(embedded, "worker")
    assert out.returncode == 2 and "own private Redis" in out.stderr
    out = _cli(config, "worker", "--help")
    assert "--concurrency" in out.stdout and "--queue" in out.stdout


@pytest.mark.anyio
async def test_bulk_jobs_with_a_delay_are_reported_as_delayed(with_metrics: Kernel, qname: str) -> None:
    manager = with_metrics.get(QueueManager)
    await manager.add_bulk_jobs(qname, [{"name": "later", "delay": 3600}, {"name": "now"}])
    text = exposition(with_metrics)
    assert f'queue_jobs_total{{event="delayed",queue="{qname}"}} 1.0' in text  # as add_job reports it
    assert f'queue_jobs_total{{event="waiting",queue="{qname}"}} 1.0' in text
