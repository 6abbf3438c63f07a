"""Each page renders from the real services; each action changes the real system (Redis, bus, workers)."""

from __future__ import annotations

import logging
import os
from collections.abc import Callable
from typing import Any

import httpx
import pytest
from kernel_eventbus import EventBus, EventMetadata
from kernel_metrics import MetricsCollector
from kernel_queue import JobContext, QueueManager

from kernel.testing import wait_until

pytestmark = pytest.mark.anyio

Client = Callable[..., httpx.AsyncClient]


async def post(http: httpx.AsyncClient, token: str, action: str, **form: str) -> httpx.Response:
    """POST an action with the CSRF token."""
    return await http.post(
        f"/console/action/{action}", data={"csrf": token, "back": "/console/events", **form}
    )


async def wait_for_job(qm: QueueManager, queue: str, job_id: str, state: str, what: str) -> None:
    """Wait until the job ``job_id`` of ``queue`` is in ``state``."""

    async def reached() -> bool:
        info = await qm.get_job(queue, job_id)
        return info is not None and info.state == state

    await wait_until(reached, what=what)


async def test_overview_shows_plugins_graph_health_and_process(boot: Any, client: Client) -> None:
    async with boot() as kernel, client(kernel) as http:
        page = await http.get("/console")
    assert page.status_code == 200
    text = page.text
    for name in ("metrics", "redis", "eventbus", "queue", "console"):
        assert f"<td>{name}</td>" in text
    assert "<svg" in text and 'aria-label="plugin dependency graph"' in text
    assert "queue requires redis" in text  # an edge of the graph, with its title
    assert f"<dd>{os.getpid()}</dd>" in text
    assert "redis.ping" in text or "redis" in text.split("<h2>Health</h2>", 1)[1]
    assert page.headers["cache-control"] == "no-store"


async def test_sections_only_for_enabled_plugins(boot: Any, client: Client) -> None:
    async with boot(plugins=("redis", "queue", "console")) as kernel, client(kernel) as http:
        page = await http.get("/console")
        assert ">Queues</a>" in page.text
        assert ">Events</a>" not in page.text
        assert (await http.get("/console/events")).status_code == 404
        assert (await http.get("/console/queues")).status_code == 200


async def test_replaying_a_dead_letter_delivers_it_to_its_handler(
    boot: Any, client: Client, token_of: Any, caplog: pytest.LogCaptureFixture
) -> None:
    healthy = False
    delivered: list[dict[str, Any]] = []
    async with boot() as kernel:
        bus = kernel.get(EventBus)

        async def handler(data: Any, meta: EventMetadata) -> None:
            if not healthy:
                raise RuntimeError("downstream is down")
            delivered.append({"data": data, "replayed_at": meta.replayed_at})

        bus.subscribe("invoice.sent", handler, group="invoice.sent:console-test")
        meta = await bus.publish("invoice.sent", {"invoice": 42})
        await wait_until(bus.dead_letter_count, what="the event in the DLQ")
        healthy = True
        async with client(kernel) as http:
            listing = await http.get("/console/events")
            assert meta.event_id in listing.text and "downstream is down" in listing.text
            detail = await http.get("/console/dlq", params={"id": meta.event_id})
            assert "&quot;invoice&quot;: 42" in detail.text and (meta.trace_id or "") in detail.text
            token = await token_of(http)
            with caplog.at_level(logging.INFO, logger="kernel.plugins.console"):
                done = await post(http, token, "dlq.replay", id=meta.event_id)
            assert done.status_code == 303
            await wait_until(lambda: delivered, what="the replayed event at its handler")
            assert delivered[0]["data"] == {"invoice": 42} and delivered[0]["replayed_at"]
            assert await bus.dead_letter_count() == 0
            after = await http.get(done.headers["location"])
            assert f"event {meta.event_id} replayed to 1 subscription(s)" in after.text
        scrape = kernel.get(MetricsCollector).render()[0].decode()
    assert 'console_actions_total{action="dlq.replay",outcome="ok"} 1.0' in scrape
    record = next(r for r in caplog.records if getattr(r, "action", None) == "dlq.replay")
    assert record.outcome == "ok" and record.who == "loopback:127.0.0.1"  # type: ignore[attr-defined]
    assert record.target == f"dlq {meta.event_id}"  # type: ignore[attr-defined]


