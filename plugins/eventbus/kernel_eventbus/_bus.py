"""The adapter-independent part of the bus: publish validation, subscriptions, handler runs, metrics."""

from __future__ import annotations

import abc
import inspect
import json
import logging
import math
import time
import traceback
from collections.abc import Awaitable, Callable, Sequence
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

import anyio
import attrs

from kernel.logging import get_trace_id, new_trace_id, reset_trace_id, set_trace_id

from ._dlq import DeadLetterEntry, DeadLetterStore, ReplayResult
from ._errors import (
    CorruptDeadLetterError,
    DeadLetterNotFoundError,
    EventDataError,
    EventTooLargeError,
    PublishTimeoutError,
    SubscriptionError,
)
from ._idempotency import IdempotencyStore, idempotent
from ._metadata import EventMetadata, make_metadata, new_event_id, now_rfc3339, rfc3339
from ._observe import EventBusObserver
from ._retry import RetryPolicy

if TYPE_CHECKING:  # optional: the bus records metrics only when the metrics plugin is enabled
    from kernel_metrics import Metrics

log = logging.getLogger("kernel.plugins.eventbus")

Handler = Callable[[Any, EventMetadata], Awaitable[object]]
"""``async def handler(data, metadata) -> None``."""


# one encoder for every call: json.dumps builds a new one whenever an option is not the default
_ENCODER = json.JSONEncoder(separators=(",", ":"), allow_nan=False, ensure_ascii=False)


def _c_encoder() -> Callable[[Any, int], Sequence[str]]:
    """The chunks of ``_ENCODER``'s JSON of a value: json's C encoder, built once.

    ``JSONEncoder.encode`` builds it (and two closures) on every call, which costs more than
    encoding an event. Built without a markers dict (one could not be shared between threads),
    so circular data ends in ``RecursionError`` rather than ``ValueError``: callers take both
    for "not JSON-serializable".
    """
    make = getattr(json.encoder, "c_make_encoder", None)
    if make is None:  # a Python without the _json accelerator
        return lambda data, _level: (_ENCODER.encode(data),)
    encoder: Callable[[Any, int], Sequence[str]] = make(
        None, _ENCODER.default, json.encoder.encode_basestring, None, ":", ",", False, False, False
    )
    return encoder


_C_ENCODE = _c_encoder()
_NOT_JSON = (TypeError, ValueError, RecursionError)
"""What encoding data that is not JSON-serializable raises (``RecursionError``: circular data)."""


def dumps(data: Any) -> str:
    """Compact JSON; what the bus stores and hands a copy of to every handler."""
    return "".join(_C_ENCODE(data, 0))


def default_subscription_name(event: str, handler: Callable[..., Any]) -> str:
    """``<event>:<module>.<qualname>`` -- stable across processes, so they share one consumer group."""
    module = getattr(handler, "__module__", None)
    qualname = getattr(handler, "__qualname__", None)
    if not module or not qualname or "<lambda>" in qualname or "<locals>" in qualname:
        raise SubscriptionError(
            f"cannot derive a stable subscription name for handler {handler!r} of {event!r}: "
            'pass group="..." (processes sharing the work must use the same group)'
        )
    return f"{event}:{module}.{qualname}"


class PublishProgress:
    """How far one ``publish`` got; the adapter sets :attr:`sent` just before it writes the event."""

    __slots__ = ("last_error", "sent")

    def __init__(self) -> None:
        self.sent = False
        """The event was (or was being) written to the store: a timeout from now on may have stored it."""
        self.last_error: BaseException | None = None
        """The latest failure of an attempt that was retried (named by a timeout)."""


