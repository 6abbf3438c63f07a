"""milo-kernel ``eventbus`` plugin: durable events with metadata, retries, dead-letter queue and replay."""

from __future__ import annotations

from typing import TYPE_CHECKING

from kernel import lazy_exports

if TYPE_CHECKING:
    from ._bus import EventBus, Handler, Subscription
    from ._config import EventBusConfig
    from ._dlq import DeadLetterEntry, DeadLetterStore, ReplayResult
    from ._errors import (
        AdapterUnavailableError,
        CorruptDeadLetterError,
        DeadLetterNotFoundError,
        DeliveryLimitError,
        EventBusError,
        EventDataError,
        EventTooLargeError,
        NonRetryableError,
        PublishTimeoutError,
        SubscriptionError,
        UndecodableEventError,
    )
    from ._idempotency import IdempotencyStore, MemoryIdempotencyStore, RedisIdempotencyStore, idempotent
    from ._memory import MemoryEventBus
    from ._metadata import EventMetadata, new_event_id
    from ._plugin import EventBusPlugin, build_bus
    from ._retry import RetryPolicy

_EXPORTS = {
    "AdapterUnavailableError": "._errors",
    "CorruptDeadLetterError": "._errors",
    "DeadLetterEntry": "._dlq",
    "DeadLetterNotFoundError": "._errors",
    "DeadLetterStore": "._dlq",
    "DeliveryLimitError": "._errors",
    "EventBus": "._bus",
    "EventBusConfig": "._config",
    "EventBusError": "._errors",
    "EventBusPlugin": "._plugin",
    "EventDataError": "._errors",
    "EventMetadata": "._metadata",
    "EventTooLargeError": "._errors",
    "Handler": "._bus",
    "IdempotencyStore": "._idempotency",
    "MemoryEventBus": "._memory",
    "MemoryIdempotencyStore": "._idempotency",
    "NonRetryableError": "._errors",
    "PublishTimeoutError": "._errors",
    "RedisIdempotencyStore": "._idempotency",
    "ReplayResult": "._dlq",
    "RetryPolicy": "._retry",
    "Subscription": "._bus",
    "SubscriptionError": "._errors",
    "UndecodableEventError": "._errors",
    "build_bus": "._plugin",
    "idempotent": "._idempotency",
    "new_event_id": "._metadata",
}
"""Public name -> the submodule defining it, imported on first use (PEP 562)."""

__all__ = [
    "AdapterUnavailableError",
    "CorruptDeadLetterError",
    "DeadLetterEntry",
    "DeadLetterNotFoundError",
    "DeadLetterStore",
    "DeliveryLimitError",
    "EventBus",
    "EventBusConfig",
    "EventBusError",
    "EventBusPlugin",
    "EventDataError",
    "EventMetadata",
    "EventTooLargeError",
    "Handler",
    "IdempotencyStore",
    "MemoryEventBus",
    "MemoryIdempotencyStore",
    "NonRetryableError",
    "PublishTimeoutError",
    "RedisIdempotencyStore",
    "ReplayResult",
    "RetryPolicy",
    "Subscription",
    "SubscriptionError",
    "UndecodableEventError",
    "build_bus",
    "idempotent",
    "new_event_id",
]


if not TYPE_CHECKING:  # type checkers read the imports above; lazy loading keeps `import` light
    __getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
