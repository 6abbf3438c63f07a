"""The sample processor: notification dispatch with progress 10 -> 100."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from ._job import JobContext
    from ._manager import QueueManager

NOTIFICATIONS = "notifications"


async def notification_processor(job: JobContext) -> dict[str, Any]:
    """Process ``send-notification`` jobs: ``{"notification_id", "user_id", "type"}``.

    A real host replaces the body with its notification service; the shape (progress,
    JSON result with ``sent_at``) is the contract it documents.
    """
    data = job.data or {}
    await job.update_progress(10)
    sent = {
        "notification_id": data.get("notification_id"),
        "user_id": data.get("user_id"),
        "type": data.get("type", "push"),
    }
    await job.update_progress(100)
    return {"success": True, "sent_at": datetime.now(UTC).isoformat(), **sent}


def register_sample_processors(manager: QueueManager) -> None:
    """Register :func:`notification_processor` for ``send-notification`` on ``notifications``.

    Enable it with ``processors = ["kernel_queue:register_sample_processors"]``.
    """
    manager.register_processor(NOTIFICATIONS, "send-notification", notification_processor, replace=True)