def _check_timeout(value: object, what: str) -> float:
    """``value`` as seconds if it is a number > 0 (``inf``: no deadline); raises ``ValueError``."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or math.isnan(value) or value <= 0:
        raise ValueError(f"{what} must be a number of seconds > 0, got {value!r}")
    return float(value)


def _publish_deadline(event: str, timeout: object) -> float:
    """The ``timeout=`` of a ``publish`` call, or :class:`EventDataError` naming the event and the value."""
    try:
        return _check_timeout(timeout, "timeout")
    except ValueError as exc:
        raise EventDataError(event, str(exc)) from None


def _check_labels(name: str, source: str | None, trace_id: str | None) -> None:
    """``source`` and ``trace_id`` go into a tab-separated header: no tabs or newlines."""
    for label, value in (("source", source), ("trace_id", trace_id)):
        if value is not None and (not isinstance(value, str) or "\t" in value or "\n" in value):
            raise EventDataError(name, f"{label} must be a string without tabs or newlines: {value!r}")


def _given_metadata(
    name: str, source: str | None, trace_id: str | None, event_id: str | None, occurred_at: datetime | None
) -> EventMetadata:
    """Metadata of an event published with its own ``event_id`` and/or ``occurred_at``."""
    if event_id is not None and (
        not isinstance(event_id, str) or not event_id or "\t" in event_id or "\n" in event_id
    ):
        raise EventDataError(
            name, f"event_id must be a non-empty string without tabs or newlines: {event_id!r}"
        )
    if occurred_at is None:
        ms = time.time_ns() // 1_000_000
    elif isinstance(occurred_at, datetime) and occurred_at.utcoffset() is not None:
        ms = (occurred_at - _EPOCH) // _MILLISECOND
    else:
        raise EventDataError(name, f"occurred_at must be a timezone-aware datetime: {occurred_at!r}")
    return EventMetadata(
        event_id or new_event_id(ms), name, rfc3339(ms), source, trace_id or get_trace_id() or new_trace_id()
    )


_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MILLISECOND = timedelta(milliseconds=1)


@attrs.define(eq=False)
class Subscription:
    """One handler of one event; retried and dead-lettered independently of every other subscription."""

    event: str
    handler: Handler
    name: str
    """The consumer-group name: processes subscribing with the same name share the work."""
    policy: RetryPolicy
    concurrency: int = 1
    is_coroutine: bool = attrs.field(init=False)

    def __attrs_post_init__(self) -> None:
        # known coroutine functions skip the per-call awaitable check
        self.is_coroutine = inspect.iscoroutinefunction(self.handler)


@attrs.define
class Failure:
    """The outcome of a failed handler run."""

    error: BaseException
    retry: bool
    at: str


class _Metrics:
    """The bus's own metrics, declared through the metrics plugin's collector (when it is enabled)."""

    def __init__(self, collector: Metrics) -> None:
        self.events = collector.bounded(
            collector.counter("eventbus_events_total", "Events handled by the event bus", ["event", "status"])
        )
        """``eventbus_events_total{event, status}`` within the series budget (names come from outside)."""
        self.duration = collector.histogram(
            "eventbus_handler_duration_seconds",
            "Event handler run time in seconds",
            ["event", "subscription"],
            buckets=(0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1.0, 5.0, 30.0),
        )
        self.dlq_size = collector.gauge(
            "eventbus_dlq_size", "Entries in the event bus dead-letter queue", multiprocess_mode="max"
        )

    def event(self, name: str, status: str) -> None:
        """Count one event outcome (``published``, ``success``, ``retried``, ``failed``, ...)."""
        self.events.labels(name, status).inc()

    def handled(self, sub: Subscription, seconds: float) -> None:
        """Observe one handler run."""
        self.duration.labels(sub.event, sub.name).observe(seconds)


class EventBus(abc.ABC):
    """Publish events, subscribe handlers, inspect and replay the dead-letter queue.

    >>> meta = await bus.publish("user.created", {"user_id": "123"}, source="UserService")  # doctest: +SKIP
    >>> bus.subscribe("user.created", on_user_created)                                     # doctest: +SKIP
    """

    adapter: str = ""
    publish_waits: bool = True
    """Whether storing can wait (I/O): only then does ``publish`` arm its deadline (:meth:`_publish_within`).

    Adapters that store without waiting set it false and implement :meth:`_publish_nowait`."""

    def __init__(
        self,
        *,
        policy: RetryPolicy | None = None,
        concurrency: int = 1,
        metrics: Metrics | None = None,
        idempotency_ttl: int = 86_400,
        max_payload_bytes: int = 1_048_576,
        publish_timeout: float = 10.0,
    ) -> None:
        if max_payload_bytes <= 0:
            raise ValueError(f"max_payload_bytes must be > 0, got {max_payload_bytes!r}")
        self.publish_timeout = _check_timeout(publish_timeout, "publish_timeout")
        """Seconds one ``publish`` may take in all (retries, backoff and socket waits included)."""
        self.policy = policy or RetryPolicy()
        self.max_payload_bytes = max_payload_bytes
        self.concurrency = concurrency
        self.idempotency_ttl = idempotency_ttl
        self._metrics = _Metrics(metrics) if metrics is not None else None
        self._subs: dict[str, list[Subscription]] = {}
        self._by_name: dict[str, Subscription] = {}
        self.running = False

    # ------------------------------------------------------------------ publishing

    async def publish(
        self,
        name: str,
        data: Any,
        *,
        source: str | None = None,
        trace_id: str | None = None,
        timeout: float | None = None,  # noqa: ASYNC109 - tells the adapter what a timeout means (stored?)
        event_id: str | None = None,
        occurred_at: datetime | None = None,
    ) -> EventMetadata:
        """Publish ``data`` (JSON-serializable) as event ``name``; returns its metadata once stored.

        Data larger than ``max_payload_bytes`` as JSON raises :class:`EventTooLargeError`.

        ``trace_id`` defaults to the current trace id (or a new random one, 32 hex digits like
        :func:`kernel.new_trace_id`).

        ``timeout`` (seconds, default ``publish_timeout``) bounds the whole call: connection
        retries, backoff and socket waits. Past it :class:`PublishTimeoutError` is raised;
        its ``may_be_stored`` says whether the event may have been stored anyway.

        ``event_id`` and ``occurred_at`` (a timezone-aware datetime, kept to the millisecond)
        replace the new id and the current time: what a relay passes to publish an event
        recorded earlier (the outbox) under its original identity.
        """
        if not isinstance(name, str) or not name:
            raise EventDataError(repr(name), "the event name must be a non-empty string")
        deadline = self.publish_timeout if timeout is None else _publish_deadline(name, timeout)
        try:
            body = "".join(_C_ENCODE(data, 0))  # dumps() without the extra call: this is the hot path
        except _NOT_JSON as exc:
            raise EventDataError(name, f"data is not JSON-serializable ({exc})") from None
        limit = self.max_payload_bytes
        if len(body) * 4 > limit:  # a character is at most 4 bytes in UTF-8: most events skip the encoding
            size = len(body) if len(body) > limit else len(body.encode())
            if size > limit:
                raise EventTooLargeError(name, size, limit)
        if source is not None or trace_id is not None:
            _check_labels(name, source, trace_id)
        if event_id is None and occurred_at is None:
            ms = time.time_ns() // 1_000_000
            meta = make_metadata(
                new_event_id(ms), name, rfc3339(ms), source, trace_id or get_trace_id() or new_trace_id()
            )
        else:  # a recorded event published under its original identity (the outbox relay)
            meta = _given_metadata(name, source, trace_id, event_id, occurred_at)
        observer = self.observer
        if observer is not None:  # traced (see set_observer): told before storing and once storing ended
            meta, stored = observer.publishing(meta)  # here, not in a coroutine of its own: a traced hot path
            try:
                if not self.publish_waits:
                    self._publish_nowait(meta, body)
                else:
                    await self._publish_within(meta, body, deadline)
            except BaseException as exc:
                stored(exc)
                raise
            stored(None)
        elif not self.publish_waits:  # stored without waiting: nothing a deadline could cut, no coroutine
            self._publish_nowait(meta, body)
        else:
            await self._publish_within(meta, body, deadline)
        if self._metrics is not None:
            self._metrics.event(name, "published")
        return meta

    async def _publish_within(self, meta: EventMetadata, body: str, deadline: float) -> None:
        """Store the event within ``deadline`` seconds, else raise :class:`PublishTimeoutError`.

        Here a cancel scope (a timer) per call, on any anyio backend; an adapter bound to one event
        loop may do it cheaper with the same guarantee (the Redis adapter shares one asyncio timer).
        """
        progress = PublishProgress()
        with anyio.move_on_after(deadline) as scope:
            await self._publish(meta, body, progress)
        if scope.cancelled_caught:
            raise self._timed_out(meta, deadline, progress) from progress.last_error

    def _timed_out(
        self, meta: EventMetadata, deadline: float, progress: PublishProgress
    ) -> PublishTimeoutError:
        """The error of a publish its deadline cut (counted as ``publish_timeout``)."""
        if self._metrics is not None:
            self._metrics.event(meta.event_name, "publish_timeout")
        return PublishTimeoutError(
            meta, deadline, may_be_stored=progress.sent, last_error=progress.last_error
        )

    def _publish_nowait(self, meta: EventMetadata, body: str) -> None:
        """Store the event without waiting: what ``publish`` calls instead of ``_publish`` when
        :attr:`publish_waits` is false (such adapters must implement it)."""
        raise NotImplementedError(f"{type(self).__name__} sets publish_waits = False without _publish_nowait")

    @abc.abstractmethod
    async def _publish(self, meta: EventMetadata, body: str, progress: PublishProgress) -> None:
        """Store the event; set ``progress.sent`` before writing it, retry connection failures.

        Runs under the publish deadline: it is cancelled when the deadline passes and must
        leave nothing half-done behind (e.g. no connection with an unread reply in a pool).
        """

    # ------------------------------------------------------------------ subscriptions

    def subscribe(
        self,
        event: str,
        handler: Handler,
        *,
        group: str | None = None,
        max_retries: int | None = None,
        backoff: RetryPolicy | None = None,
        concurrency: int | None = None,
    ) -> Subscription:
        """Call ``await handler(data, metadata)`` for every ``event``.

        ``group`` names the subscription (default ``<event>:<module>.<qualname>``);
        processes using the same group share its events. ``backoff`` replaces
        the bus's retry policy, ``max_retries`` just the retry count.
        """
        if not isinstance(event, str) or not event:
            raise SubscriptionError(f"event name must be a non-empty string, not {event!r}")
        if not callable(handler):
            raise SubscriptionError(f"handler of {event!r} must be an async callable, not {handler!r}")
        name = group or default_subscription_name(event, handler)
        if "|" in name:
            raise SubscriptionError(f"subscription name {name!r} must not contain '|'")
        if name in self._by_name:
            raise SubscriptionError(
                f"subscription {name!r} already exists in this bus; pass another group= to subscribe twice"
            )
        policy = backoff or self.policy
        if max_retries is not None:
            policy = attrs.evolve(policy, max_retries=max_retries)
        sub = Subscription(event, handler, name, policy, concurrency or self.concurrency)
        self._subs.setdefault(event, []).append(sub)
        self._by_name[name] = sub
        self._started(sub)
        return sub

    def unsubscribe(self, subscription: Subscription | str, handler: Handler | None = None) -> bool:
        """Remove a subscription (the object, its name, or ``event, handler``); False if none matched."""
        if isinstance(subscription, Subscription):
            found = self._by_name.get(subscription.name)
            found = found if found is subscription else None
        elif handler is not None:
            found = next((s for s in self._subs.get(subscription, []) if s.handler is handler), None)
        else:
            found = self._by_name.get(subscription)
        if found is None:
            return False
        self._subs[found.event].remove(found)
        if not self._subs[found.event]:
            del self._subs[found.event]
        del self._by_name[found.name]
        self._stopped(found)
        return True

    @property
    def subscriptions(self) -> list[Subscription]:
        """The current subscriptions (a copy)."""
        return list(self._by_name.values())

    def _started(self, sub: Subscription) -> None:  # noqa: B027 - optional hook
        """A subscription was added (adapters start consuming for it)."""

    def _stopped(self, sub: Subscription) -> None:  # noqa: B027 - optional hook
        """A subscription was removed."""

    # ------------------------------------------------------------------ instrumentation

    observer: EventBusObserver | None = None
    """Told about every publish and handler attempt (tracing); see :meth:`set_observer`."""

    def set_observer(self, observer: EventBusObserver | None) -> None:
        """Tell ``observer`` about every publish and every handler attempt from now on (None: stop).

        Without an observer, handler runs take the plain path (no per-attempt cost).
        """
        self.observer = observer
        if observer is None:
            self.__dict__.pop("_invoke", None)
        else:
            self._invoke = self._invoke_observed  # type: ignore[method-assign]

    async def _invoke_observed(self, sub: Subscription, data: Any, meta: EventMetadata) -> Failure | None:
        """:meth:`_invoke` inside the observer's ``handling`` context (the handler runs within it)."""
        observer = self.observer
        if observer is None:
            return await EventBus._invoke(self, sub, data, meta)
        with observer.handling(sub, meta) as attempt:
            failure = await EventBus._invoke(self, sub, data, meta)
            if failure is not None:
                attempt.failed(failure.error, failure.retry)
            return failure

    # ------------------------------------------------------------------ running handlers

    async def _invoke(self, sub: Subscription, data: Any, meta: EventMetadata) -> Failure | None:
        """Run the handler with the event's trace id set; the failure, if any, and whether to retry it."""
        token = set_trace_id(meta.trace_id)
        t0 = time.perf_counter() if self._metrics is not None else 0.0
        try:
            if sub.is_coroutine:
                await sub.handler(data, meta)
            else:
                result = sub.handler(data, meta)
                if inspect.isawaitable(result):
                    await result
        except Exception as exc:
            retry = sub.policy.should_retry(exc, meta.attempt)
            log.warning(
                "eventbus: %s failed for %s (attempt %d): %s: %s%s",
                sub.name,
                meta.event_name,
                meta.attempt,
                type(exc).__name__,
                exc,
                " -- will retry" if retry else " -- dead-lettered",
                extra={
                    "event_id": meta.event_id,
                    "event": meta.event_name,
                    "subscription": sub.name,
                    "attempt": meta.attempt,
                },
            )
            if self._metrics is not None:
                self._metrics.handled(sub, time.perf_counter() - t0)
                self._metrics.event(meta.event_name, "retried" if retry else "failed")
            return Failure(exc, retry, rfc3339(time.time_ns() // 1_000_000))
        finally:
            reset_trace_id(token)
        if self._metrics is not None:
            self._metrics.handled(sub, time.perf_counter() - t0)
            self._metrics.event(meta.event_name, "success")
        return None

    def _dead_entry(
        self,
        sub: Subscription,
        data: Any,
        meta: EventMetadata,
        failure: Failure,
        first_failure_at: str | None,
    ) -> DeadLetterEntry:
        exc = failure.error
        tb = "".join(traceback.format_exception(type(exc), exc, exc.__traceback__))
        if self._metrics is not None:
            self._metrics.event(meta.event_name, "dead_lettered")
        return DeadLetterEntry(
            metadata=meta,
            data=data,
            subscription=sub.name,
            attempts=meta.attempt,
            first_failure_at=first_failure_at or failure.at,
            last_failure_at=failure.at,
            error_type=f"{type(exc).__module__}.{type(exc).__qualname__}".removeprefix("builtins."),
            error_message=str(exc),
            traceback=tb,
        )

    def _dlq_size_changed(self, size: int) -> None:
        if self._metrics is not None:
            self._metrics.dlq_size.set(size)

    # ------------------------------------------------------------------ dead-letter queue

    dead_letters: DeadLetterStore
    """Where this bus keeps its dead-letter entries (set by the adapter)."""

    async def get_dead_letter_queue(
        self, limit: int = 100, *, event: str | None = None
    ) -> list[DeadLetterEntry]:
        """The newest ``limit`` dead-letter entries (newest first), optionally of one ``event`` name.

        An entry that cannot be read is listed with :attr:`DeadLetterEntry.corrupt` set.
        """
        if limit <= 0:
            return []
        return await self.dead_letters.newest(limit, event)

    async def dead_letter_count(self) -> int:
        """How many entries the dead-letter queue holds."""
        return await self.dead_letters.count()

    async def get_dead_letter(self, event_id: str) -> list[DeadLetterEntry]:
        """The entries of one event (one per subscription that gave up, corrupt ones too); raises if none."""
        entries = await self.dead_letters.find(event_id)
        if not entries:
            raise DeadLetterNotFoundError(event_id)
        return entries

    async def replay_from_dlq(self, event_id: str) -> int:
        """Re-deliver a dead-lettered event to the subscription(s) that failed it; how many entries.

        The entry leaves the DLQ; the new delivery starts again at attempt 1 with
        ``replayed_at`` set, and is retried (and dead-lettered) like any other.
        Raises :class:`DeadLetterNotFoundError` when the event is not in the DLQ, and
        :class:`CorruptDeadLetterError` when all its entries are corrupt (corrupt ones are never replayed).
        """
        found = await self.get_dead_letter(event_id)
        entries = [e for e in found if e.corrupt is None]
        if not entries:
            raise CorruptDeadLetterError(event_id, [e.key for e in found])
        n = await self._redeliver(entries, now_rfc3339())
        if not n:  # replayed meanwhile by someone else
            raise DeadLetterNotFoundError(event_id)
        self._dlq_size_changed(await self.dead_letters.count())
        return n

    @abc.abstractmethod
    async def _redeliver(self, entries: list[DeadLetterEntry], replayed_at: str) -> int:
        """Take each entry out of the dead-letter store and deliver it again; how many it took.

        An entry another replay took first is not delivered twice (and not counted).
        """

    async def replay_all(
        self,
        *,
        event: str | None = None,
        limit: int | None = None,
        progress: Callable[[int, int], object] | None = None,
    ) -> ReplayResult:
        """Replay every dead-letter entry (of ``event``, at most ``limit``); ``progress(done, total)``.

        Corrupt entries are skipped (left in the DLQ): the result is the number replayed, and
        ``result.skipped_corrupt`` the keys of the skipped ones.
        """
        entries = await self.get_dead_letter_queue(limit or 1_000_000_000, event=event)
        corrupt = [e.key for e in entries if e.corrupt is not None]
        sound = [e for e in entries if e.corrupt is None]
        ids = list(dict.fromkeys(e.event_id for e in reversed(sound)))  # oldest first
        done = 0
        for event_id in ids:
            try:
                done += await self.replay_from_dlq(event_id)
            except (LookupError, CorruptDeadLetterError):
                continue  # replayed meanwhile by someone else (or only its corrupt entries are left)
            if progress is not None:
                progress(done, len(sound))
        if corrupt:
            log.warning(
                "eventbus: replay_all skipped %d corrupt dead-letter entries (see `kernel dlq list`)",
                len(corrupt),
            )
        return ReplayResult(done, corrupt)

    async def clear_dead_letter_queue(self) -> int:
        """Drop every dead-letter entry; how many there were."""
        n = await self.dead_letters.clear()
        self._dlq_size_changed(0)
        return n

    async def delete_dead_letter(self, event_id: str) -> int:
        """Drop the entries of one event; how many."""
        n = await self.dead_letters.delete(event_id)
        if n:
            self._dlq_size_changed(await self.dead_letters.count())
        return n

    # ------------------------------------------------------------------ idempotency

    @abc.abstractmethod
    def idempotency_store(self) -> IdempotencyStore:
        """Where :meth:`idempotent` remembers handled event ids (memory, or Redis with the redis adapter)."""

    def idempotent(self, handler: Handler, *, key: str | None = None, ttl: int | None = None) -> Handler:
        """``handler`` wrapped to skip events it already handled (by ``event_id``), in the bus's store.

        >>> bus.subscribe("user.created", bus.idempotent(send_welcome_mail))  # doctest: +SKIP
        """
        return idempotent(handler, store=self.idempotency_store(), key=key, ttl=ttl or self.idempotency_ttl)

    # ------------------------------------------------------------------ lifecycle

    async def start(self) -> None:
        """Start consuming for the subscriptions made so far (later ones start at once)."""
        self.running = True

    async def close(self) -> None:
        """Stop consuming; in-flight handlers are cancelled (their events are delivered again later)."""
        self.running = False

    async def __aenter__(self) -> EventBus:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    def __repr__(self) -> str:
        return f"<{type(self).__name__} subscriptions={len(self._by_name)}>"
