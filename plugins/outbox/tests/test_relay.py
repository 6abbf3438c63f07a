"""The relay on the real stack: original identity, shared work, lease takeover, bus outage, order."""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import Any

import anyio
import pytest
import redis.asyncio as aioredis
from kernel_eventbus import EventBus, EventMetadata
from kernel_eventbus._keys import stream_key
from kernel_outbox import OutboxRelay
from kernel_redis.testing import private_redis_server
from kernel_repository import OutboxEvent, OutboxStore, RepositoryManager
from outbox_models import Account, Boot, accounts, add_entries

from kernel.logging import trace_context
from kernel.testing import wait_until

pytestmark = pytest.mark.anyio


async def stream_events(redis_url: str, prefix: str, name: str) -> list[dict[str, Any]]:
    """The events stored in the bus's stream of ``name``, in stream order."""
    client = aioredis.Redis.from_url(redis_url)
    try:
        out = []
        for _id, fields in await client.xrange(stream_key(prefix, name)):
            head, _, body = fields[b"e"].decode().partition("\n")
            _v, event_id, ts, trace, _source = head.split("\t")
            out.append({"event_id": event_id, "timestamp": ts, "trace_id": trace, "data": json.loads(body)})
        return out
    finally:
        await client.aclose()


async def test_relay_publishes_with_the_original_identity(boot: Boot) -> None:
    async with boot() as kernel:
        bus = kernel.get(EventBus)
        seen: list[tuple[Any, EventMetadata]] = []

        async def handler(data: Any, meta: EventMetadata) -> None:
            seen.append((data, meta))

        bus.subscribe("account.opened", handler, group="identity")
        repo = await accounts(kernel.get(RepositoryManager))
        when = datetime(2026, 5, 6, 7, 8, 9, 123000, tzinfo=UTC)
        with trace_context("d" * 32):
            account = await repo.create(
                {"owner": "ann"},
                events=lambda a: [
                    OutboxEvent("account.opened", {"id": str(a.id)}, occurred_at=when, source="accounts")
                ],
            )
        await wait_until(lambda: seen, 10, what="the relay to publish")
        stored = await kernel.get(RepositoryManager).outbox.collection.find_one({})
        data, meta = seen[0]
        assert data == {"id": str(account.id)}
        assert meta.event_id == stored["_id"]
        assert meta.trace_id == "d" * 32
        assert meta.timestamp == "2026-05-06T07:08:09.123Z" and meta.source == "accounts"
        relay = kernel.get(OutboxRelay)
        await wait_until(lambda: relay.published == 1, 10, what="the entry marked done")
        assert (await relay.status()).done == 1


async def test_two_relays_share_200_entries_each_published_once(
    boot: Boot, redis_url: str, prefix: str
) -> None:
    async with boot(relay=False, batch_size=20) as a, boot(relay=False, batch_size=20) as b:
        store = a.get(RepositoryManager).outbox
        await add_entries(
            store, [OutboxEvent("bulk.item", {"i": i}, aggregate_id=f"g{i % 50}") for i in range(200)]
        )
        first, second = a.get(OutboxRelay), b.get(OutboxRelay)
        assert first.owner != second.owner
        with anyio.fail_after(60):
            # One batch each first, so both take part whatever the scheduler does next (two claims
            # racing for the same candidates may leave the loser empty-handed until its next poll).
            assert await first.run_once() == 20 and await second.run_once() == 20
            async with anyio.create_task_group() as tg:
                tg.start_soon(first.drain, 60.0)
                tg.start_soon(second.drain, 60.0)
        published = await stream_events(redis_url, prefix, "bulk.item")
        ids = [e["event_id"] for e in published]
        assert len(ids) == len(set(ids)) == 200  # each exactly once, none lost
        assert first.published + second.published == 200
        assert first.duplicates == second.duplicates == 0
        status = await first.status()
        assert (status.backlog, status.done) == (0, 200)
        # per aggregate, the stream holds the entries in the order they were written
        last: dict[int, int] = {}
        for e in published:
            i = e["data"]["i"]
            assert i > last.get(i % 50, -1)
            last[i % 50] = i


