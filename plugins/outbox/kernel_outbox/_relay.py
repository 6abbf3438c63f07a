"""``OutboxRelay``: claims outbox entries, publishes them with their original identity, marks them done."""

from __future__ import annotations

import asyncio
import logging
import os
import random
import secrets
import socket
import time
from datetime import UTC, datetime
from typing import TYPE_CHECKING

import anyio
from anyio.abc import TaskStatus
from kernel_eventbus import EventBus, EventDataError, EventTooLargeError, PublishTimeoutError
from kernel_repository import OutboxEntry, OutboxStatus, OutboxStore

from ._config import OutboxConfig

if TYPE_CHECKING:  # optional: the relay records metrics only when the metrics plugin is enabled
    from kernel_metrics import Metrics

log = logging.getLogger("kernel.plugins.outbox")

_FIRST_BACKOFF = 0.1
_SETTLE_TIMEOUT = 5.0
"""How long a relay tries to mark a batch done (and give the rest back) before leaving it to its lease."""
_REJECTED = (EventTooLargeError, EventDataError)
"""The bus refuses these events whatever its state: retrying cannot help."""


class OutboxLagError(RuntimeError):
    """The oldest unpublished outbox entry is older than ``lag_degraded_seconds`` (health: degraded)."""


class _Metrics:
    """The relay's metrics, declared through the metrics plugin's collector."""

    def __init__(self, collector: Metrics) -> None:
        self.backlog = collector.gauge(
            "outbox_backlog", "Outbox entries not yet published", multiprocess_mode="max"
        )
        self.lag = collector.gauge(
            "outbox_lag_seconds", "Age of the oldest unpublished outbox entry", multiprocess_mode="max"
        )
        self.published = collector.counter("outbox_published_total", "Outbox entries published to the bus")
        self.errors = collector.counter(
            "outbox_publish_errors_total", "Failed outbox publishes, by reason", ["reason"]
        )
        self.duplicates = collector.counter(
            "outbox_duplicates_total",
            "Outbox entries this relay published that may be published twice, by reason",
            ["reason"],
        )
        self.takeovers = collector.counter(
            "outbox_takeovers_total",
            "Outbox entries claimed after another claim's lease ran out unsettled (maybe published already)",
        )


