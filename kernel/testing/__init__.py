"""Boot a kernel with exactly the plugins a test names, inline config and service overrides.

>>> async def test_cache():                                   # doctest: +SKIP
...     async with boot_kernel("cache", config={"cache": {"default_ttl": 5}}) as kernel:
...         cache = kernel.get(CacheManager)
"""

from __future__ import annotations

import importlib
import inspect
import re
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from contextlib import asynccontextmanager
from typing import Any, TypedDict, TypeVar, Unpack
from urllib.parse import quote

import anyio

from .._kernel import Kernel
from .._plugin import ASGIApp, Message, Plugin, Scope
from .._registry import Key, Registry
from ..process._testing import (
    assert_dies_with_parent,
    assert_startup_times_out,
    kill_left_running,
    process_alive,
    wait_gone,
)

__all__ = [
    "KernelOptions",
    "asgi_request",
    "assert_dies_with_parent",
    "assert_no_password",
    "assert_startup_times_out",
    "boot_kernel",
    "http_scope",
    "kill_left_running",
    "make_kernel",
    "poll_until",
    "process_alive",
    "urls_with_passwords",
    "wait_gone",
    "wait_until",
]


T = TypeVar("T")


class KernelOptions(TypedDict, total=False):
    """The keywords of :func:`make_kernel` and :func:`boot_kernel` (see ``make_kernel``)."""

    config: Mapping[str, Mapping[str, Any]] | None
    settings: Mapping[str, Any] | None
    sections: Mapping[str, tuple[type[Any], Mapping[str, Any]]] | None
    overrides: Mapping[Key, object] | None
    environ: Mapping[str, str] | None
    entry_points: bool
    processes: int


def make_kernel(*plugins: str | Plugin | type[Plugin], **options: Unpack[KernelOptions]) -> Kernel:
    """A configured (unbooted) kernel.

    ``plugins`` are names of installed plugins or plugin classes/instances;
    exactly these are enabled, in this order before dependency sorting.
    ``config`` maps plugin name to its table; ``settings`` fills ``[kernel]``
    (``env`` defaults to ``"test"``); ``sections`` maps a host table name to
    ``(attrs class, data)``; ``overrides`` pre-fills registry overrides so that
    plugins resolving those keys get the test doubles. The process environment
    is ignored unless ``environ`` is given. ``processes`` is what the plugins' ``kernel_check``
    hooks see as the number of serving processes (``kernel serve --workers``).
    """
    unknown = sorted(set(options) - set(KernelOptions.__annotations__))
    if unknown:
        raise TypeError(f"make_kernel() got unexpected keyword arguments: {', '.join(unknown)}")
    objects = [p for p in plugins if not isinstance(p, str)]
    names = [p if isinstance(p, str) else p.name for p in plugins]
    doc: dict[str, Any] = {
        "kernel": {"env": "test", **(options.get("settings") or {}), "plugins": names},
        "plugins": {k: dict(v) for k, v in (options.get("config") or {}).items()},
    }
    section_types: dict[str, type[Any]] = {}
    for table, (cls, data) in (options.get("sections") or {}).items():
        section_types[table] = cls
        doc[table] = dict(data)
    registry = Registry()
    for key, service in (options.get("overrides") or {}).items():
        registry.set_override(key, service)
    return Kernel.from_dict(
        doc,
        environ=options.get("environ") or {},
        sections=section_types,
        plugins=objects,
        entry_points=options.get("entry_points", True),
        registry=registry,
        processes=options.get("processes", 1),
    )


@asynccontextmanager
async def boot_kernel(
    *plugins: str | Plugin | type[Plugin], **options: Unpack[KernelOptions]
) -> AsyncIterator[Kernel]:
    """``make_kernel(...)``, booted for the block and shut down after it."""
    kernel = make_kernel(*plugins, **options)
    async with kernel:
        yield kernel


def http_scope(path: str, method: str = "GET", **extra: Any) -> Scope:
    """The ASGI scope of an HTTP/1.1 ``method`` request from 127.0.0.1; ``extra`` keys replace its own."""
    return {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": method,
        "scheme": "http",
        "path": path,
        "raw_path": path.encode(),
        "root_path": "",
        "query_string": b"",
        "headers": [(b"host", b"test")],
        "client": ("127.0.0.1", 50000),
        "server": ("test", 80),
        **extra,
    }


async def asgi_request(app: ASGIApp, scope: Scope) -> list[Message]:
    """Send one request with an empty body straight to the ASGI ``app`` (no server); what it sent."""
    sent: list[Message] = []

    async def receive() -> Message:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: Message) -> None:
        sent.append(message)

    await app(scope, receive, send)
    return sent


