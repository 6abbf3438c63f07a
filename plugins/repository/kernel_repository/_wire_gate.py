"""Inside the nx-27017 process: one transaction at a time, server-wide, isolated from other sessions.

nx-27017 (0.8.1) runs every session on one shared SQLite connection: a second session's
transaction nests as a SAVEPOINT inside the first (committing one commits the other, and the
second then fails with "no such savepoint"), and another session's plain write commits an open
transaction half-way. :func:`install` wraps the server's command handler so that while a
session has a transaction open, commands of every other session wait for its commit or abort;
an owner that stops sending commands for :data:`IDLE_ABORT` seconds while others wait (its
client died mid-transaction) is aborted, as MongoDB aborts a transaction past its lifetime.
:mod:`kernel_repository._server` imports this in the server process; nothing else should.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any

IDLE_ABORT = 5.0
"""Seconds an open transaction may go without a command while another session waits."""
_FREE = frozenset({"hello", "Hello", "ismaster", "isMaster", "ping", "buildInfo", "buildinfo"})
"""Commands that touch no data: never held up (server monitoring must keep answering)."""

Handle = Callable[[Any, dict[str, Any]], tuple[int, dict[str, Any]]]


class TransactionGate:
    """Who holds the server's one open transaction (an lsid), and since when it was last active."""

    def __init__(self, idle_abort: float = IDLE_ABORT) -> None:
        self.idle_abort = idle_abort
        self.cond = threading.Condition()
        self.owner: str | None = None
        self.active_at = 0.0

    def enter(self, handler: Any, sid: str | None, starting: bool) -> None:
        """Wait until no other session's transaction is open; take it when ``starting``."""
        with self.cond:
            while self.owner is not None and self.owner != sid:
                idle = time.monotonic() - self.active_at
                if idle >= self.idle_abort:
                    self._abort_owner(handler)
                    break
                self.cond.wait(self.idle_abort - idle)
            if self.owner == sid and sid is not None:
                self.active_at = time.monotonic()
            elif starting and sid is not None:
                self.owner, self.active_at = sid, time.monotonic()

    def leave(self, handler: Any, sid: str | None) -> None:
        """After a command of ``sid``: release when its transaction is over (commit, abort, end)."""
        with self.cond:
            if self.owner is None or self.owner != sid:
                return
            if not handler._tx_sessions(sid):  # committed, aborted or ended: nothing open any more
                self.owner = None
                self.cond.notify_all()
            else:
                self.active_at = time.monotonic()

    def _abort_owner(self, handler: Any) -> None:
        owner, self.owner = self.owner, None
        if owner is not None:
            for session in handler._tx_sessions(owner):
                try:
                    session.abort_transaction()
                except Exception:  # the waiter must go on whatever state the dead one left
                    session._in_transaction = False
        self.cond.notify_all()


def _body(msg: dict[str, Any]) -> dict[str, Any]:
    for kind, doc in msg.get("sections", ()):
        if kind == "body" and isinstance(doc, dict):
            return doc
    return {}


def gated(handle: Handle, gate: TransactionGate, extract: Callable[[Any], str | None]) -> Handle:
    """``handle`` (a handler method taking an OP_MSG) run under ``gate``."""

    def run(self: Any, msg: dict[str, Any]) -> tuple[int, dict[str, Any]]:
        body = _body(msg)
        if not body or _FREE.intersection(body):
            return handle(self, msg)
        lsid = body.get("lsid")
        sid = extract(lsid) if isinstance(lsid, dict) else None
        gate.enter(self, sid, bool(body.get("startTransaction")))
        try:
            return handle(self, msg)
        finally:
            gate.leave(self, sid)

    return run


def install() -> None:
    """Patch nx-27017's handler class (call before the server starts)."""
    from nx_27017.handler import NeoSQLiteHandler
    from nx_27017.wire_protocol import _extract_session_id

    gate = TransactionGate()
    for name in ("handle_command", "handle_insert"):
        setattr(NeoSQLiteHandler, name, gated(getattr(NeoSQLiteHandler, name), gate, _extract_session_id))