async def test_a_dead_relays_lease_expires_and_another_takes_over(
    boot: Boot, redis_url: str, prefix: str
) -> None:
    async with boot(relay=False, lease_seconds=1.0, publish_timeout=0.5) as kernel:
        store = kernel.get(RepositoryManager).outbox
        relay = kernel.get(OutboxRelay)
        await add_entries(
            store, [OutboxEvent("acct.step", {"n": n}, aggregate_id="acct-1") for n in range(3)]
        )
        held = await store.claim("a-relay-that-died", limit=1, lease=1.0)  # claimed, never finished
        assert len(held) == 1
        assert await relay.run_once() == 0  # the held entry blocks its aggregate until its lease ends
        t0 = anyio.current_time()
        await wait_until(relay.run_once, 15, interval=0.05, what="the takeover after lease expiry")
        assert anyio.current_time() - t0 < 5
        await wait_until(lambda: relay.published == 3, 10, what="the takeover to publish all")
        published = await stream_events(redis_url, prefix, "acct.step")
        assert [e["data"]["n"] for e in published] == [0, 1, 2]
        assert published[0]["event_id"] == held[0].event_id


async def test_a_dead_relays_published_entry_is_counted_as_taken_over_before_its_second_copy(
    boot: Boot, redis_url: str, prefix: str, caplog: pytest.LogCaptureFixture
) -> None:
    """A relay killed after publishing and before marking done counts nothing: the relay that takes
    the entry over after the lease counts it (``outbox_takeovers_total``) before publishing it again,
    so the takeovers always cover the extra copies on the bus."""
    from kernel_metrics import MetricsCollector
    from kernel_outbox import _relay

    async with boot(relay=False, lease_seconds=1.0, publish_timeout=0.5) as kernel:
        store = kernel.get(RepositoryManager).outbox
        relay = kernel.get(OutboxRelay)
        await add_entries(store, [OutboxEvent("acct.crash", {"n": n}) for n in range(2)])
        (held,) = await store.claim("a-relay-that-died", limit=1, lease=1.0)
        # what the dead relay did before it was killed: published the entry, under its identity
        await kernel.get(EventBus).publish(
            held.name, held.data, event_id=held.event_id, occurred_at=held.occurred_at, trace_id=held.trace_id
        )
        assert await relay.run_once() == 1  # the other entry, never claimed: no takeover
        assert relay.takeovers == 0
        with caplog.at_level("WARNING", logger=_relay.log.name):
            await wait_until(relay.run_once, 15, interval=0.05, what="the takeover after lease expiry")
        assert relay.takeovers == 1 and relay.duplicates == 0
        assert any("took over 1 entries" in r.getMessage() for r in caplog.records)
        ids = [e["event_id"] for e in await stream_events(redis_url, prefix, "acct.crash")]
        assert ids.count(held.event_id) == 2 and len(ids) == 3
        assert len(ids) - len(set(ids)) <= relay.takeovers  # every extra copy covered
        scrape = kernel.get(MetricsCollector).render()[0].decode()
        assert "outbox_takeovers_total 1.0" in scrape


async def test_entries_wait_while_the_bus_is_down_then_go(boot: Boot, prefix: str) -> None:
    with private_redis_server() as server:
        async with boot(redis_url=server.url, max_backoff=0.5, publish_timeout=0.3) as kernel:
            relay = kernel.get(OutboxRelay)
            repo = await accounts(kernel.get(RepositoryManager))
            await anyio.to_thread.run_sync(server.stop)
            made = [
                await repo.create({"owner": f"o{i}"}, events=[OutboxEvent("account.opened", {"i": i})])
                for i in range(5)
            ]
            assert len(made) == 5  # writes do not need the bus

            async def retried() -> bool:
                status = await relay.status()
                return relay.last_error is not None and status.retrying >= 1 and status.backlog == 5

            await wait_until(retried, 15, what="failed publishes to be rescheduled")
            assert relay.published == 0 and relay.backoff > 0
            await anyio.to_thread.run_sync(server.start)
            await wait_until(lambda: relay.published == 5, 20, what="publishing after the bus returned")
            assert relay.last_error is None and relay.backoff == 0
            published = await stream_events(server.url, prefix, "account.opened")
            assert sorted(e["data"]["i"] for e in published) == [0, 1, 2, 3, 4]
            assert (await relay.status()).backlog == 0


