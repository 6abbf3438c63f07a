"""Errors of the event bus."""

from __future__ import annotations

from ._metadata import EventMetadata


class EventBusError(Exception):
    """Base class of event-bus errors."""


class EventDataError(EventBusError, TypeError):
    """The event data (or an argument of ``publish``) cannot be published."""

    def __init__(self, event: str, problem: str) -> None:
        self.event = event
        self.problem = problem
        super().__init__(f"cannot publish {event!r}: {problem}")


class EventTooLargeError(EventDataError, ValueError):
    """The event data, as JSON, is larger than ``max_payload_bytes``."""

    def __init__(self, event: str, size: int, limit: int) -> None:
        self.size = size
        self.limit = limit
        super().__init__(
            event,
            f"its data is {size:,} bytes as JSON, over the limit of {limit:,} bytes "
            "(plugins.eventbus.max_payload_bytes); store large data elsewhere and "
            "publish its id",
        )


class _PublishOutcomeError(EventBusError):
    """A publish that did not end as asked: the event's :attr:`metadata`, name, id and the :attr:`timeout`."""

    def __init__(self, metadata: EventMetadata, timeout: float, message: str) -> None:
        self.metadata = metadata
        self.event = metadata.event_name
        self.event_id = metadata.event_id
        self.timeout = timeout
        super().__init__(message)


class PublishTimeoutError(_PublishOutcomeError, TimeoutError):
    """``publish`` did not finish within its deadline (``publish_timeout`` or ``timeout=``).

    :attr:`may_be_stored` says what happened to the event: ``False`` -- it was never sent
    (Redis was unreachable the whole time, or busy before the write), publishing it again
    cannot duplicate it; ``True`` -- it was sent and no reply came in time, so it may be
    stored (and delivered) after all, as event :attr:`event_id`. A :class:`TimeoutError`
    (and so an :class:`OSError`), like the connection errors of the Redis client.
    """

    def __init__(
        self,
        metadata: EventMetadata,
        timeout: float,
        *,
        may_be_stored: bool,
        last_error: BaseException | None = None,
    ) -> None:
        self.may_be_stored = may_be_stored
        self.last_error = last_error
        cause = f"; last error: {type(last_error).__name__}: {last_error}" if last_error is not None else ""
        if may_be_stored:
            outcome = (
                f"the event MAY HAVE BEEN STORED (it was sent and no reply came in time{cause}): "
                f"subscribers may still get event {metadata.event_id}; publishing it again can "
                "deliver the data twice, under two event ids"
            )
        else:
            outcome = f"the event was NOT STORED (it was never sent{cause}); it is safe to publish it again"
        super().__init__(
            metadata,
            timeout,
            f"publish of {metadata.event_name!r} (event {metadata.event_id}) timed out after "
            f"{timeout:g} s (plugins.eventbus.publish_timeout or timeout=): {outcome}",
        )


class PublishNotReplicatedError(_PublishOutcomeError):
    """With ``durability = "replicated"``: fewer replicas than ``replicas`` acknowledged the event in time.

    The event IS stored on the primary (as event :attr:`event_id`) and is delivered unless that
    primary fails before a replica copies it. Publishing it again stores a second copy (same data,
    new event id) -- pass ``event_id=`` to keep one identity and make handlers idempotent.
    """

    def __init__(self, metadata: EventMetadata, wanted: int, acknowledged: int, timeout: float) -> None:
        self.wanted = wanted
        self.acknowledged = acknowledged
        super().__init__(
            metadata,
            timeout,
            f"publish of {metadata.event_name!r} (event {metadata.event_id}): {acknowledged} of {wanted} "
            f"replica(s) acknowledged it within {timeout:g} s (plugins.eventbus.replicas / "
            "replication_timeout): the event is stored on the primary only and is lost if the primary "
            "fails before a replica copies it",
        )


class NonRetryableError(EventBusError):
    """Raise it (or subclass it) from a handler to send the event straight to the dead-letter queue.

    Any exception with a ``retryable = False`` attribute is treated the same way.
    """


class DeadLetterNotFoundError(EventBusError, LookupError):
    """No dead-letter entry has this event id."""

    def __init__(self, event_id: str) -> None:
        self.event_id = event_id
        super().__init__(f"no dead-letter entry for event {event_id!r} (see `kernel dlq list`)")


class CorruptDeadLetterError(EventBusError, ValueError):
    """A dead-letter entry cannot be read (corrupt or written by something else), so it cannot be replayed."""

    def __init__(self, event_id: str, keys: list[str]) -> None:
        self.event_id = event_id
        self.keys = keys
        super().__init__(
            f"dead-letter entry {', '.join(map(repr, keys))} of event {event_id!r} is corrupt and cannot be "
            f"replayed (inspect it with `kernel dlq show {event_id}`, drop it with "
            f"`kernel dlq clear {event_id}`)"
        )


class SubscriptionError(EventBusError, ValueError):
    """A subscription is invalid (bad handler, duplicate name, unknown subscription)."""


class AdapterUnavailableError(EventBusError):
    """The configured adapter cannot run (e.g. ``adapter = "redis"`` without the redis plugin)."""


class UndecodableEventError(NonRetryableError):
    """A stream entry could not be decoded (corrupt or foreign payload): it goes to the DLQ at once."""


class DeliveryLimitError(NonRetryableError):
    """An entry was delivered more than ``max_deliveries`` times without an acknowledgement."""