async def wait_until(
    predicate: Callable[[], object | Awaitable[object]],
    timeout: float = 10.0,  # noqa: ASYNC109 - a polling deadline, not a cancel scope for callers
    *,
    interval: float = 0.01,
    what: str = "condition",
) -> None:
    """Poll ``predicate`` (sync or async) every ``interval`` s until it is truthy.

    Raises ``AssertionError`` naming ``what`` after ``timeout`` seconds: tests wait on a
    real state instead of a fixed sleep, and a loaded machine only makes them slower.
    """
    deadline = time.monotonic() + timeout
    while True:
        result = predicate()
        if inspect.isawaitable(result):
            result = await result
        if result:
            return
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        await anyio.sleep(interval)


def poll_until(
    predicate: Callable[[], T],
    timeout: float = 10.0,
    *,
    interval: float = 0.05,
    what: str = "condition",
) -> T:
    """:func:`wait_until` for synchronous tests (other processes, a blocking client): poll
    ``predicate`` every ``interval`` s until it returns a truthy value, and return that value.

    Raises ``AssertionError`` naming ``what`` after ``timeout`` seconds.
    """
    deadline = time.monotonic() + timeout
    while True:
        result = predicate()
        if result:
            return result
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(interval)


# Passwords are runs of 4+ capital letters joined by characters that break URL parsing; nothing
# else in a generated URL has a capital letter, so finding one run in a text means a leak.
_SEGMENT = re.compile(r"[A-Z]{4,}")
_BREAKERS = "/#?@:&=%!$;,+[] "


def urls_with_passwords(schemes: Sequence[str] = ("redis", "rediss", "unix")) -> Any:
    """A hypothesis strategy of ``(url, password)``: well-formed and malformed URLs with a password.

    Well-formed ones percent-encode it; malformed ones have it raw (with ``/``, ``#``, ``@``…),
    miss the host, the ``//``, the ``@`` or the scheme, or put it in the query. Check every
    message, log line and output built from ``url`` with :func:`assert_no_password`. Needs
    ``hypothesis`` (imported here, not with this module).
    """
    # Imported by name: hypothesis is a test dependency, not one of the kernel's.
    st = importlib.import_module("hypothesis.strategies")

    segment = st.text("ABCDEFGHIJKLMNOPQRSTUVWXYZ", min_size=4, max_size=8)
    breaker = st.text(_BREAKERS, min_size=1, max_size=3)
    password = st.builds(
        lambda first, rest, edges: edges[0] + first + "".join(b + s for b, s in rest) + edges[1],
        segment,
        st.lists(st.tuples(breaker, segment), max_size=3),
        st.tuples(st.sampled_from(["", *_BREAKERS]), st.sampled_from(["", *_BREAKERS])),
    )
    name = st.from_regex(r"[a-z][a-z0-9]{0,7}", fullmatch=True)

    def build(scheme: str, user: str, host: str, port: int, db: int, pw: str, form: int) -> tuple[str, str]:
        q = quote(pw, safe="")
        if scheme == "unix":
            forms = [
                f"unix://:{q}@/tmp/{host}.sock",
                f"unix:///tmp/{host}.sock?db={db}&password={q}",
                f"unix://:{pw}@",
                f"unix://:{pw}@/tmp/{host}.sock",
                f"unix:///tmp/{host}.sock?password={pw}",
                f"unix://{user}:{pw}@",
            ]
        else:
            forms = [
                f"{scheme}://:{q}@{host}:{port}/{db}",
                f"{scheme}://{user}:{q}@{host}/{db}",
                f"{scheme}://{host}:{port}/{db}?password={q}",
                f"{scheme}://{user}:{q}@{host}:{port},{host}2:{port}/{db}?authSource=admin",
                f"{scheme}://:{pw}@{host}:{port}/{db}",
                f"{scheme}://{user}:{pw}@{host}/{db}",
                # A lone user info: its part before a ':' would be a user name, by URL syntax.
                f"{scheme}://{pw.replace(':', '')}@{host}",
                f"{scheme}://:{pw}@",
                f"{scheme}://{user}:{pw}@",
                f"{scheme}:/:{pw}@{host}",
                f"{scheme}:{pw}@{host}",
                f":{pw}@{host}",
                f"{user}:{pw}@{host}:{port}",
                f"{scheme}://{host}:{port}/{db}?password={pw}",
                f"{scheme}://{host}/{db}?db=1&password={pw}&x=1",
                f"{scheme}://:{pw}@{host}:{pw}/{db}",
                f"{scheme}://[{host}:{pw}@{host}",
                # No '@' and no host: an '@' in the password would make the rest a host name.
                f"{scheme}://:{pw.replace('@', '')}",
                f"{scheme}://{host}:{pw.replace('@', '')}/{db}",
            ]
        return forms[form % len(forms)], pw

    return st.builds(
        build,
        st.sampled_from(list(schemes)),
        name,
        name,
        st.integers(0, 99999),
        st.integers(0, 20),
        password,
        st.integers(0, 99),
    )


def assert_no_password(text: str, password: str) -> None:
    """Fail when ``text`` shows ``password`` (from :func:`urls_with_passwords`) or any part of it."""
    leaked = [s for s in _SEGMENT.findall(password) if s in text]
    assert not leaked and password not in text, f"password parts {leaked} shown in: {text}"
