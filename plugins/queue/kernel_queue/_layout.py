"""The queue's old key layout, for ``kernel redis migrate-keys``.

Before the hash tags, a queue ``orders`` kept ``saq:orders:<field>`` and ``saq:job:orders:<id>``
(SAQ's own names); now ``saq:{orders}:<field>`` and ``saq:job:{orders}:<id>``. The abort flags
(``saq:abort:<id>``, five seconds of life) are left alone.
"""

from __future__ import annotations

from collections.abc import Iterable

from ._queue import queue_tag


def _glob_escape(text: str) -> str:
    return "".join("\\" + c if c in "*?[]\\" else c for c in text)


class QueueKeyLayout:
    """:class:`kernel_redis.KeyLayout` of the queues this Redis knows (old SAQ names -> tagged names)."""

    owner = "queue"

    def __init__(self, queues: Iterable[str]) -> None:
        self.queues = sorted({q for q in queues if q and not any(c in q for c in ":{}")})

    def legacy_patterns(self) -> list[str]:
        """``saq:<name>:*`` and ``saq:job:<name>:*`` of every known queue."""
        patterns = []
        for name in self.queues:
            patterns += [f"saq:{_glob_escape(name)}:*", f"saq:job:{_glob_escape(name)}:*"]
        return patterns

    def new_name(self, old_key: str) -> str | None:
        """``saq:{<name>}:<field>`` / ``saq:job:{<name>}:<id>`` for a key of the old layout, else None."""
        # Job records first: with a queue named "job", "saq:job:orders:1" is still a job of "orders".
        for kind in ("saq:job:", "saq:"):
            for name in self.queues:
                old = f"{kind}{name}:"
                if old_key.startswith(old):
                    return f"{kind}{queue_tag(name)}:{old_key[len(old) :]}"
        return None
