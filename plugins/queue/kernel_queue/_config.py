"""The ``[plugins.queue]`` table."""

from __future__ import annotations

from typing import Any, Literal

import attrs

MAX_RETENTION = 315_360_000.0
"""Longest retention accepted: 10 years, in seconds (Redis expiry times are bounded)."""


def _retention(_inst: Any, attribute: attrs.Attribute[Any], value: float) -> None:
    if not 0 <= value <= MAX_RETENTION:  # NaN fails too
        raise ValueError(
            f"'{attribute.name}' must be seconds from 0 to {MAX_RETENTION:.0f} (10 years): {value!r}"
        )


def _positive(_inst: Any, attribute: attrs.Attribute[Any], value: float) -> None:
    if value <= 0:
        raise ValueError(f"'{attribute.name}' must be > 0: {value!r}")


@attrs.define(frozen=True)
class QueueConfig:
    """Queue defaults, worker tuning and the processors ``kernel worker`` runs."""

    queues: list[str] = attrs.field(factory=list)
    """Queues ``kernel worker`` runs when no ``--queue`` is given (default: every queue with a processor)."""
    processors: list[str] = attrs.field(factory=list)
    """``"module:function"`` entries, each called with the ``QueueManager`` to register processors."""
    concurrency: int = attrs.field(default=5, validator=attrs.validators.ge(1))
    """Jobs run at once per queue in a ``kernel worker`` process (``--concurrency`` overrides)."""
    default_attempts: int = attrs.field(default=1, validator=attrs.validators.ge(1))
    """Total tries of a job when ``add_job`` gives no ``attempts`` (BullMQ's meaning)."""
    default_timeout: float = attrs.field(default=0.0, validator=attrs.validators.ge(0))
    """Seconds a try may run before it fails; 0 means no limit."""
    heartbeat_interval: float = attrs.field(default=2.0, validator=_positive)
    """Seconds between a worker's heartbeats for its running jobs (automatic)."""
    stall_timeout: float = attrs.field(default=10.0, validator=_positive)
    """A running job without a heartbeat for this long belongs to a dead worker and is reclaimed."""
    sweep_interval: float = attrs.field(default=2.0, validator=_positive)
    """Seconds between each worker's scans for stalled jobs."""
    schedule_interval: float = attrs.field(default=0.5, validator=_positive)
    """Seconds between promotions of due delayed jobs and recurring-job ticks."""
    poll_interval: float = attrs.field(default=1.0, validator=_positive)
    """Longest an idle worker blocks waiting for a job before rechecking."""
    max_stalls: int = attrs.field(default=3, validator=attrs.validators.ge(0))
    """Times a job may lose its worker before it fails (a job that kills its worker cannot loop forever)."""
    shutdown_grace: float = attrs.field(default=10.0, validator=attrs.validators.ge(0))
    """On SIGTERM/close, seconds running jobs get to finish before they are cancelled and re-queued."""
    events: bool = True
    """Publish job events on Redis (``listen_to_queue_events``) and on the event bus when enabled."""
    max_payload_bytes: int = attrs.field(default=1_048_576, validator=attrs.validators.ge(1))
    """Largest job data (and job result) accepted, in bytes of its JSON (``JobTooLargeError`` above it)."""
    completed_retention: float = attrs.field(default=86_400.0, validator=_retention)
    """Seconds a completed job stays in Redis (result, ``get_job``, stats); 0: until ``clean_queue``."""
    failed_retention: float = attrs.field(default=604_800.0, validator=_retention)
    """Seconds a failed (or aborted) job stays for inspection and ``retry_failed``; 0: until cleaned."""
    log_data_chars: int = attrs.field(default=100, validator=attrs.validators.ge(0))
    """Job data, results and errors in log lines are cut to this many characters; 0 leaves them out."""
    durability: Literal["default", "replicated"] = attrs.field(
        default="default", validator=attrs.validators.in_(("default", "replicated"))
    )
    """``"replicated"``: ``add_job``/``add_bulk_jobs`` return only once ``replicas`` replicas hold the
    job (``WAIT``), else raise ``EnqueueNotReplicatedError``; ``"default"``: once the primary has it."""
    replicas: int = attrs.field(default=1, validator=attrs.validators.ge(1))
    """Replicas that must acknowledge an enqueue with ``durability = "replicated"``."""
    replication_timeout: float = attrs.field(default=1.0, validator=_positive)
    """Seconds an enqueue waits for those replicas (``durability = "replicated"``)."""

    def __attrs_post_init__(self) -> None:
        if self.stall_timeout < 2 * self.heartbeat_interval:
            raise ValueError(
                f"'stall_timeout' ({self.stall_timeout}) must be at least twice 'heartbeat_interval' "
                f"({self.heartbeat_interval}), or live jobs would be reclaimed"
            )
