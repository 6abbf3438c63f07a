"""``durability = "replicated"``: an enqueue returns once replicas hold the job (``WAIT``)."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from ._errors import EnqueueNotReplicatedError

if TYPE_CHECKING:
    from kernel_redis import RedisService


class Replication:
    """Runs a queue's enqueue writes through ``RedisService.wait_replicated`` with the configured policy."""

    def __init__(self, service: RedisService, *, replicas: int, timeout: float) -> None:
        self.service = service
        self.replicas = replicas
        self.timeout = timeout

    async def write(
        self, queue: str, key: str, job_ids: list[str], write: Callable[[Any], None]
    ) -> list[Any]:
        """The results of the writes ``write(pipe)`` queues, run on ``key``'s node, once replicated.

        ``EnqueueNotReplicatedError`` (naming ``job_ids`` of ``queue``) when fewer than
        ``replicas`` replicas acknowledged within ``timeout`` seconds.
        """
        from kernel_redis import ReplicationTimeoutError

        try:
            results, _acknowledged = await self.service.wait_replicated(
                key, write, replicas=self.replicas, timeout=self.timeout
            )
        except ReplicationTimeoutError as exc:
            raise EnqueueNotReplicatedError(queue, job_ids, self.replicas, self.timeout, str(exc)) from exc
        return results