async def test_order_is_kept_per_aggregate_across_updates(boot: Boot, redis_url: str, prefix: str) -> None:
    async with boot() as kernel, boot() as other:
        repo = await accounts(kernel.get(RepositoryManager))
        created = [await repo.create({"owner": f"o{i}"}) for i in range(4)]

        async def bump(account: Account) -> None:
            for n in range(1, 6):
                await repo.update_by_id(
                    account.id,
                    {"balance": n},
                    events=lambda a: [
                        OutboxEvent("account.changed", {"id": str(a.id), "balance": a.balance})
                    ],
                )

        async with anyio.create_task_group() as tg:
            for account in created:
                tg.start_soon(bump, account)
        relays = [kernel.get(OutboxRelay), other.get(OutboxRelay)]
        await wait_until(lambda: sum(r.published for r in relays) == 20, 20, what="20 events published")
        published = await stream_events(redis_url, prefix, "account.changed")
        for account in created:
            balances = [e["data"]["balance"] for e in published if e["data"]["id"] == str(account.id)]
            assert balances == [1, 2, 3, 4, 5]


async def test_change_streams_wake_a_relay_for_writes_of_other_processes(boot: Boot) -> None:
    # a poll interval far longer than the wait: only the change stream can wake the relay in time
    async with boot(poll_interval=60.0) as kernel:
        relay = kernel.get(OutboxRelay)
        await wait_until(lambda: relay.change_stream is not None, 10, what="the change stream to open")
        if not relay.change_stream:
            pytest.skip("this server offers no change streams")
        other = OutboxStore(kernel.get(RepositoryManager).database)  # another process's store: no notify
        await add_entries(other, [OutboxEvent("elsewhere", {"n": 1})])
        await wait_until(lambda: relay.published == 1, 10, what="the change stream to wake the relay")


async def test_polling_alone_publishes_writes_of_other_processes(boot: Boot) -> None:
    async with boot(change_streams=False, poll_interval=0.1) as kernel:
        relay = kernel.get(OutboxRelay)
        other = OutboxStore(kernel.get(RepositoryManager).database)
        await add_entries(other, [OutboxEvent("elsewhere", {"n": 1})])
        await wait_until(lambda: relay.published == 1, 10, what="a poll to find the entry")
        assert relay.change_stream is None


class Headers:
    """A :class:`kernel_repository.TracePropagation` of its own: a fixed context, and the one the relay
    publishes each entry in (no tracing library)."""

    def __init__(self) -> None:
        self.current: dict[str, str] = {"traceparent": f"00-{'e' * 32}-{'1' * 16}-01", "tracestate": "k=v"}
        self.continued: list[dict[str, str]] = []

    def inject(self) -> dict[str, str]:
        return dict(self.current)

    @contextmanager
    def continuing(self, carrier: Mapping[str, str]) -> Iterator[None]:
        self.continued.append(dict(carrier))
        yield


async def test_entries_keep_the_writers_trace_context_and_are_published_in_it(boot: Boot) -> None:
    async with boot() as kernel:
        store = kernel.get(RepositoryManager).outbox
        repo = await accounts(kernel.get(RepositoryManager))
        await repo.create(
            {"owner": "none"}, events=[OutboxEvent("account.opened", {"i": 0})]
        )  # no propagation
        headers = Headers()
        store.set_propagation(headers)
        await repo.create({"owner": "traced"}, events=[OutboxEvent("account.opened", {"i": 1})])
        relay = kernel.get(OutboxRelay)
        await wait_until(lambda: relay.published == 2, 10, what="both entries published")
        docs = {doc["data"]["i"]: doc async for doc in store.collection.find({})}
        assert "traceparent" not in docs[0] and "tracestate" not in docs[0]
        assert (docs[1]["traceparent"], docs[1]["tracestate"]) == (headers.current["traceparent"], "k=v")
        assert headers.continued == [headers.current]  # only the entry with a context was published in one
        entry = await store.get(docs[1]["_id"])
        assert entry is not None and entry.trace_context == headers.current
        store.set_propagation(None)


