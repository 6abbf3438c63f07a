"""Key names of the Redis adapter: one hash tag per event stream, the same on every topology.

Every key a script, a transaction or a multi-key command touches together carries the stream's
hash tag ``{<prefix>:<event>}``, so on Redis Cluster they share one slot (no ``CROSSSLOT``), and
different streams spread over the slots. ``P`` is the prefix, ``E`` the event name, ``S`` a
subscription:

- ``{P:E}:stream``           the event stream, one consumer group per subscription
- ``{P:E}:retry:S``          due retries and replays of one subscription (read with the stream)
- ``{P:E}:schedule:S``       its retries scored by due time (ms)
- ``{P:E}:dlq`` / ``{P:E}:dlq:index``  the stream's dead-letter entries and their order
- ``{P}:dlq:events``         the names of the events that have (or had) dead-letter entries
- ``P:done:<key>``           the idempotency markers (single keys, spread by their own name)

The layout of earlier releases (``P:stream:E``, ``P:retry:S``, ``P:schedule:S``, one ``P:dlq``) put the
keys of one stream in different slots; :class:`LegacyKeyLayout` maps it for
``kernel redis migrate-keys``.
"""

from __future__ import annotations

import attrs


def stream_tag(prefix: str, event: str) -> str:
    """``{<prefix>:<event>}``: the hash tag of one stream and everything of its subscriptions."""
    return "{" + prefix + ":" + event + "}"


def stream_key(prefix: str, event: str) -> str:
    """``{P:E}:stream``."""
    return stream_tag(prefix, event) + ":stream"


def retry_key(prefix: str, event: str, sub: str) -> str:
    """``{P:E}:retry:S``."""
    return f"{stream_tag(prefix, event)}:retry:{sub}"


def schedule_key(prefix: str, event: str, sub: str) -> str:
    """``{P:E}:schedule:S``."""
    return f"{stream_tag(prefix, event)}:schedule:{sub}"


def dlq_key(prefix: str, event: str) -> str:
    """``{P:E}:dlq``: the hash of one stream's dead-letter entries."""
    return stream_tag(prefix, event) + ":dlq"


def dlq_index_key(prefix: str, event: str) -> str:
    """``{P:E}:dlq:index``: their order (sorted set scored by ms)."""
    return stream_tag(prefix, event) + ":dlq:index"


def dlq_events_key(prefix: str) -> str:
    """``{P}:dlq:events``: the set of event names whose DLQ may hold entries."""
    return "{" + prefix + "}:dlq:events"


def check_prefix(prefix: str) -> str:
    """``prefix`` if it can be part of a hash tag; ``ValueError`` naming the problem otherwise."""
    if not prefix or "{" in prefix or "}" in prefix:
        raise ValueError(
            f"eventbus prefix {prefix!r} must be non-empty and contain no '{{' or '}}': the bus puts it "
            "in the hash tag of every key itself"
        )
    return prefix


@attrs.frozen
class LegacyKeyLayout:
    """The layout before hash tags, mapped to the current one (a ``kernel_redis.KeyLayout``).

    Event streams are renamed one to one. A subscription's old retry and schedule keys do not
    name its event (needed for the new hash tag): they are renamed only when ``subscriptions``
    (subscription name -> event) knows it, else left (``new_name`` gives ``None``) and moved by
    the bus itself when that subscription starts, like the old single DLQ hash, which the bus
    splits per event (:meth:`RedisEventBus.migrate_legacy_keys`).
    """

    prefix: str
    subscriptions: dict[str, str] = attrs.field(factory=dict)
    owner: str = "eventbus"

    def legacy_patterns(self) -> list[str]:
        """SCAN patterns of the old keys that can be renamed one by one."""
        p = _glob_escape(self.prefix)
        return [f"{p}:stream:*", f"{p}:retry:*", f"{p}:schedule:*"]

    def new_name(self, old_key: str) -> str | None:
        """The current name of an old key, or ``None`` to leave it."""
        p = self.prefix
        for kind in ("stream", "retry", "schedule"):
            head = f"{p}:{kind}:"
            if not old_key.startswith(head) or len(old_key) == len(head):
                continue
            rest = old_key[len(head) :]
            if kind == "stream":
                return stream_key(p, rest)
            event = self.subscriptions.get(rest)
            if event is None:
                return None
            return retry_key(p, event, rest) if kind == "retry" else schedule_key(p, event, rest)
        return None


def _glob_escape(text: str) -> str:
    return "".join(f"\\{c}" if c in "*?[]\\" else c for c in text)
