"""The ``[plugins.outbox]`` table."""

from __future__ import annotations

import attrs


@attrs.define(frozen=True)
class OutboxConfig:
    """How this process relays the outbox to the event bus."""

    relay: bool = True
    """Run a relay in this process (every process that boots the kernel may; they share the work)."""
    batch_size: int = attrs.field(default=100, validator=attrs.validators.gt(0))
    """Entries claimed (leased) at once."""
    lease_seconds: float = attrs.field(default=30.0, validator=attrs.validators.gt(0))
    """How long a claim holds its entries; a relay that dies lets them go after this."""
    poll_interval: float = attrs.field(default=0.2, validator=attrs.validators.gt(0))
    """Seconds between polls when idle (writes in this process and change streams wake it sooner)."""
    change_streams: bool = True
    """Also wake on inserts seen through a change stream, where the server offers them."""
    publish_timeout: float = attrs.field(default=2.0, validator=attrs.validators.gt(0))
    """Deadline of one publish (``EventBus.publish(timeout=)``); a hung bus costs at most this per batch."""
    max_backoff: float = attrs.field(default=5.0, validator=attrs.validators.gt(0))
    """Longest wait between attempts while the bus (or the database) fails; doubles from 0.1 s."""
    lag_degraded_seconds: float = attrs.field(default=30.0, validator=attrs.validators.gt(0))
    """The ``outbox`` health check degrades when the oldest unpublished entry is older than this."""
    status_interval: float = attrs.field(default=5.0, validator=attrs.validators.gt(0))
    """Seconds between refreshes of the ``outbox_backlog`` and ``outbox_lag_seconds`` gauges."""

    def __attrs_post_init__(self) -> None:
        if self.publish_timeout * 2 > self.lease_seconds:
            raise ValueError(
                f"'publish_timeout' must be at most half of lease_seconds ({self.publish_timeout} > "
                f"{self.lease_seconds} / 2): a publish must end well inside the lease that holds its entry"
            )