async def test_serve_runs_the_relay_in_a_task_group_until_stop(boot: Boot) -> None:
    async with boot(relay=False, change_streams=False, poll_interval=60.0) as kernel:
        relay = kernel.get(OutboxRelay)
        store = kernel.get(RepositoryManager).outbox
        assert not relay.running
        async with anyio.create_task_group() as tg:
            await tg.start(relay.serve)
            assert relay.running
            with pytest.raises(RuntimeError, match="runs already"):
                await relay.serve()
            for n in (1, 2):  # each wake() is seen (the relay waits on a fresh event each time)
                await add_entries(store, [OutboxEvent("served", {"n": n})])
                relay.wake()  # the poll interval is a minute: only the wake can publish it in time
                await wait_until(lambda n=n: relay.published == n, 10, what="the relay to publish")
            with anyio.fail_after(5):
                await relay.stop()  # the task group then exits: serve() returned
        assert not relay.running


async def test_start_runs_the_relay_in_a_task_of_its_own_and_another_task_stops_it(boot: Boot) -> None:
    async with boot(relay=False, change_streams=False, poll_interval=60.0) as kernel:
        relay = kernel.get(OutboxRelay)
        store = kernel.get(RepositoryManager).outbox
        await relay.start()
        await relay.start()  # running already: nothing happens
        assert relay.running
        await add_entries(store, [OutboxEvent("started", {"n": 1})])
        relay.wake()
        await wait_until(lambda: relay.published == 1, 10, what="the relay to publish")
        async with anyio.create_task_group() as tg:
            tg.start_soon(relay.stop)  # a command's stop() runs in another task
        assert not relay.running
        await relay.stop()  # stopped already: nothing happens


@pytest.mark.parametrize("failure", ["error", "timeout"])
async def test_published_entries_left_unmarked_are_counted_as_duplicates_and_published_again(
    boot: Boot,
    redis_url: str,
    prefix: str,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
    failure: str,
) -> None:
    """A batch published but not marked done (the database failed, or marking outlasted the settle
    timeout) comes back when its lease expires and is published again: each such entry is counted in
    ``outbox_duplicates_total{reason="unsettled"}``, so every extra copy on the bus is accounted for."""
    from kernel_outbox import _relay

    async with boot(relay=False, lease_seconds=1.0, publish_timeout=0.5) as kernel:
        relay = kernel.get(OutboxRelay)
        store = relay.store
        await add_entries(store, [OutboxEvent("acct.unsettled", {"n": n}) for n in range(3)])
        mark_done = store.mark_done
        calls: list[int] = []

        async def marking(entries: Any) -> int:
            calls.append(len(entries))
            if len(calls) == 1:
                if failure == "error":
                    raise ConnectionError("the database went away")
                await anyio.sleep_forever()  # until the settle timeout cancels it
            return await mark_done(entries)

        monkeypatch.setattr(store, "mark_done", marking)
        monkeypatch.setattr(_relay, "_SETTLE_TIMEOUT", 0.2)
        with caplog.at_level("WARNING", logger=_relay.log.name):
            assert await relay.run_once() == 3  # published; not marked done
        assert relay.duplicates == 3
        assert any("published again" in r.getMessage() for r in caplog.records)
        await wait_until(relay.run_once, 15, interval=0.05, what="the entries back after their lease")
        events = await stream_events(redis_url, prefix, "acct.unsettled")
        ids = [e["event_id"] for e in events]
        assert len(ids) == 6 and len(set(ids)) == 3  # each published twice, with its own identity
        assert len(ids) - len(set(ids)) == relay.duplicates  # every extra copy counted
        assert await store.collection.count_documents({"status": "pending"}) == 0
        assert await store.collection.count_documents({"status": "done"}) == 3
