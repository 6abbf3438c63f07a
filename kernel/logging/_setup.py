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

_trace_id: contextvars.ContextVar[str | None] = contextvars.ContextVar("kernel_trace_id", default=None)

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


# The context variable's own methods, not wrapper functions: requests and events call them once or
# twice each, and a Python-level wrapper costs as much again as the variable access.
get_trace_id: Final[Callable[[], str | None]] = _trace_id.get
"""``get_trace_id()``: the trace id of the current context, if any."""

set_trace_id: Final[Callable[[str | None], contextvars.Token[str | None]]] = _trace_id.set
"""``set_trace_id(trace_id)``: set the current trace id; keep the token for :func:`reset_trace_id`."""

reset_trace_id: Final[Callable[[contextvars.Token[str | None]], None]] = _trace_id.reset
"""``reset_trace_id(token)``: restore the trace id current before :func:`set_trace_id` returned ``token``."""


@contextmanager
def trace_context(trace_id: str | None = None) -> Iterator[str]:
    """Run a block with ``trace_id`` (a new one when omitted) as the current trace id."""
    tid = trace_id or new_trace_id()
    token = _trace_id.set(tid)
    try:
        yield tid
    finally:
        _trace_id.reset(token)


class TraceIdFilter(logging.Filter):
    """Adds ``record.trace_id`` from the context."""

    def filter(self, record: logging.LogRecord) -> bool:
        if not hasattr(record, "trace_id"):
            record.trace_id = _trace_id.get()
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
