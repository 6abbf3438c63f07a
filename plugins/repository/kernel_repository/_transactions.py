"""Transactions: run a callback in one session, commit, retry what the driver labels transient."""

from __future__ import annotations

import asyncio
import contextlib
import weakref
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any, TypeVar

import anyio
from motor.motor_asyncio import AsyncIOMotorClient, AsyncIOMotorClientSession

from ._errors import has_label, map_error

T = TypeVar("T")

Session = AsyncIOMotorClientSession
"""The session a transaction callback receives; pass it as ``session=`` to every repository call."""


_SERIAL: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, dict[tuple[str, int], anyio.Lock]] = (
    weakref.WeakKeyDictionary()
)
"""Per event loop, one lock per nx-27017 server (see :func:`_one_at_a_time`).

Keyed by the asyncio loop (motor is asyncio-only; anyio has no "current loop"): a lock's waiters are
futures of one loop, and a lock left held by a loop that ended must not block the next one."""
_CHECKED: weakref.WeakKeyDictionary[Any, tuple[str, int] | None] = weakref.WeakKeyDictionary()
"""Client -> the nx-27017 server it talks to, or ``None`` for any other server."""


async def _serial_key(client: AsyncIOMotorClient[Any]) -> tuple[str, int] | None:
    if client in _CHECKED:
        return _CHECKED[client]
    try:
        info = await client.admin.command("buildInfo")
    except Exception:  # the transaction itself reports an unreachable server
        return None
    address: tuple[str, int] | None = client.address  # type: ignore[assignment] # a property at runtime
    key = address if info.get("process") == "nx_27017" and address is not None else None
    _CHECKED[client] = key
    return key


@contextlib.asynccontextmanager
async def _one_at_a_time(client: AsyncIOMotorClient[Any]) -> AsyncIterator[None]:
    """Serialize this process's transactions on an nx-27017 server (no-op on MongoDB).

    The wire server runs every session's transaction as a SAVEPOINT on one shared SQLite
    connection: two at once nest, and committing one commits the other (measured with
    nx-27017 0.8.1: of 20 concurrent transactions 18 failed with "no such savepoint" while
    their writes stayed visible). The server this plugin launches also gates transactions
    server-wide (``_wire_gate``, covering other processes); this lock queues a process's own
    transactions instead of holding that gate up. The lock belongs to the task that runs the
    transaction: a nested ``run_transaction`` in its callback raises ``RuntimeError`` (it would
    wait for itself).
    """
    key = await _serial_key(client)
    if key is None:
        yield
        return
    locks = _SERIAL.setdefault(asyncio.get_running_loop(), {})
    lock = locks.get(key)
    if lock is None:
        lock = locks[key] = anyio.Lock()
    async with lock:
        yield


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
    async with _one_at_a_time(client):
        return await _run(client, callback, attempts)


async def _run(
    client: AsyncIOMotorClient[Any], callback: Callable[[Session], Awaitable[T]], attempts: int
) -> T:
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