class OutboxRelay:
    """Publishes the outbox: claim a batch (a lease), publish each entry in order, mark them done.

    Every process may run one; they share the work through leases, with no leader. A
    relay that dies holding a batch simply lets its lease expire. While the bus fails,
    the failed entry is rescheduled and the relay waits (exponential backoff up to
    ``max_backoff``) before claiming again.
    """

    def __init__(
        self,
        store: OutboxStore,
        bus: EventBus,
        config: OutboxConfig | None = None,
        *,
        metrics: Metrics | None = None,
        owner: str | None = None,
    ) -> None:
        self.store = store
        self.bus = bus
        self.config = config or OutboxConfig()
        self.owner = owner or f"{socket.gethostname()}:{os.getpid()}:{secrets.token_hex(3)}"
        """The lease owner this relay writes on the entries it claims."""
        self.published = 0
        """Entries this relay published (and marked done)."""
        self.duplicates = 0
        """Entries this relay published that may also be published by another attempt."""
        self.takeovers = 0
        """Entries this relay claimed from a lease that ran out unsettled (its holder died or stalled):
        maybe published already by that holder, which (if it died) counted nothing."""
        self.last_error: str | None = None
        """The latest publish or database failure (``None`` after a success)."""
        self.backoff = 0.0
        """Current wait before the next claim after failures (0 when healthy)."""
        self.change_stream: bool | None = None
        """Whether a change stream wakes this relay (``None``: not tried)."""
        self._metrics = _Metrics(metrics) if metrics is not None else None
        self._lock = anyio.Lock()
        self._wake = anyio.Event()
        """Set to claim now; replaced by a fresh one after each wait (an ``anyio.Event`` is not cleared)."""
        self._stopping = False
        self._scope: anyio.CancelScope | None = None
        """The task group of :meth:`serve` while it runs (:meth:`stop` cancels it after the grace)."""
        self._ended: anyio.Event | None = None
        """Set when :meth:`serve` returns; ``None`` while the relay is stopped."""
        self._task: asyncio.Task[None] | None = None
        self._lag: tuple[int, float] | None = None
        self._lag_at = 0.0

    # ------------------------------------------------------------------ one batch

    async def run_once(self) -> int:
        """Claim one batch, publish it in order, mark it done; how many were published.

        A publish that fails reschedules that entry (attempt counted, retried after the
        backoff) and gives the rest of the batch back; an entry the bus rejects for good
        (too large) is marked ``failed``. Cancelled mid-batch, it still marks what it
        published and gives back the rest (or, if the database is gone, leaves them to
        their lease).
        """
        async with self._lock:
            batch = await self.store.claim(
                self.owner, limit=self.config.batch_size, lease=self.config.lease_seconds
            )
            if not batch:
                return 0
            self._count_takeovers(batch)
            return await self._publish_batch(batch)

    async def _publish_batch(self, batch: list[OutboxEntry]) -> int:
        deadline = time.monotonic() + self.config.lease_seconds / 2  # stop well inside the lease
        published: list[OutboxEntry] = []
        handled = 0
        failed = False
        try:
            for entry in batch:
                if time.monotonic() > deadline:
                    break
                outcome = await self._publish(entry)
                if outcome == "published":
                    published.append(entry)
                handled += 1
                if outcome == "retry":
                    failed = True
                    break
        finally:
            with anyio.CancelScope(shield=True), anyio.move_on_after(_SETTLE_TIMEOUT):
                await self._settle(published, batch[handled:])
        if not failed:
            self.backoff = 0.0
            self.last_error = None
        return len(published)

    async def _publish(self, entry: OutboxEntry) -> str:
        """Publish one entry: ``published``, ``rejected`` (marked failed) or ``retry`` (rescheduled)."""
        try:
            propagation = self.store.propagation
            if propagation is not None and entry.traceparent is not None:
                with propagation.continuing(entry.trace_context):  # the writer's trace (tracing on)
                    await self._send(entry)
            else:
                await self._send(entry)
            return "published"
        except _REJECTED as exc:
            error = f"{type(exc).__name__}: {exc}"
            log.error(
                "outbox: the bus rejects %s %s for good (%s); marked failed, `kernel outbox replay %s` "
                "sends it again",
                entry.name,
                entry.event_id,
                error,
                entry.event_id,
                extra={"event_id": entry.event_id, "event": entry.name},
            )
            self._count_error("rejected")
            await self.store.mark_failed(entry, error)
            return "rejected"
        except Exception as exc:
            if isinstance(exc, PublishTimeoutError) and exc.may_be_stored:
                self._count_duplicate("publish_timeout")  # stored or not: it will be published again
            self._failed(exc, "timeout" if isinstance(exc, PublishTimeoutError) else "unavailable")
            await self.store.reschedule(entry, self.last_error or "", delay=self.backoff)
            return "retry"

    async def _send(self, entry: OutboxEntry) -> None:
        """Publish ``entry`` under its original identity (id, time, source, trace id)."""
        await self.bus.publish(
            entry.name,
            entry.data,
            source=entry.source,
            trace_id=entry.trace_id,
            event_id=entry.event_id,
            occurred_at=entry.occurred_at,
            timeout=self.config.publish_timeout,
        )

    async def _settle(self, published: list[OutboxEntry], rest: list[OutboxEntry]) -> None:
        """Mark ``published`` done and give ``rest`` back; failures leave them to their lease.

        Published entries it could not mark done (an error, or :data:`_SETTLE_TIMEOUT` ran out) are
        published again when their lease expires: counted as ``unsettled`` duplicates.
        """
        unmarked = published
        try:
            if published:
                done = await self.store.mark_done(published)
                unmarked = []
                self.published += done
                if self._metrics is not None:
                    self._metrics.published.inc(done)
                if done < len(published):  # taken over after our lease expired: published twice
                    lost = len(published) - done
                    log.warning("outbox: %d published entries had been taken over (lease expired)", lost)
                    self._count_duplicate("lease_expired", lost)
            if rest:
                await self.store.release(rest)
        except Exception as exc:
            log.warning(
                "outbox: could not settle a batch (%s: %s); its entries return when their lease "
                "expires (published ones are then published again)",
                type(exc).__name__,
                exc,
            )
            if unmarked:
                self._count_duplicate("unsettled", len(unmarked))
        except BaseException:  # cancelled: the settle timeout ran out (or the relay is stopping)
            if unmarked:
                log.warning(
                    "outbox: could not mark %d published entries done within %.0f s; they return when "
                    "their lease expires and are published again",
                    len(unmarked),
                    _SETTLE_TIMEOUT,
                )
                self._count_duplicate("unsettled", len(unmarked))
            raise

    def _count_takeovers(self, batch: list[OutboxEntry]) -> None:
        """Count and log the claimed entries of ``batch`` taken over from a lease that ran out unsettled:
        their earlier holder (a relay that died, stalled or could not mark them) may have published
        them. Counted before they are published: the count always covers the copies they may add."""
        taken = sum(1 for entry in batch if entry.taken_over)
        if taken:
            self.takeovers += taken
            if self._metrics is not None:
                self._metrics.takeovers.inc(taken)
            log.warning(
                "outbox: took over %d entries whose lease ran out unsettled (their relay died, stalled or "
                "could not mark them done): they may have been published already and are published again",
                taken,
            )

    def _failed(self, exc: BaseException, reason: str) -> None:
        first = self.backoff == 0.0
        self.backoff = min(max(self.backoff * 2, _FIRST_BACKOFF), self.config.max_backoff)
        self.last_error = f"{type(exc).__name__}: {exc}"
        self._count_error(reason)
        if first:
            log.warning("outbox: publishing failed (%s); retrying with backoff", self.last_error)

    def _count_error(self, reason: str) -> None:
        if self._metrics is not None:
            self._metrics.errors.labels(reason).inc()

    def _count_duplicate(self, reason: str, n: int = 1) -> None:
        self.duplicates += n
        if self._metrics is not None:
            self._metrics.duplicates.labels(reason).inc(n)

    # ------------------------------------------------------------------ status

    async def status(self) -> OutboxStatus:
        """The counts and lag of the outbox (refreshes the backlog and lag gauges)."""
        status = await self.store.status()
        self._lag, self._lag_at = (status.backlog, status.lag_seconds), time.monotonic()
        if self._metrics is not None:
            self._metrics.backlog.set(status.backlog)
            self._metrics.lag.set(status.lag_seconds)
        return status

    async def lag(self) -> tuple[int, float]:
        """Backlog and lag (seconds) in two queries; refreshes the gauges (cached for a second)."""
        if self._lag is not None and time.monotonic() - self._lag_at <= 1.0:
            return self._lag
        backlog, oldest = await self.store.backlog()
        lag = 0.0 if oldest is None else max(0.0, (datetime.now(UTC) - oldest).total_seconds())
        self._lag, self._lag_at = (backlog, lag), time.monotonic()
        if self._metrics is not None:
            self._metrics.backlog.set(backlog)
            self._metrics.lag.set(lag)
        return backlog, lag

    async def check_lag(self) -> bool:
        """The health check: raises :class:`OutboxLagError` past ``lag_degraded_seconds``."""
        backlog, lag = await self.lag()
        if lag > self.config.lag_degraded_seconds:
            raise OutboxLagError(
                f"outbox lag {lag:.1f}s > lag_degraded_seconds {self.config.lag_degraded_seconds:g} "
                f"(backlog {backlog}{', last error: ' + self.last_error if self.last_error else ''})"
            )
        return True

    async def drain(self, timeout: float) -> bool:  # noqa: ASYNC109 - a deadline for the whole drain
        """Publish until nothing is pending (retries included); False if ``timeout`` s passed first."""
        with anyio.move_on_after(timeout):
            while True:
                if await self.run_once():
                    continue
                if (await self.store.backlog())[0] == 0:
                    return True
                await anyio.sleep(max(0.01, min(self.config.poll_interval, self.backoff or 0.05)))
        return False

    # ------------------------------------------------------------------ the background loop

    def wake(self) -> None:
        """Claim now instead of at the next poll (called when this process commits entries)."""
        self._wake.set()

    async def serve(self, *, task_status: TaskStatus[None] = anyio.TASK_STATUS_IGNORED) -> None:
        """Run the relay loop (and the change-stream watcher) until :meth:`stop`.

        For ``await tg.start(relay.serve)``: ready once it listens for this process's writes; an
        error after that is logged, not raised.
        """
        if self._ended is not None:
            raise RuntimeError("the relay runs already")
        ended = self._ended = anyio.Event()
        self._stopping = False
        remove = self.store.add_listener(self.wake)
        ready = False
        try:
            async with anyio.create_task_group() as tg:
                self._scope = tg.cancel_scope
                tg.start_soon(self._run, name=f"outbox-relay:{self.owner}")
                if self.config.change_streams:
                    tg.start_soon(self._watch, name="outbox-watch")
                ready = True
                task_status.started()
        except Exception:
            if not ready:
                raise
            log.exception("outbox: the relay loop ended with an error")
        finally:
            if callable(remove):
                remove()
            self._scope = self._ended = None
            ended.set()

    async def start(self) -> None:
        """Run :meth:`serve` in a background task until :meth:`stop`; returns once it is ready.

        For a caller without a task group that outlives the relay; one with uses :meth:`serve`.
        """
        if self.running:
            return
        ready = anyio.Event()

        class _Status:
            def started(self, value: None = None) -> None:
                ready.set()

        # an asyncio task: start() and stop() are separate calls (stop() also from a command), so no
        # task group of the caller's spans the relay's life
        task = self._task = asyncio.get_running_loop().create_task(
            self.serve(task_status=_Status()), name=f"outbox-serve:{self.owner}"
        )
        task.add_done_callback(lambda _task: ready.set())  # failed before it was ready
        await ready.wait()
        if task.done():
            self._task = None
            task.result()  # raises what serve() raised

    async def stop(self, grace: float | None = None) -> None:
        """Stop after the batch in hand (cancelled after ``grace`` s: published entries are still marked,
        the rest given back)."""
        ended = self._ended
        if ended is None:
            return
        self._stopping = True
        self._wake.set()
        with anyio.move_on_after(self.config.publish_timeout + 1.0 if grace is None else grace):
            await ended.wait()
        if self._scope is not None:
            self._scope.cancel()
        await ended.wait()
        self._task = None

    @property
    def running(self) -> bool:
        """Whether the background loop runs."""
        return self._ended is not None

    async def _run(self) -> None:
        next_status = 0.0
        while not self._stopping:
            try:
                if time.monotonic() >= next_status:
                    next_status = time.monotonic() + self.config.status_interval
                    self._lag = None  # a fresh reading for the gauges
                    await self.lag()
                n = await self.run_once()
            except Exception as exc:  # the database failed: the loop outlives it
                self._failed(exc, "database")
                n = 0
            if self._stopping:
                return
            if self.backoff:  # the bus or the database fails: wait, whatever wakes us
                await anyio.sleep(self.backoff * random.uniform(0.8, 1.2))
            elif n < self.config.batch_size:  # caught up: wait for a write, a change or the poll
                with anyio.move_on_after(self.config.poll_interval):
                    await self._wake.wait()
                self._wake = anyio.Event()

    async def _watch(self) -> None:
        """Wake the relay on every insert into the outbox collection (where change streams exist)."""
        try:
            async with self.store.collection.watch(max_await_time_ms=1000) as stream:
                self.change_stream = True
                log.debug("outbox: change stream open on %s", self.store.collection_name)
                while not self._stopping:
                    change = await stream.try_next()
                    if change is not None and change.get("operationType") == "insert":
                        self._wake.set()
        except Exception as exc:  # not a cancellation: a BaseException
            self.change_stream = False
            log.info(
                "outbox: no change streams on this server (%s: %s); polling every %gs",
                type(exc).__name__,
                exc,
                self.config.poll_interval,
            )

    def __repr__(self) -> str:
        return f"<OutboxRelay {self.owner} {'running' if self.running else 'stopped'}>"
