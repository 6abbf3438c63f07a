"""The plugin in a kernel: health and metrics past the lag threshold, rejected events, shutdown, checks."""

from __future__ import annotations

import logging
from typing import Any

import anyio
import pytest
from kernel_metrics import MetricsCollector
from kernel_outbox import OutboxConfig, OutboxRelay, parse_duration
from kernel_redis.testing import private_redis_server
from kernel_repository import OutboxEvent, RepositoryManager
from outbox_models import Boot, accounts, add_entries

from kernel.testing import make_kernel, wait_until

pytestmark = pytest.mark.anyio


def sample(kernel: Any, name: str, **labels: str) -> float | None:
    return kernel.get(MetricsCollector).registry.get_sample_value(name, labels)


async def test_health_degrades_past_the_lag_threshold_and_metrics_follow(boot: Boot) -> None:
    async with boot(relay=False, lag_degraded_seconds=0.3) as kernel:
        relay = kernel.get(OutboxRelay)
        repo = await accounts(kernel.get(RepositoryManager))
        await repo.create({"owner": "ann"}, events=[OutboxEvent("account.opened", {"n": 1})])
        assert (await kernel.health()).status == "ok"  # young entry: within the threshold

        async def degraded() -> bool:
            return (await kernel.health()).status == "degraded"

        await wait_until(degraded, 10, interval=0.05, what="the lag to pass 0.3 s")
        report = await kernel.health()
        [check] = [c for c in report.checks if c.name == "outbox"]
        assert (
            not check.ok
            and not check.critical
            and "lag_degraded_seconds 0.3 (backlog 1" in (check.error or "")
        )
        assert sample(kernel, "outbox_backlog") == 1
        assert (sample(kernel, "outbox_lag_seconds") or 0) > 0.3
        assert await relay.run_once() == 1
        assert sample(kernel, "outbox_published_total") == 1
        await relay.status()
        assert sample(kernel, "outbox_backlog") == 0 and sample(kernel, "outbox_lag_seconds") == 0
        assert (await kernel.health()).status == "ok"


async def test_an_event_the_bus_rejects_is_marked_failed_and_does_not_stop_the_rest(boot: Boot) -> None:
    async with boot(relay=False, eventbus={"max_payload_bytes": 100}) as kernel:
        relay = kernel.get(OutboxRelay)
        repo = await accounts(kernel.get(RepositoryManager))
        account = await repo.create(
            {"owner": "ann"}, events=[OutboxEvent("account.opened", {"blob": "x" * 500})]
        )
        await repo.update_by_id(account.id, {"balance": 1}, events=[OutboxEvent("account.changed", {"b": 1})])
        assert await relay.run_once() == 1  # the second entry of the aggregate went on
        status = await relay.status()
        assert (status.backlog, status.done, status.failed) == (0, 1, 1)
        assert sample(kernel, "outbox_publish_errors_total", reason="rejected") == 1
        failed = await kernel.get(RepositoryManager).outbox.collection.find_one({"status": "failed"})
        assert failed["last_error"].startswith("EventTooLargeError")


async def test_shutdown_mid_batch_gives_the_batch_back(boot: Boot) -> None:
    with private_redis_server() as server:
        async with boot(redis_url=server.url, publish_timeout=5.0, lease_seconds=60.0) as kernel:
            relay = kernel.get(OutboxRelay)
            store = kernel.get(RepositoryManager).outbox
            await anyio.to_thread.run_sync(server.stop)  # publishes now hang until their 5 s deadline
            await add_entries(store, [OutboxEvent("account.opened", {"i": i}) for i in range(3)])

            async def in_flight() -> bool:
                return (await store.status()).in_flight == 3

            await wait_until(in_flight, 10, what="the relay to claim the batch")
            with anyio.fail_after(5):
                await relay.stop(grace=0.1)  # cancelled mid-publish
            status = await store.status()
            # given back at once, not left to the 60 s lease: another relay can take it now
            assert (status.backlog, status.in_flight, status.retrying) == (3, 0, 0)
            assert len(await store.claim("next-relay")) == 3


async def test_kernel_check_warns_in_production_when_the_uri_cannot_show_a_replica_set(
    caplog: pytest.LogCaptureFixture,
) -> None:
    plugins = ("repository", "eventbus", "outbox")

    def check(uri: str) -> str:
        caplog.clear()
        with caplog.at_level(logging.WARNING, logger="kernel"):
            make_kernel(*plugins, settings={"env": "production"}, config={"repository": {"uri": uri}})
        return caplog.text

    assert "the outbox needs MongoDB transactions" in check("mongodb://db.example:27017/")
    assert "the outbox needs MongoDB transactions" not in check("mongodb://db.example:27017/?replicaSet=rs0")
    assert "the outbox needs MongoDB transactions" not in check("mongodb+srv://cluster.example/")


def test_config_is_checked() -> None:
    with pytest.raises(ValueError, match="publish_timeout"):
        OutboxConfig(publish_timeout=20.0, lease_seconds=30.0)
    with pytest.raises(ValueError, match="batch_size"):
        OutboxConfig(batch_size=0)


def test_durations() -> None:
    assert parse_duration("7d").total_seconds() == 7 * 86_400
    assert parse_duration("1d12h").total_seconds() == 36 * 3600
    assert parse_duration("90").total_seconds() == 90
    for bad in ("", "7x", "d", "-1h"):
        with pytest.raises(ValueError, match="not a duration"):
            parse_duration(bad)
