"""Structured stdlib logging with a trace id carried in a context variable.

stdlib ``logging`` rather than structlog: every library a service uses (uvicorn,
saq, redis, motor) already logs through it, so one handler formats them all, and
the kernel stays free of extra dependencies. Extra fields go in ``extra={...}``.
"""

from __future__ import annotations

import contextvars
import json
import logging
import os
import sys
import time
from collections import deque
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any, Final

from .._secret import Secret


class TraceSlot:
    """The trace id current in a context, and who set it: the one per-request context value.

    ``owner`` is None when :func:`set_trace_id` (or :func:`trace_context`) set it; an HTTP layer
    that sets a slot for a request (the errors plugin's middleware) puts its request's task there,
    and :data:`FINISHED` once the request has finished, so that a later request finding the slot
    in a context copied from that one knows the id is stale. One context variable holds the slot:
    a request costs one set and one reset.
    """

    __slots__ = ("owner", "trace_id")

    def __init__(self, trace_id: str | None, owner: object = None) -> None:
        self.trace_id = trace_id
        self.owner = owner


_new_slot: Final = TraceSlot.__new__

FINISHED: Final = object()
"""A :class:`TraceSlot`'s ``owner`` once its request has finished: unequal to every task."""

_slot: contextvars.ContextVar[TraceSlot | None] = contextvars.ContextVar("kernel_trace", default=None)

# LogRecord attributes that are not user-supplied extras.
_STANDARD: Final = frozenset(
    vars(logging.LogRecord("", 0, "", 0, "", (), None)).keys()
    | {"message", "asctime", "trace_id", "color_message"}  # uvicorn adds a coloured copy of the message
)
_HANDLER_MARK: Final = "_kernel_handler"


# Random ids made _ID_BATCH at a time: one getrandom() call instead of one per request. A deque,
# because popleft() is atomic (threads never share an id, free-threaded builds included); a forked
# child drops what it inherited, so processes never hand out the same id.
_ID_BATCH: Final = 64
_spare_ids: deque[str] = deque()
_ID_STARTS: Final = range(0, 32 * _ID_BATCH, 32)
if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_spare_ids.clear)


def new_trace_id() -> str:
    """A fresh random trace id (32 hex characters, W3C trace-context sized)."""
    try:
        return _spare_ids.popleft()
    except IndexError:
        # one hex string cut into ids by slicing (split() tested every character for whitespace)
        hexed = os.urandom(16 * _ID_BATCH).hex()
        ids = [hexed[i : i + 32] for i in _ID_STARTS]
        _spare_ids.extend(ids[1:])
        return ids[0]


get_trace_slot: Final[Callable[[], TraceSlot | None]] = _slot.get
"""``get_trace_slot()``: the :class:`TraceSlot` of the current context, if any (the variable's own method)."""

set_trace_slot: Final[Callable[[TraceSlot | None], contextvars.Token[TraceSlot | None]]] = _slot.set
"""``set_trace_slot(slot)``: make ``slot`` current; keep the token for :func:`reset_trace_id`."""

reset_trace_id: Final[Callable[[contextvars.Token[TraceSlot | None]], None]] = _slot.reset
"""``reset_trace_id(token)``: restore the trace id current before :func:`set_trace_id` returned ``token``."""


def get_trace_id() -> str | None:
    """The trace id of the current context, if any."""
    slot = _slot.get()
    return None if slot is None else slot.trace_id


def set_trace_id(trace_id: str | None) -> contextvars.Token[TraceSlot | None]:
    """Set the current trace id; keep the token for :func:`reset_trace_id`."""
    if trace_id is None:
        return _slot.set(None)
    slot = _new_slot(TraceSlot)  # TraceSlot(trace_id) without running __init__ in Python
    slot.trace_id = trace_id
    slot.owner = None
    return _slot.set(slot)


@contextmanager
def trace_context(trace_id: str | None = None) -> Iterator[str]:
    """Run a block with ``trace_id`` (a new one when omitted) as the current trace id."""
    tid = trace_id or new_trace_id()
    token = _slot.set(TraceSlot(tid))
    try:
        yield tid
    finally:
        _slot.reset(token)


class TraceIdFilter(logging.Filter):
    """Adds ``record.trace_id`` from the context."""

    def filter(self, record: logging.LogRecord) -> bool:
        """Set ``record.trace_id`` (unless the record has one); always keep the record."""
        if not hasattr(record, "trace_id"):
            slot = _slot.get()
            record.trace_id = None if slot is None else slot.trace_id
        return True


def _extras(record: logging.LogRecord) -> dict[str, Any]:
    return {k: v for k, v in vars(record).items() if k not in _STANDARD and not k.startswith("_")}


def _jsonable(value: Any) -> Any:
    if isinstance(value, Secret):
        return str(value)
    if isinstance(value, str | int | float | bool) or value is None:
        return value
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple | set | frozenset):
        return [_jsonable(v) for v in value]
    return repr(value)


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time, level, logger, message, trace_id, extras."""

    def format(self, record: logging.LogRecord) -> str:
        """The record as one JSON line."""
        out: dict[str, Any] = {
            "time": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
            + f".{int(record.msecs):03d}Z",
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        trace_id = getattr(record, "trace_id", None)
        if trace_id:
            out["trace_id"] = trace_id
        out.update({k: _jsonable(v) for k, v in _extras(record).items()})
        if record.exc_info:
            out["exception"] = self.formatException(record.exc_info)
        return json.dumps(out, ensure_ascii=False)


class ConsoleFormatter(logging.Formatter):
    """Readable lines for development: ``time level logger message key=value … [trace]``."""

    def format(self, record: logging.LogRecord) -> str:
        """The record as one readable line."""
        stamp = time.strftime("%H:%M:%S", time.localtime(record.created))
        extras = " ".join(f"{k}={_jsonable(v)!r}" for k, v in _extras(record).items())
        trace_id = getattr(record, "trace_id", None)
        line = f"{stamp} {record.levelname:<7} {record.name}: {record.getMessage()}"
        if extras:
            line += f"  {extras}"
        if trace_id:
            line += f"  [trace={trace_id[:12]}]"
        if record.exc_info:
            line += "\n" + self.formatException(record.exc_info)
        return line


def configure_logging(env: str = "development", level: str = "INFO", fmt: str = "auto") -> None:
    """Install the kernel's handler on the root logger (idempotent).

    ``fmt="auto"`` means JSON in production and readable lines elsewhere.
    """
    use_json = fmt == "json" or (fmt == "auto" and env == "production")
    root = logging.getLogger()
    for handler in list(root.handlers):
        if getattr(handler, _HANDLER_MARK, False):
            root.removeHandler(handler)
    handler = logging.StreamHandler(sys.stderr)
    setattr(handler, _HANDLER_MARK, True)
    handler.addFilter(TraceIdFilter())
    handler.setFormatter(JsonFormatter() if use_json else ConsoleFormatter())
    root.addHandler(handler)
    root.setLevel(level)