async def test_replay_all_and_clear_need_confirmation(boot: Any, client: Client, token_of: Any) -> None:
    healthy = False
    delivered: list[int] = []
    async with boot() as kernel:
        bus = kernel.get(EventBus)

        async def handler(data: Any, meta: EventMetadata) -> None:
            if not healthy:
                raise RuntimeError("not yet")
            delivered.append(data["n"])

        bus.subscribe("tick", handler, group="tick:console-test")
        bus.subscribe("tock", handler, group="tock:console-test")
        for n in range(3):
            await bus.publish("tick", {"n": n})
        await bus.publish("tock", {"n": 99})

        async def four() -> bool:
            return await bus.dead_letter_count() == 4

        await wait_until(four, what="four dead letters")
        healthy = True
        async with client(kernel) as http:
            token = await token_of(http)
            preview = await post(http, token, "dlq.replay-all", event="tick")
            assert preview.status_code == 200
            assert "Replay 3 dead-letter entries of event tick?" in preview.text
            assert await bus.dead_letter_count() == 4  # nothing happened yet
            done = await post(http, token, "dlq.replay-all", event="tick", confirm="yes")
            assert done.status_code == 303
            await wait_until(lambda: sorted(delivered) == [0, 1, 2], what="the three replayed ticks")
            assert await bus.dead_letter_count() == 1
            preview = await post(http, token, "dlq.clear")
            assert "Delete all 1 dead-letter entries?" in preview.text
            assert await bus.dead_letter_count() == 1
            assert (await post(http, token, "dlq.clear", confirm="yes")).status_code == 303
            assert await bus.dead_letter_count() == 0
    assert 99 not in delivered


async def test_delete_one_dead_letter(boot: Any, client: Client, token_of: Any) -> None:
    async with boot() as kernel:
        bus = kernel.get(EventBus)

        async def fail(data: Any, meta: EventMetadata) -> None:
            raise RuntimeError("no")

        bus.subscribe("a", fail, group="a:console-test")
        first = await bus.publish("a", {"n": 1})
        await bus.publish("a", {"n": 2})

        async def two() -> bool:
            return await bus.dead_letter_count() == 2

        await wait_until(two, what="two dead letters")
        async with client(kernel) as http:
            token = await token_of(http)
            assert (await post(http, token, "dlq.delete", id=first.event_id)).status_code == 303
            assert [e.data for e in await bus.get_dead_letter_queue()] == [{"n": 2}]
            missing = await post(http, token, "dlq.replay", id=first.event_id)
            follow = await http.get(missing.headers["location"])
            assert "not replayed" in follow.text and 'class="flash bad"' in follow.text


async def test_pausing_a_queue_stops_processing(boot: Any, client: Client, token_of: Any, qname: str) -> None:
    ran: list[str] = []
    witness = f"{qname}w"  # the boot fixture removes its keys too
    async with boot() as kernel:
        qm = kernel.get(QueueManager)

        async def work(job: JobContext) -> None:
            ran.append(job.data["id"])

        await qm.create_worker(qname, work)
        await qm.add_job(qname, "job", {"id": "before"})
        await wait_until(lambda: ran == ["before"], what="the first job")
        async with client(kernel) as http:
            token = await token_of(http, "/console/queues")
            assert (await post(http, token, "queue.pause", queue=qname)).status_code == 303
            assert await qm.is_paused(qname)
            await qm.add_job(qname, "job", {"id": "while-paused"})
            # A worker of a second queue runs a job: the loop turned while the paused queue kept its job.
            await qm.create_worker(witness, work)
            await qm.add_job(witness, "job", {"id": "witness"})
            await wait_until(lambda: "witness" in ran, what="the witness job")
            stats = await qm.get_queue_stats(qname)
            assert stats["paused"] and stats["waiting"] == 1 and "while-paused" not in ran
            page = await http.get("/console/queues")
            assert "paused" in page.text
            assert (await post(http, token, "queue.resume", queue=qname)).status_code == 303
            await wait_until(lambda: "while-paused" in ran, what="the job after resume")
        await qm.stop_workers()


