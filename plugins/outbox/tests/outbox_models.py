"""A model and repository for the outbox tests (on sys.path through conftest)."""

from __future__ import annotations

from collections.abc import Callable
from contextlib import AbstractAsyncContextManager

from kernel_repository import BaseRepository, OutboxEvent, OutboxStore, RepositoryManager
from odmantic import Model

from kernel import Kernel

Boot = Callable[..., AbstractAsyncContextManager[Kernel]]
"""The ``boot`` fixture: ``async with boot(**outbox_settings) as kernel``."""


class Account(Model):
    owner: str
    balance: int = 0

    model_config = {"collection": "accounts"}


class AccountRepository(BaseRepository[Account]):
    pass


async def accounts(manager: RepositoryManager) -> AccountRepository:
    """The repository, its collection created first (nx-27017: not inside a transaction)."""
    if "accounts" not in await manager.database.list_collection_names():
        await manager.database.create_collection("accounts")
    return manager.repository(AccountRepository)


async def add_entries(store: OutboxStore, events: list[OutboxEvent]) -> None:
    """Commit ``events`` in one transaction, without waking any relay (as another process would)."""
    await store.ensure_ready()
    async with await store.database.client.start_session() as session:
        session.start_transaction()
        await store.add(events, session=session)
        await session.commit_transaction()
