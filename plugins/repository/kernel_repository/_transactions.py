"""Transactions: run a callback in one session, commit, retry what the driver labels transient."""

from __future__ import annotations

import contextlib
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

from motor.motor_asyncio import AsyncIOMotorClient, AsyncIOMotorClientSession

from ._errors import has_label, map_error

T = TypeVar("T")

Session = AsyncIOMotorClientSession
"""The session a transaction callback receives; pass it as ``session=`` to every repository call."""


async def run_transaction(
    client: AsyncIOMotorClient[Any], callback: Callable[[Session], Awaitable[T]], *, attempts: int = 3
) -> T:
    """Run ``callback(session)`` in one transaction and commit it.

    Any exception aborts the transaction (no partial writes) and is re-raised (driver
    errors mapped to the ``errors`` plugin's types). Errors labelled
    ``TransientTransactionError`` rerun the whole callback, up to ``attempts`` times;
    ``UnknownTransactionCommitResult`` retries the commit. The callback must pass
    ``session=session`` to every repository call and be safe to rerun.
    """
    if attempts < 1:
        raise ValueError("attempts must be >= 1")
    try:
        session = await client.start_session()
    except Exception as exc:
        raise map_error(exc, "transaction", "") from exc
    async with session:
        for attempt in range(1, attempts + 1):
            retry = attempt < attempts
            session.start_transaction()
            try:
                result = await callback(session)
            except BaseException as exc:
                await _abort(session)
                if retry and has_label(exc, "TransientTransactionError"):
                    continue
                mapped = map_error(exc, "transaction", "")
                if mapped is exc:
                    raise
                raise mapped from exc
            try:
                await _commit(session, attempts)
            except Exception as exc:
                if retry and has_label(exc, "TransientTransactionError"):
                    continue
                raise map_error(exc, "commit", "") from exc
            return result
    raise AssertionError("unreachable")


async def _abort(session: Session) -> None:
    # A property at runtime (motor's stub declares a method).
    if session.in_transaction:  # type: ignore[truthy-function]
        # The callback's error is the one to report, not a failed abort.
        with contextlib.suppress(Exception):
            await session.abort_transaction()


async def _commit(session: Session, attempts: int) -> None:
    for attempt in range(1, attempts + 1):
        try:
            await session.commit_transaction()
            return
        except Exception as exc:
            if attempt < attempts and has_label(exc, "UnknownTransactionCommitResult"):
                continue
            raise