async def test_retrying_a_failed_job_runs_it(boot: Any, client: Client, token_of: Any, qname: str) -> None:
    broken = True
    done: list[int] = []
    async with boot() as kernel:
        qm = kernel.get(QueueManager)

        async def work(job: JobContext) -> str:
            if broken:
                raise ValueError("backend <b>down</b>")
            done.append(job.data["n"])
            return "ok"

        await qm.create_worker(qname, work)
        job_id = await qm.add_job(qname, "charge", {"n": 7})
        await wait_for_job(qm, qname, job_id, "failed", what="the job to fail")
        async with client(kernel) as http:
            listing = await http.get("/console/queue", params={"name": qname, "state": "failed"})
            assert job_id in listing.text and "backend &lt;b&gt;down&lt;/b&gt;" in listing.text
            assert "0 completed, 1 failed (failure rate 100.0%)" in listing.text  # the last hour
            assert 'aria-label="jobs finished per interval: 0 completed, 1 failed"' in listing.text
            detail = await http.get("/console/job", params={"queue": qname, "id": job_id})
            assert "&quot;n&quot;: 7" in detail.text
            token = await token_of(http, "/console/queues")
            broken = False
            assert (await post(http, token, "job.retry", queue=qname, id=job_id)).status_code == 303
            await wait_until(lambda: done == [7], what="the retried job to run")
            await wait_for_job(qm, qname, job_id, "completed", what="the retried job to complete")
            index = await http.get("/console/queues")
            assert 'aria-label="jobs finished per interval: 1 completed, 0 failed"' in index.text
            assert "<td>0.0%</td>" in index.text
            assert (await post(http, token, "job.remove", queue=qname, id=job_id)).status_code == 303
            assert await qm.get_job(qname, job_id) is None
        await qm.stop_workers()


async def test_job_detail_shows_the_trace_id_next_to_the_error(boot: Any, client: Client, qname: str) -> None:
    plugins = ("metrics", "redis", "eventbus", "otel", "queue", "console")
    async with boot(plugins=plugins, more_config={"otel": {"exporter": "memory"}}) as kernel:
        qm = kernel.get(QueueManager)

        async def work(job: JobContext) -> None:
            raise ValueError("card declined")

        await qm.create_worker(qname, work)
        job_id = await qm.add_job(qname, "charge", {"n": 1})
        await wait_for_job(qm, qname, job_id, "failed", what="the job to fail")
        info = await qm.get_job(qname, job_id)
        assert info is not None and info.trace_id is not None and len(info.trace_id) == 32
        async with client(kernel) as http:
            detail = await http.get("/console/job", params={"queue": qname, "id": job_id})
        error = detail.text.split("<h2>Error</h2>", 1)[1]
        assert error.startswith(f'<p class="trace">trace id <code>{info.trace_id}</code></p>')
        assert "card declined" in error
        await qm.stop_workers()


async def test_job_without_a_trace_shows_no_trace_id(boot: Any, client: Client, qname: str) -> None:
    async with boot() as kernel:
        qm = kernel.get(QueueManager)
        job_id = await qm.add_job(qname, "charge", {"n": 1})
        info = await qm.get_job(qname, job_id)
        assert info is not None and info.trace_id is None
        async with client(kernel) as http:
            detail = await http.get("/console/job", params={"queue": qname, "id": job_id})
        assert detail.status_code == 200 and "trace id" not in detail.text


async def test_retry_all_failed_and_clean_need_confirmation(
    boot: Any, client: Client, token_of: Any, qname: str
) -> None:
    async with boot() as kernel:
        qm = kernel.get(QueueManager)
        for n in range(3):
            await qm.add_job(qname, "later", {"n": n}, delay=3600)
        async with client(kernel) as http:
            token = await token_of(http, "/console/queues")
            preview = await post(http, token, "queue.clean", queue=qname, status="delayed")
            assert "Delete all 3 delayed job(s) of queue" in preview.text
            assert (await qm.get_queue_stats(qname))["delayed"] == 3
            assert (
                await post(http, token, "queue.clean", queue=qname, status="delayed", confirm="yes")
            ).status_code == 303
            assert (await qm.get_queue_stats(qname))["delayed"] == 0
            preview = await post(http, token, "queue.retry-failed", queue=qname)
            assert "Re-queue 0 failed job(s)" in preview.text
            bad = await post(http, token, "queue.clean", queue=qname, status="everything")
            assert bad.status_code == 400
            unknown = await post(http, token, "queue.pause", queue="no-such-queue")
            assert unknown.status_code == 404
