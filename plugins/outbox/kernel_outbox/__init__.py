"""milo-kernel ``outbox`` plugin: relays the transactional outbox to the event bus.

Repository writes carry events (``await users.create(data, events=[OutboxEvent(...)])``); the
document and its outbox entries commit in one MongoDB transaction. Every process that boots
the kernel with this plugin runs an :class:`OutboxRelay`: relays claim batches with a lease
(no leader; a dead holder's lease expires), publish each entry with its original event id,
trace id and time, keep the order per aggregate, and retry with backoff while the bus is down.
Delivery is at least once: consumers dedupe on ``EventMetadata.event_id`` (``bus.idempotent``).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from kernel import lazy_exports

if TYPE_CHECKING:
    from ._cli import parse_duration
    from ._config import OutboxConfig
    from ._plugin import OutboxPlugin
    from ._relay import OutboxLagError, OutboxRelay

_EXPORTS = {
    "OutboxConfig": "._config",
    "OutboxLagError": "._relay",
    "OutboxPlugin": "._plugin",
    "OutboxRelay": "._relay",
    "parse_duration": "._cli",
}
"""Public name -> the submodule defining it, imported on first use (PEP 562)."""

__all__ = ["OutboxConfig", "OutboxLagError", "OutboxPlugin", "OutboxRelay", "parse_duration"]


if not TYPE_CHECKING:  # type checkers read the imports above; lazy loading keeps `import` light
    __getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
