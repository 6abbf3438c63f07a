"""A model and repository for the outbox tests (on sys.path through conftest)."""

from __future__ import annotations

from collections.abc import Callable
from contextlib import AbstractAsyncContextManager

from kernel_repository import BaseRepository, RepositoryManager
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
