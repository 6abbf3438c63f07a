"""milo-kernel ``outbox`` plugin: relays the transactional outbox to the event bus.

Repository writes carry events (``await users.create(data, events=[OutboxEvent(...)])``); the
document and its outbox entries commit in one MongoDB transaction. Every process that boots
the kernel with this plugin runs an :class:`OutboxRelay`: relays claim batches with a lease
(no leader; a dead holder"s lease expires), publish each entry with its original event id,
trace id and time, keep the order per aggregate, and retry with backoff while the bus is down.
Delivery is at least once: consumers dedupe on ``EventMetadata.event_id`` (``bus.idempotent``).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from kernel import lazy_exports

if TYPE_CHECKING:  # what type checkers and IDEs read
    from ._cli import parse_duration as parse_duration
    from ._config import OutboxConfig as OutboxConfig
    from ._plugin import OutboxPlugin as OutboxPlugin
    from ._relay import OutboxLagError as OutboxLagError
    from ._relay import OutboxRelay as OutboxRelay
else:  # PEP 562: a submodule is imported on first use of one of its names
    _EXPORTS = {  # submodule -> the public names it defines
        "._cli": ["parse_duration"],
        "._config": ["OutboxConfig"],
        "._plugin": ["OutboxPlugin"],
        "._relay": ["OutboxLagError", "OutboxRelay"],
    }
    __getattr__, __dir__, __all__ = lazy_exports(__name__, _EXPORTS)
