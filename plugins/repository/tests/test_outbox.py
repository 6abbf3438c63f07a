"""The transactional outbox: events= on writes (atomic with the document), claims with leases, order, ops."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import anyio
import pytest
from kernel_errors import ValidationError
from kernel_repository import (
    OutboxEntry,
    OutboxEntryNotFoundError,
    OutboxEvent,
    OutboxStore,
    RepositoryManager,
    TransactionsUnsupportedError,
)
from kernel_repository._outbox import transactions_unsupported
from motor.motor_asyncio import AsyncIOMotorClientSession
from pymongo.errors import OperationFailure
from repository_models import User, UserRepository, create_collections

from kernel.logging import reset_trace_id, set_trace_id
from kernel.testing import wait_until

pytestmark = pytest.mark.anyio


async def entries(manager: RepositoryManager) -> list[dict[str, Any]]:
    return await manager.outbox.collection.find({}, sort=[("seq", 1)]).to_list(None)


async def add_pending(store: OutboxStore, *aggregates: str | None) -> list[str]:
    """One pending entry per aggregate given (in this order), each in its own transaction."""
    await store.ensure_ready()
    ids: list[str] = []
    client = store.database.client
    for i, agg in enumerate(aggregates):
        async with await client.start_session() as session:
            session.start_transaction()
            ids += await store.add(
                [OutboxEvent("thing.happened", {"i": i}, aggregate_id=agg)], session=session
            )
            await session.commit_transaction()
    return ids


# ---------------------------------------------------------------------- writes with events


async def test_create_with_events_commits_document_and_entries(manager: RepositoryManager) -> None:
    await create_collections(manager)
    users = manager.repository(UserRepository)
    when = datetime(2026, 1, 2, 3, 4, 5, 678000, tzinfo=UTC)
    token = set_trace_id("a" * 32)
    try:
        user = await users.create(
            {"name": "Ann", "email": "ann@x.io"},
            events=lambda u: [
                OutboxEvent("user.created", {"user_id": str(u.id)}, occurred_at=when, source="users"),
                OutboxEvent("user.welcomed", {"email": u.email}, event_id="evt-2", trace_id="b" * 32),
            ],
        )
    finally:
        reset_trace_id(token)
    stored = await entries(manager)
    assert [e["name"] for e in stored] == ["user.created", "user.welcomed"]
    first, second = stored
    assert first["data"] == {"user_id": str(user.id)}
    assert first["aggregate_id"] == second["aggregate_id"] == str(user.id)
    assert first["trace_id"] == "a" * 32 and second["trace_id"] == "b" * 32
    assert first["occurred_at"] == when and first["source"] == "users"
    assert second["_id"] == "evt-2" and len(first["_id"]) == 32
    assert first["status"] == second["status"] == "pending" and first["seq"] < second["seq"]
    assert await users.find_by_id(user.id) == user


async def test_aborted_transaction_leaves_neither_document_nor_events(manager: RepositoryManager) -> None:
    await create_collections(manager)
    await manager.outbox.ensure_indexes()
    users = manager.repository(UserRepository)

    async def work(session: AsyncIOMotorClientSession) -> None:
        await users.create(
            {"name": "A", "email": "a@x.io"}, session=session, events=[OutboxEvent("user.created", {"n": 1})]
        )
        await users.create({"name": "B", "email": "b@x.io"}, session=session, events=[OutboxEvent("x", 2)])
        assert await manager.outbox.collection.count_documents({}, session=session) == 2
        raise RuntimeError("boom")

    with pytest.raises(RuntimeError, match="boom"):
        await manager.with_transaction(work)
    assert await users.count() == 0
    assert await entries(manager) == []


async def test_events_callable_failing_aborts_the_write(manager: RepositoryManager) -> None:
    await create_collections(manager)
    users = manager.repository(UserRepository)

    def broken(user: User) -> list[OutboxEvent]:
        raise LookupError("no template")

    with pytest.raises(LookupError):
        await users.create({"name": "A", "email": "a@x.io"}, events=broken)
    with pytest.raises(ValidationError, match="not JSON-serializable"):
        await users.create(
            {"name": "B", "email": "b@x.io"}, events=[OutboxEvent("x", {"when": datetime.now()})]
        )
    assert await users.count() == 0
    assert await entries(manager) == []


async def test_update_and_delete_carry_events_only_when_they_wrote(manager: RepositoryManager) -> None:
    await create_collections(manager)
    users = manager.repository(UserRepository)
    user = await users.create({"name": "A", "email": "a@x.io"})
    updated = await users.update_by_id(
        user.id, {"age": 7}, events=lambda u: [OutboxEvent("user.updated", {"age": u.age})]
    )
    assert updated is not None and updated.age == 7
    assert await users.delete_by_id(user.id, events=lambda u: [OutboxEvent("user.deleted", {"name": u.name})])
    missing = "0" * 24
    assert await users.update_by_id(missing, {"age": 1}, events=[OutboxEvent("user.updated", {})]) is None
    assert not await users.delete_by_id(missing, events=[OutboxEvent("user.deleted", {})])
    stored = await entries(manager)
    assert [(e["name"], e["data"], e["aggregate_id"]) for e in stored] == [
        ("user.updated", {"age": 7}, str(user.id)),
        ("user.deleted", {"name": "A"}, str(user.id)),
    ]
    assert await users.count() == 0


async def test_events_in_a_session_need_its_transaction(manager: RepositoryManager) -> None:
    await create_collections(manager)
    users = manager.repository(UserRepository)
    async with await manager.client.start_session() as session:
        with pytest.raises(ValidationError, match="inside a transaction"):
            await users.create(
                {"name": "A", "email": "a@x.io"}, session=session, events=[OutboxEvent("e", 1)]
            )
    assert await users.count() == 0


async def test_bad_events_are_typed_errors() -> None:
    with pytest.raises(ValidationError, match="occurred_at"):
        OutboxEvent("e", 1, occurred_at=datetime(2026, 1, 1))  # naive
    with pytest.raises(ValidationError, match="name"):
        OutboxEvent("", 1)
    with pytest.raises(ValidationError, match="event_id"):
        OutboxEvent("e", 1, event_id="a\tb")


async def test_a_standalone_server_is_named(manager: RepositoryManager) -> None:
    # What a standalone mongod answers to a transaction (code 20); the wire server supports them.
    refusal = OperationFailure("Transaction numbers are only allowed on a replica set member or mongos", 20)
    assert transactions_unsupported(refusal)
    assert not transactions_unsupported(OperationFailure("WriteConflict", 112))
    error = TransactionsUnsupportedError("create", "users", str(refusal))
    assert "replica set" in error.message and error.error_code == "TRANSACTIONS_UNSUPPORTED"
    await manager.outbox.check_transactions()  # the wire server runs transactions: no error


async def test_indexes_include_a_ttl_on_done_entries(manager: RepositoryManager) -> None:
    await manager.outbox.ensure_indexes()
    info = await manager.outbox.collection.index_information()
    by_key = {tuple(k for k, _ in index["key"]): index for index in info.values()}  # nx-27017 renames them
    assert by_key[("done_at",)]["expireAfterSeconds"] == 7 * 86_400
    assert ("status", "seq") in by_key


# ---------------------------------------------------------------------- claims, leases, order


async def test_claims_lease_entries_to_one_owner(manager: RepositoryManager) -> None:
    store = manager.outbox
    ids = await add_pending(store, None, None, None)
    first = await store.claim("relay-a", limit=2)
    assert [e.event_id for e in first] == ids[:2]
    assert all(e.lease_owner == "relay-a" and e.claim for e in first)
    second = await store.claim("relay-b", limit=10)
    assert [e.event_id for e in second] == ids[2:]
    assert await store.claim("relay-c") == []
    assert await store.mark_done(first) == 2
    status = await store.status()
    assert (status.backlog, status.in_flight, status.done) == (1, 1, 2)


async def test_an_expired_lease_is_taken_over(manager: RepositoryManager) -> None:
    store = manager.outbox
    ids = await add_pending(store, "agg-1", "agg-1")
    dead = await store.claim("dead-relay", limit=1, lease=0.3)  # claimed, never finished
    assert [e.event_id for e in dead] == ids[:1]
    assert await store.claim("live-relay") == []  # the held entry blocks its aggregate
    taken: list[OutboxEntry] = []

    async def takeover() -> bool:
        taken.extend(await store.claim("live-relay"))
        return bool(taken)

    await wait_until(takeover, 10, what="the lease to expire")
    assert [e.event_id for e in taken] == ids
    # the dead relay's entry is marked as taken over (it may have been published); the next one,
    # never claimed, is not
    assert [e.taken_over for e in taken] == [True, False]
    assert not any(e.taken_over for e in dead)
    # the dead holder's late mark finds its claim gone: a duplicate it can count
    assert await store.mark_done(dead) == 0
    assert await store.mark_done(taken) == 2


async def test_order_is_kept_per_aggregate(manager: RepositoryManager) -> None:
    store = manager.outbox
    a1, b1, a2, b2, n1 = await add_pending(store, "A", "B", "A", "B", None)
    x = await store.claim("x", limit=1)
    assert [e.event_id for e in x] == [a1]
    y = await store.claim("y", limit=10)
    assert [e.event_id for e in y] == [b1, b2, n1]  # a2 waits behind a1, held by x
    await store.mark_done(x)
    await store.reschedule(y[0], "bus down", delay=60)  # b1 failed: b2 must wait for it
    await store.release(y[1:])
    z = await store.claim("z", limit=10)
    assert [e.event_id for e in z] == [a2, n1]
    entry = await store.get(b1)
    assert entry is not None and entry.attempts == 1 and entry.last_error == "bus down"
    assert entry.next_attempt_at > datetime.now(UTC) + timedelta(seconds=50)
    assert (await store.status()).retrying == 1


async def test_concurrent_claims_never_share_or_lose_an_entry(manager: RepositoryManager) -> None:
    store = manager.outbox
    await store.ensure_ready()
    async with await manager.client.start_session() as session:
        session.start_transaction()
        await store.add(
            [OutboxEvent("bulk", {"i": i}, aggregate_id=f"agg-{i % 20}") for i in range(200)], session=session
        )
        await session.commit_transaction()
    got: dict[str, list[OutboxEntry]] = {"a": [], "b": []}

    async def relay(owner: str) -> None:
        while True:
            batch = await store.claim(owner, limit=17)
            if not batch:
                if (await store.status()).backlog == 0:
                    return
                await anyio.sleep(0.01)
                continue
            got[owner].extend(batch)
            assert await store.mark_done(batch) == len(batch)

    with anyio.fail_after(60):
        async with anyio.create_task_group() as tg:
            tg.start_soon(relay, "a")
            tg.start_soon(relay, "b")
    ids = [e.event_id for e in got["a"] + got["b"]]
    assert len(ids) == len(set(ids)) == 200
    # each relay saw every aggregate's entries in their written order
    for owner in "ab":
        seqs: dict[str | None, int] = {}
        for e in got[owner]:
            assert e.seq > seqs.get(e.aggregate_id, 0)
            seqs[e.aggregate_id] = e.seq


# ---------------------------------------------------------------------- operating


async def test_status_replay_purge_and_failed_entries(manager: RepositoryManager) -> None:
    store = manager.outbox
    ok, bad = await add_pending(store, None, None)
    batch = await store.claim("r")
    await store.mark_done(batch[:1])
    assert await store.mark_failed(batch[1], "EventTooLargeError: too big")
    status = await store.status()
    assert (status.backlog, status.done, status.failed, status.lag_seconds) == (0, 1, 1, 0.0)
    assert await store.backlog() == (0, None)
    woken: list[int] = []
    remove = store.add_listener(lambda: woken.append(1))
    replayed = await store.replay(bad)
    remove()
    assert replayed.status == "pending" and replayed.attempts == 0 and woken == [1]
    status = await store.status()
    assert status.backlog == 1 and status.oldest_pending_at is not None and status.lag_seconds >= 0
    assert await store.backlog() == (1, status.oldest_pending_at)
    with pytest.raises(OutboxEntryNotFoundError):
        await store.replay("no-such-event")
    assert await store.purge(done_older_than=3600) == 0
    assert await store.purge(done_older_than=timedelta(0)) == 1
    assert await store.get(ok) is None and await store.get(bad) is not None


async def test_concurrent_writes_with_events_stay_atomic(manager: RepositoryManager) -> None:
    await create_collections(manager)
    users = manager.repository(UserRepository)

    async def create(i: int) -> None:
        await users.create(
            {"name": f"u{i}", "email": f"u{i}@x.io"}, events=[OutboxEvent("user.created", {"i": i})]
        )

    async def aborted(i: int) -> None:
        async def work(session: AsyncIOMotorClientSession) -> None:
            await users.create(
                {"name": f"x{i}", "email": f"x{i}@x.io"}, session=session, events=[OutboxEvent("x", {"i": i})]
            )
            raise RuntimeError("abort")

        with pytest.raises(RuntimeError):
            await manager.with_transaction(work)

    async with anyio.create_task_group() as tg:
        for i in range(20):
            tg.start_soon(create, i)
            tg.start_soon(aborted, i)
    assert sorted(u.name for u in await users.find()) == sorted(f"u{i}" for i in range(20))
    assert sorted(e["data"]["i"] for e in await entries(manager)) == list(range(20))
