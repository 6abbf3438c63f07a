"""``kernel serve``'s graceful drain: readiness 503 at SIGTERM, in-flight requests get a deadline.

At the first SIGTERM (or SIGINT) the process starts draining (:func:`kernel.health.begin_drain`:
``/health/ready`` answers 503) and goes on serving for ``delay`` seconds, so that load balancers
and Kubernetes see the 503 and stop sending requests. Then the signal is passed on to uvicorn's
own handler: uvicorn stops accepting connections and waits for the requests in flight. Those still
running ``timeout`` seconds after the signal are cut (503 if no response had started) and the
drain reports how many. A second signal skips the rest of the delay; one more is uvicorn's
(a second SIGINT forces the exit).

Only public APIs: the ``signal`` module (uvicorn's handler, installed while it serves, is kept and
called as the previous handler) and the ASGI protocol.
"""

from __future__ import annotations

import asyncio
import logging
import signal
import threading
import time
from collections.abc import Callable
from types import FrameType
from typing import Any

from .._health import begin_drain, end_drain
from .._plugin import ASGIApp, Message, Receive, Scope, Send
from ._app import send_json
from ._lifespan import observe_lifespan

log = logging.getLogger("kernel.serve")

SIGNALS = (signal.SIGINT, signal.SIGTERM)
Handler = Callable[[int, FrameType | None], Any] | int | None


class Drain:
    """Wrap the served ASGI app: track HTTP requests in flight, drain them at SIGTERM (see module)."""

    def __init__(self, app: ASGIApp, *, delay: float, timeout: float) -> None:
        if not 0 <= delay < timeout:
            raise ValueError(f"drain: need 0 <= delay < timeout, got delay={delay!r}, timeout={timeout!r}")
        self.app = app
        self.delay = delay
        self.timeout = timeout
        self.cut = 0
        """Requests cut at the deadline."""
        self.signalled_at: float | None = None
        self._accepting = True
        self._in_flight: set[asyncio.Task[Any]] = set()
        self._cutting: set[asyncio.Task[Any]] = set()
        self._previous: dict[int, Handler] = {}
        self._loop: asyncio.AbstractEventLoop | None = None
        self._timers: list[asyncio.TimerHandle] = []

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Serve an HTTP request tracked for the drain (inline: this runs on every request)."""
        # The server's task for this request, tracked as is: an anyio cancel scope per request
        # costs more (measured in-process: about +2 µs per request this way, +15 µs with a scope).
        task = asyncio.current_task()
        if scope["type"] != "http" or task is None:
            if scope["type"] == "lifespan":
                await self._lifespan(scope, receive, send)
            else:
                await self.app(scope, receive, send)
            return
        started = False

        async def tracked_send(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        self._in_flight.add(task)
        try:
            await self.app(scope, receive, tracked_send)
        except asyncio.CancelledError:
            if task not in self._cutting:
                raise
            task.uncancel()  # our own cancel, at the deadline: answer instead of failing the task
            self.cut += 1
            if not started:
                await send_json(
                    send,
                    503,
                    {"status": 503, "title": "Service Unavailable", "detail": "cut at the drain deadline"},
                    content_type="application/problem+json",
                    headers=[(b"connection", b"close")],
                )
        finally:
            self._in_flight.discard(task)
            self._cutting.discard(task)

    # ------------------------------------------------------------------ lifespan

    async def _lifespan(self, scope: Scope, receive: Receive, send: Send) -> None:
        await observe_lifespan(self.app, scope, receive, send, started=self._install, stopping=self._stopping)

    def _stopping(self) -> None:
        if self._previous or self._timers:
            self._uninstall()
            self._report()
        if self.signalled_at is not None:
            end_drain()  # nothing is served any more; a later serve() in this process starts ready

    def _install(self) -> None:
        """Put our handler in front of the server's (signals are only handled in the main thread)."""
        if threading.current_thread() is not threading.main_thread() or self._previous:
            return
        self._loop = asyncio.get_running_loop()
        for sig in SIGNALS:
            self._previous[sig] = signal.signal(sig, self._on_signal)

    def _uninstall(self) -> None:
        for handle in self._timers:
            handle.cancel()
        self._timers.clear()
        previous, self._previous = self._previous, {}
        for sig, handler in previous.items():
            if signal.getsignal(sig) == self._on_signal:  # nobody replaced ours since: put theirs back
                signal.signal(sig, handler)

    def _report(self) -> None:
        if self.signalled_at is None:
            return
        took = time.monotonic() - self.signalled_at
        if self.cut:
            log.error(
                "kernel serve: drain deadline of %gs passed: %d in-flight request(s) cut",
                self.timeout,
                self.cut,
                extra={"drain_timeout": self.timeout, "requests_cut": self.cut},
            )
        else:
            log.info(
                "kernel serve: drained: no request in flight %.2fs after the signal",
                took,
                extra={"drain_s": round(took, 3)},
            )

    # ------------------------------------------------------------------ signals

    def _on_signal(self, signum: int, frame: FrameType | None) -> None:
        """The signal handler: only flags and a thread-safe callback (safe in a signal handler)."""
        loop = self._loop
        if loop is None:
            return
        if self.signalled_at is None:
            self.signalled_at = time.monotonic()
            begin_drain()
            loop.call_soon_threadsafe(self._begin, signum, frame)
        else:
            loop.call_soon_threadsafe(self._stop_accepting, signum, frame)

    def _begin(self, signum: int, frame: FrameType | None) -> None:
        assert self._loop is not None and self.signalled_at is not None
        log.info(
            "kernel serve: %s: /health/ready answers 503; serving %gs more, then draining "
            "(requests still running %gs after the signal are cut)",
            signal.Signals(signum).name,
            self.delay,
            self.timeout,
            extra={"drain_delay": self.delay, "drain_timeout": self.timeout},
        )
        elapsed = time.monotonic() - self.signalled_at
        self._timers += [
            self._loop.call_later(max(0.0, self.delay - elapsed), self._delay_over, signum, frame),
            self._loop.call_later(max(0.0, self.timeout - elapsed), self._cut),
        ]

    def _delay_over(self, signum: int, frame: FrameType | None) -> None:
        if self._accepting:  # else a second signal ended the delay already
            self._stop_accepting(signum, frame)

    def _stop_accepting(self, signum: int, frame: FrameType | None) -> None:
        """Pass the signal on to the server's handler: it stops accepting and waits for requests."""
        if self._accepting:
            self._accepting = False
            log.info(
                "kernel serve: no longer accepting connections; %d request(s) in flight",
                len(self._in_flight),
                extra={"in_flight": len(self._in_flight)},
            )
        previous = self._previous.get(signum)
        if callable(previous):
            previous(signum, frame)
        else:  # no Python handler before ours (not under uvicorn): behave as without us
            self._uninstall()
            signal.raise_signal(signum)

    def _cut(self) -> None:
        for task in list(self._in_flight):
            self._cutting.add(task)
            task.cancel("cut at the drain deadline")
