"""The client side of the system tests: ``POST /users`` to the web processes, recording what came back.

On ``sys.path`` through pyproject's pytest ``pythonpath`` (a unique name: all tests share ``sys.modules``).
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections import Counter
from collections.abc import Callable
from typing import Generic, Protocol, TypeVar

import httpx


class UserLoad:
    """Creates user ``i`` (``user{i}@{tag}.example``) with ``POST /users`` on the web processes at ``urls``.

    An attempt that meets a transport error (a killed web process) is sent again, ``pause`` seconds
    later, to the next web process, up to ``attempts`` in all; with ``retry_errors`` so is one
    answered with an error status. A 409 after a failed attempt means an earlier attempt stored the user.
    """

    def __init__(
        self,
        urls: list[str],
        *,
        tag: str,
        user_id: str,
        attempts: int,
        pause: float,
        retry_errors: bool = False,
    ) -> None:
        self.urls, self.tag, self.user_id = urls, tag, user_id
        self.attempts, self.pause, self.retry_errors = attempts, pause, retry_errors
        self.done = 0
        """Users whose requests are over (created or not)."""
        self.created: dict[str, str] = {}  # email -> id (201)
        self.conflict_on_retry: list[str] = []
        self.failed: list[tuple[str, str]] = []  # email, why its last attempt failed
        self.statuses: Counter[int] = Counter()
        self.transport_errors = 0
        self.latencies: list[float] = []  # seconds, of every HTTP response

    def email(self, i: int) -> str:
        return f"user{i}@{self.tag}.example"

    @property
    def responses(self) -> int:
        """HTTP responses received (what the servers' metrics count)."""
        return sum(self.statuses.values())

    def answered(self, email: str, response: httpx.Response, took: float) -> None:
        """Record one HTTP response that took ``took`` seconds (subclasses record more)."""
        self.latencies.append(took)
        self.statuses[response.status_code] += 1

    async def create(self, client: httpx.AsyncClient, i: int) -> None:
        """Create user ``i``, retrying as the class says; the outcome lands in the attributes."""
        email = self.email(i)
        why = ""
        for attempt in range(self.attempts):
            if attempt:
                await asyncio.sleep(self.pause)
            url = self.urls[(i + attempt) % len(self.urls)]
            t0 = time.perf_counter()
            try:
                r = await client.post(
                    f"{url}/users",
                    json={"name": f"User {i}", "email": email},
                    headers={"x-user-id": self.user_id},
                )
            except httpx.TransportError as exc:
                self.transport_errors += 1
                why = f"{type(exc).__name__}: {exc}"
                continue
            self.answered(email, r, time.perf_counter() - t0)
            if r.status_code == 201:
                self.created[email] = r.json()["id"]
                return
            if r.status_code == 409 and attempt > 0:
                self.conflict_on_retry.append(email)
                return
            why = f"{r.status_code} {r.text[:200]}"
            if not self.retry_errors:
                break
        self.failed.append((email, why))

    def percentile(self, q: float) -> float:
        lat = sorted(self.latencies)
        return lat[min(len(lat) - 1, int(len(lat) * q))] if lat else float("nan")


class Runnable(Protocol):
    done: int

    async def run(self) -> None: ...


L = TypeVar("L", bound=Runnable)


class LoadThread(Generic[L]):
    """Runs a load in a thread, so the test's (main) thread makes the faults meanwhile.

    The embedded servers' parent-death signal belongs to the thread that started them: Redis is
    stopped and started again from the main thread only.
    """

    def __init__(self, load: L) -> None:
        self.load = load
        self.errors: list[BaseException] = []
        self.thread = threading.Thread(target=self._target, name="load")

    def _target(self) -> None:
        try:
            asyncio.run(self.load.run())
        except BaseException as exc:  # re-raised by join(), in the test's thread
            self.errors.append(exc)

    def __enter__(self) -> LoadThread[L]:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.thread.join(300)

    def wait_until(self, ready: Callable[[], bool], what: str, timeout: float = 120) -> None:
        """Block until ``ready()`` or the load ends; fail after ``timeout`` seconds saying ``what``.

        Polls between short joins of the load thread, so the end of the load wakes it at once.
        """
        deadline = time.monotonic() + timeout
        while not ready() and self.thread.is_alive():
            assert time.monotonic() < deadline, f"{what}: not within {timeout:g} s"
            self.thread.join(0.005)

    def wait_done(self, n: int, timeout: float = 120) -> None:
        """Block until ``n`` requests are done (or the load ended)."""
        self.wait_until(lambda: self.load.done >= n, f"{n} requests done (now {self.load.done})", timeout)

    def join(self) -> L:
        self.thread.join(300)
        assert not self.thread.is_alive(), "the load did not finish"
        if self.errors:
            raise self.errors[0]
        return self.load
