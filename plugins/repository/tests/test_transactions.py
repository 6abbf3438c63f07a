"""with_transaction: commit, abort on exception, no partial writes, transient-error retries."""

from __future__ import annotations

import anyio
import anyio.lowlevel
import pytest
from kernel_errors import ConflictError, DatabaseError
from kernel_repository import RepositoryManager
from kernel_repository.testing import on_wire_server
from motor.motor_asyncio import AsyncIOMotorClientSession
from pymongo.errors import OperationFailure
from repository_models import (
    PublisherRepository,
    User,
    UserRepository,
    create_collections,
    wire_server_deviation,
)

pytestmark = pytest.mark.anyio


class ConflictingWork:
    """A transaction callback: creates a user, then fails with a write conflict until call ``succeed_at``."""

    def __init__(self, users: UserRepository, succeed_at: int | None) -> None:
        self.users = users
        self.succeed_at = succeed_at
        self.calls = 0

    async def __call__(self, session: AsyncIOMotorClientSession) -> int:
        self.calls += 1
        name = f"try{self.calls}"
        await self.users.create({"name": name, "email": f"{name}@x.io"}, session=session)
        if self.succeed_at is None or self.calls < self.succeed_at:
            # What the server sends on a write conflict; the driver exposes the label.
            error = OperationFailure("WriteConflict", code=112)
            error._add_error_label("TransientTransactionError")
            raise error
        return self.calls


async def test_commit_makes_every_write_visible(manager: RepositoryManager) -> None:
    await create_collections(manager)
    users = manager.repository(UserRepository)
    pubs = manager.repository(PublisherRepository)

    async def work(session: AsyncIOMotorClientSession) -> User:
        user = await users.create({"name": "T", "email": "t@x.io"}, session=session)
        await pubs.create({"name": "P"}, session=session)
        await users.update_by_id(user.id, {"age": 5}, session=session)
        # Reads inside the transaction see its own writes.
        assert (await users.find_by_id(user.id, session=session)).age == 5  # type: ignore[union-attr]
        return user

    user = await users.with_transaction(work)
    assert (await users.find_by_id(user.id)).age == 5  # type: ignore[union-attr]
    assert await pubs.count() == 1


async def test_concurrent_transactions_of_one_process_all_commit(manager: RepositoryManager) -> None:
    # on nx-27017 they queue on the process's lock (two at once would nest); on MongoDB they overlap
    await create_collections(manager)
    users = manager.repository(UserRepository)

    async def one(i: int) -> None:
        async def work(session: AsyncIOMotorClientSession) -> None:
            await users.create({"name": f"a{i}", "email": f"a{i}@x.io"}, session=session)
            await anyio.lowlevel.checkpoint()  # let the other transactions start
            await users.create({"name": f"b{i}", "email": f"b{i}@x.io"}, session=session)

        await users.with_transaction(work)

    async with anyio.create_task_group() as tg:
        for i in range(8):
            tg.start_soon(one, i)
    assert await users.count() == 16


@pytest.mark.skipif(not on_wire_server(), reason="the per-process lock serializes nx-27017 only")
async def test_a_nested_transaction_on_the_wire_server_raises_instead_of_waiting_for_itself(
    manager: RepositoryManager,
) -> None:
    await create_collections(manager)
    users = manager.repository(UserRepository)

    async def inner(session: AsyncIOMotorClientSession) -> None:
        await users.create({"name": "in", "email": "in@x.io"}, session=session)

    async def outer(session: AsyncIOMotorClientSession) -> None:
        await users.create({"name": "out", "email": "out@x.io"}, session=session)
        await users.with_transaction(inner)

    with pytest.raises(RuntimeError, match="already held"):
        with anyio.fail_after(30):
            await users.with_transaction(outer)
    assert await users.count() == 0


async def test_exception_aborts_everything(manager: RepositoryManager) -> None:
    await create_collections(manager)
    users = manager.repository(UserRepository)
    pubs = manager.repository(PublisherRepository)
    existing = await users.create({"name": "keep", "email": "keep@x.io"})

    async def work(session: AsyncIOMotorClientSession) -> None:
        await users.create({"name": "A", "email": "a@x.io"}, session=session)
        await pubs.create({"name": "P"}, session=session)
        await users.update_by_id(existing.id, {"name": "changed"}, session=session)
        await users.delete_many({}, session=session)
        raise RuntimeError("boom")

    with pytest.raises(RuntimeError, match="boom"):
        await manager.with_transaction(work)
    assert [u.name for u in await users.find()] == ["keep"]
    assert await pubs.count() == 0


async def test_database_error_inside_aborts_and_is_mapped(manager: RepositoryManager) -> None:
    await create_collections(manager)
    users = manager.repository(UserRepository)
    await users.create({"name": "A", "email": "dup@x.io"})

    async def work(session: AsyncIOMotorClientSession) -> None:
        await users.create({"name": "B", "email": "fresh@x.io"}, session=session)
        await users.create({"name": "C", "email": "dup@x.io"}, session=session)

    with pytest.raises(ConflictError):
        await users.with_transaction(work)
    assert await users.count() == 1 and not await users.exists({"email": "fresh@x.io"})


async def test_transient_errors_rerun_the_callback(manager: RepositoryManager) -> None:
    await create_collections(manager)
    users = manager.repository(UserRepository)
    work = ConflictingWork(users, succeed_at=3)

    assert await manager.with_transaction(work, attempts=3) == 3
    # Only the last attempt's write survives: the two aborted attempts left nothing behind.
    assert [u.name for u in await users.find()] == ["try3"]


async def test_transient_errors_give_up_after_attempts(manager: RepositoryManager) -> None:
    await create_collections(manager)
    users = manager.repository(UserRepository)
    work = ConflictingWork(users, succeed_at=None)

    with pytest.raises(DatabaseError) as info:
        await users.with_transaction(work, attempts=2)
    assert work.calls == 2 and isinstance(info.value.__cause__, OperationFailure)
    assert await users.count() == 0


async def test_non_transient_errors_are_not_retried(manager: RepositoryManager) -> None:
    calls = 0

    async def work(session: AsyncIOMotorClientSession) -> None:
        nonlocal calls
        calls += 1
        raise ValueError("bad input")

    with pytest.raises(ValueError, match="bad input"):
        await manager.with_transaction(work, attempts=5)
    assert calls == 1


@wire_server_deviation(
    "a collection first created inside an aborted transaction is left unusable "
    "('no such table'); create collections before using them in transactions"
)
async def test_collection_created_in_aborted_transaction_stays_usable(manager: RepositoryManager) -> None:
    pubs = manager.repository(PublisherRepository)

    async def work(session: AsyncIOMotorClientSession) -> None:
        await pubs.create({"name": "P"}, session=session)
        raise RuntimeError("abort")

    with pytest.raises(RuntimeError):
        await manager.with_transaction(work)
    assert await pubs.count() == 0
