"""The ASGI lifespan protocol, implemented once: boot the kernel on startup, stop it on shutdown."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Callable, Mapping
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from typing import Any

from .._kernel import Kernel
from .._plugin import ASGIApp, Message, Receive, Scope, Send

log = logging.getLogger("kernel.asgi")

KernelOrFactory = Kernel | Callable[[], Kernel]


def lifespan_for(kernel: KernelOrFactory) -> Callable[[Any], AbstractAsyncContextManager[dict[str, Any]]]:
    """A Starlette/FastAPI ``lifespan=`` that boots ``kernel`` and shuts it down.

    The booted kernel is put in the lifespan state as ``request.state.kernel``.
    Pass a factory to build the kernel only when the server starts.
    """

    @asynccontextmanager
    async def lifespan(app: Any) -> AsyncIterator[dict[str, Any]]:
        k = kernel() if callable(kernel) and not isinstance(kernel, Kernel) else kernel
        async with k:
            if app is not None and hasattr(app, "state"):
                app.state.kernel = k
            yield {"kernel": k}

    return lifespan


async def run_lifespan(
    scope: Scope,
    receive: Receive,
    send: Send,
    context: AbstractAsyncContextManager[Mapping[str, Any]],
    *,
    name: str,
    traceback: bool = False,
) -> None:
    """Answer a server's ``lifespan`` scope: enter ``context`` on startup, exit it on shutdown.

    Both happen in this task at one nesting level (a kernel needs that: see ``Kernel.start``);
    if this task is cancelled or fails while serving, ``context`` is exited before that propagates.

    What ``context`` yields goes into the lifespan state (``request.state``). A failure is
    logged as ``<name>: startup failed: …`` (with its traceback if asked) and reported to the
    server, which then exits without serving.
    """
    message = await receive()
    assert message["type"] == "lifespan.startup", message
    try:
        state = await context.__aenter__()
    except Exception as exc:
        log.error("%s: startup failed: %s", name, exc, exc_info=exc if traceback else None)
        await send({"type": "lifespan.startup.failed", "message": str(exc)})
        return
    try:
        if "state" in scope:
            scope["state"].update(state)
        await send({"type": "lifespan.startup.complete"})
        message = await receive()
    except BaseException as exc:
        # Say the server cancels this task instead of sending lifespan.shutdown: ``context``
        # is still exited here, in the task and at the nesting it was entered at.
        await context.__aexit__(type(exc), exc, exc.__traceback__)
        raise
    assert message["type"] == "lifespan.shutdown", message
    try:
        await context.__aexit__(None, None, None)
    except Exception as exc:
        log.error("%s: shutdown failed: %s", name, exc, exc_info=exc if traceback else None)
        await send({"type": "lifespan.shutdown.failed", "message": str(exc)})
        return
    await send({"type": "lifespan.shutdown.complete"})


async def observe_lifespan(
    app: ASGIApp,
    scope: Scope,
    receive: Receive,
    send: Send,
    *,
    started: Callable[[], None],
    stopping: Callable[[], None],
) -> None:
    """Pass a ``lifespan`` scope to ``app``; call ``started()`` when its startup completed (before the
    server hears of it) and ``stopping()`` when the server asks for the shutdown (before ``app`` does).

    ``stopping()`` also runs if ``app`` returns or fails without a shutdown message.
    """

    async def watched_send(message: Message) -> None:
        if message["type"] == "lifespan.startup.complete":
            started()
        await send(message)

    async def watched_receive() -> Message:
        message = await receive()
        if message["type"] == "lifespan.shutdown":
            stopping()
        return message

    try:
        await app(scope, watched_receive, watched_send)
    finally:
        stopping()


class LifespanMiddleware:
    """Wrap any ASGI app so that the server's lifespan boots and stops the kernel.

    For frameworks without a ``lifespan=`` parameter. Lifespan events are handled
    here and not forwarded to ``app``.
    """

    def __init__(self, app: ASGIApp, kernel: KernelOrFactory) -> None:
        self.app = app
        self._cm = lifespan_for(kernel)(None)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "lifespan":
            await self.app(scope, receive, send)
            return
        await run_lifespan(scope, receive, send, self._cm, name="kernel lifespan", traceback=True)
