"""milo-kernel ``eventbus`` plugin: durable events with metadata, retries, dead-letter queue and replay."""

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
