"""The dead-letter entry: an event a subscription gave up on, with why and when."""

from __future__ import annotations

from typing import Any

import attrs

from ._metadata import EventMetadata


@attrs.frozen
class DeadLetterEntry:
    """One event that failed for one subscription after its retries (or at once, when non-retryable)."""

    metadata: EventMetadata
    """Metadata of the last attempt (``attempt`` is the number of deliveries made)."""
    data: Any
    subscription: str
    attempts: int
    first_failure_at: str
    last_failure_at: str
    error_type: str
    error_message: str
    traceback: str = attrs.field(default="", repr=False)
    """For operators (``kernel dlq show``); never sent back to handlers."""

    @property
    def event_id(self) -> str:
        return self.metadata.event_id

    @property
    def event_name(self) -> str:
        return self.metadata.event_name

    @property
    def key(self) -> str:
        """Unique per event and subscription."""
        return f"{self.metadata.event_id}|{self.subscription}"

    @property
    def error(self) -> dict[str, str]:
        """``{"type": ..., "message": ...}`` as the seed's ``entry.error``."""
        return {"type": self.error_type, "message": self.error_message}

    def to_dict(self, *, traceback: bool = True) -> dict[str, Any]:
        """JSON-ready dict; ``traceback=False`` leaves the traceback out."""
        out: dict[str, Any] = {
            "event_id": self.event_id, "event_name": self.event_name, "data": self.data,
            "metadata": self.metadata.to_dict(), "subscription": self.subscription,
            "attempts": self.attempts, "first_failure_at": self.first_failure_at,
            "last_failure_at": self.last_failure_at, "error": self.error,
        }
        if traceback:
            out["traceback"] = self.traceback
        return out

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> DeadLetterEntry:
        """Inverse of :meth:`to_dict`."""
        err = d.get("error") or {}
        return cls(
            metadata=EventMetadata.from_dict(d["metadata"]), data=d.get("data"),
            subscription=str(d["subscription"]), attempts=int(d["attempts"]),
            first_failure_at=str(d["first_failure_at"]), last_failure_at=str(d["last_failure_at"]),
            error_type=str(err.get("type", "")), error_message=str(err.get("message", "")),
            traceback=str(d.get("traceback", "")),
        )
