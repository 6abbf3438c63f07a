"""milo-kernel ``eventbus`` plugin: durable events with metadata, retries, dead-letter queue and replay."""

from __future__ import annotations

from typing import TYPE_CHECKING

from kernel import lazy_exports

if TYPE_CHECKING:  # what type checkers and IDEs read
    from ._bus import EventBus as EventBus
    from ._bus import Handler as Handler
    from ._bus import Subscription as Subscription
    from ._config import EventBusConfig as EventBusConfig
    from ._dlq import DeadLetterEntry as DeadLetterEntry
    from ._dlq import DeadLetterStore as DeadLetterStore
    from ._dlq import ReplayResult as ReplayResult
    from ._errors import AdapterUnavailableError as AdapterUnavailableError
    from ._errors import CorruptDeadLetterError as CorruptDeadLetterError
    from ._errors import DeadLetterNotFoundError as DeadLetterNotFoundError
    from ._errors import DeliveryLimitError as DeliveryLimitError
    from ._errors import EventBusError as EventBusError
    from ._errors import EventDataError as EventDataError
    from ._errors import EventTooLargeError as EventTooLargeError
    from ._errors import NonRetryableError as NonRetryableError
    from ._errors import PublishNotReplicatedError as PublishNotReplicatedError
    from ._errors import PublishTimeoutError as PublishTimeoutError
    from ._errors import SubscriptionError as SubscriptionError
    from ._errors import UndecodableEventError as UndecodableEventError
    from ._idempotency import IdempotencyStore as IdempotencyStore
    from ._idempotency import MemoryIdempotencyStore as MemoryIdempotencyStore
    from ._idempotency import RedisIdempotencyStore as RedisIdempotencyStore
    from ._idempotency import idempotent as idempotent
    from ._memory import MemoryEventBus as MemoryEventBus
    from ._metadata import EventMetadata as EventMetadata
    from ._metadata import new_event_id as new_event_id
    from ._observe import EventBusObserver as EventBusObserver
    from ._observe import HandlerAttempt as HandlerAttempt
    from ._plugin import EventBusPlugin as EventBusPlugin
    from ._plugin import build_bus as build_bus
    from ._retry import RetryPolicy as RetryPolicy
else:  # PEP 562: a submodule is imported on first use of one of its names
    _EXPORTS = {  # submodule -> the public names it defines
        "._bus": ["EventBus", "Handler", "Subscription"],
        "._config": ["EventBusConfig"],
        "._dlq": ["DeadLetterEntry", "DeadLetterStore", "ReplayResult"],
        "._errors": [
            "AdapterUnavailableError",
            "CorruptDeadLetterError",
            "DeadLetterNotFoundError",
            "DeliveryLimitError",
            "EventBusError",
            "EventDataError",
            "EventTooLargeError",
            "NonRetryableError",
            "PublishNotReplicatedError",
            "PublishTimeoutError",
            "SubscriptionError",
            "UndecodableEventError",
        ],
        "._idempotency": [
            "IdempotencyStore",
            "MemoryIdempotencyStore",
            "RedisIdempotencyStore",
            "idempotent",
        ],
        "._memory": ["MemoryEventBus"],
        "._metadata": ["EventMetadata", "new_event_id"],
        "._observe": ["EventBusObserver", "HandlerAttempt"],
        "._plugin": ["EventBusPlugin", "build_bus"],
        "._retry": ["RetryPolicy"],
    }
    __getattr__, __dir__, __all__ = lazy_exports(__name__, _EXPORTS)
