"""The ``[plugins.eventbus]`` table."""

from __future__ import annotations

from typing import Literal

import attrs

from ._retry import RetryPolicy

_pos = attrs.validators.gt(0)
_nonneg = attrs.validators.ge(0)
_pos_f = attrs.validators.gt(0.0)
_nonneg_f = attrs.validators.ge(0.0)


def _no_braces(_inst: object, attribute: attrs.Attribute[str], value: str) -> None:
    if "{" in value or "}" in value:
        raise ValueError(
            f"{attribute.name} = {value!r} must not contain '{{' or '}}': the event bus puts the prefix "
            "in a hash tag itself ({<prefix>:<event>}), one per event stream"
        )


@attrs.frozen
class EventBusConfig:
    """Settings of the event bus; every key is optional."""

    adapter: Literal["memory", "redis"] = "memory"
    """``memory``: in-process (a crash loses pending retries and the DLQ); ``redis``: Redis Streams."""
    max_retries: int = attrs.field(default=3, validator=_nonneg)
    retry_base_delay: float = attrs.field(default=1.0, validator=_nonneg_f)
    """Seconds before the first retry; retry n waits ``base * factor ** (n - 1)``."""
    retry_factor: float = attrs.field(default=2.0, validator=attrs.validators.ge(1.0))
    retry_max_delay: float = attrs.field(default=300.0, validator=_nonneg_f)
    retry_jitter: float = attrs.field(default=0.0, validator=[_nonneg_f, attrs.validators.le(1.0)])
    concurrency: int = attrs.field(default=1, validator=_pos)
    """Handler calls in flight per subscription and process (1 keeps per-process order)."""
    idempotency_ttl: int = attrs.field(default=86_400, validator=_pos)
    """Seconds :meth:`EventBus.idempotent` remembers a handled event id."""
    max_payload_bytes: int = attrs.field(default=1_048_576, validator=_pos)
    """Largest event data accepted by ``publish``, in bytes of its JSON (``EventTooLargeError`` above it)."""
    publish_timeout: float = attrs.field(default=10.0, validator=_pos_f)
    """Seconds one ``publish`` may take in all (retries, backoff, socket waits); then it raises a timeout."""
    # Redis adapter
    prefix: str = attrs.field(default="eventbus", validator=[attrs.validators.min_len(1), _no_braces])
    """Key prefix of every stream, set and hash the bus writes (no braces: the bus adds the hash tags)."""
    batch_size: int = attrs.field(default=100, validator=_pos)
    """Entries per XREADGROUP/XAUTOCLAIM call."""
    read_block: float = attrs.field(default=1.0, validator=_pos_f)
    """Longest blocking read in seconds (also how soon a crashed peer's retries are picked up)."""
    visibility_timeout: float = attrs.field(default=30.0, validator=_pos_f)
    """Seconds an entry may stay unacknowledged before another consumer reclaims it (> slowest handler)."""
    reclaim_interval: float = attrs.field(default=5.0, validator=_pos_f)
    """Seconds between XAUTOCLAIM scans for entries left by dead consumers."""
    max_deliveries: int = attrs.field(default=10, validator=_pos)
    """An entry delivered more often than this without an ack (its consumer keeps dying) is dead-lettered."""
    stream_maxlen: int = attrs.field(default=100_000, validator=_nonneg)
    """Approximate cap per event stream (XADD MAXLEN ~); 0 disables trimming."""
    new_group_start: Literal["latest", "earliest"] = "latest"
    """Where a brand-new subscription starts: events published from now on, or the whole stream."""
    max_ack_delay: float = attrs.field(default=0.05, validator=_nonneg_f)
    """Seconds a handled entry may wait for its (batched) acknowledgement; bounds duplicates after a crash."""
    reconnect_max_delay: float = attrs.field(default=5.0, validator=_pos_f)
    """Cap of the exponential backoff between reconnection attempts."""
    durability: Literal["default", "replicated"] = "default"
    """``replicated``: ``publish`` returns once ``replicas`` replicas have the event (Redis WAIT)."""
    replicas: int = attrs.field(default=1, validator=_pos)
    """With ``durability = "replicated"``: replicas that must acknowledge each published event."""
    replication_timeout: float = attrs.field(default=1.0, validator=_pos_f)
    """With ``durability = "replicated"``: seconds to wait for them (``PublishNotReplicatedError`` after)."""

    def retry_policy(self) -> RetryPolicy:
        """The default policy of subscriptions that do not pass their own."""
        return RetryPolicy(
            max_retries=self.max_retries,
            base_delay=self.retry_base_delay,
            factor=self.retry_factor,
            max_delay=self.retry_max_delay,
            jitter=self.retry_jitter,
        )
