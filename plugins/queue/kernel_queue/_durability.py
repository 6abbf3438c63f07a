"""``durability = "replicated"``: an enqueue returns once replicas hold the job (``WAIT``)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from redis.exceptions import NoScriptError

from ._errors import EnqueueNotReplicatedError

if TYPE_CHECKING:
    from kernel_redis import RedisService
    from redis.asyncio.client import Pipeline

    from ._scripts import Script


class Replication:
    """Runs a queue's enqueue writes through ``RedisService.wait_replicated`` with the configured policy."""

    def __init__(self, service: RedisService, *, replicas: int, timeout: float) -> None:
        self.service = service
        self.replicas = replicas
        self.timeout = timeout

    async def run(
        self, queue: str, job_ids: list[str], script: Script, keys: list[str], args: list[Any]
    ) -> Any:
        """The result of ``script`` run on the primary of its keys' slot, once ``replicas`` replicas
        have its writes.

        ``EVALSHA`` first; ``EVAL`` with the source when the node lacks the script (``NOSCRIPT``:
        nothing ran). ``EnqueueNotReplicatedError`` (naming ``job_ids`` of ``queue``) when fewer
        than ``replicas`` replicas acknowledged within ``timeout`` seconds.
        """
        try:
            return (await self._write(queue, job_ids, ("EVALSHA", script.sha, len(keys), *keys, *args)))[0]
        except NoScriptError:
            return (await self._write(queue, job_ids, ("EVAL", script.source, len(keys), *keys, *args)))[0]

    async def _write(self, queue: str, job_ids: list[str], command: tuple[Any, ...]) -> list[Any]:
        from kernel_redis import ReplicationTimeoutError

        key = command[3]  # the script's first key: every key of a queue is in its slot

        def write(pipe: Pipeline) -> None:
            pipe.execute_command(*command)

        try:
            results, _acknowledged = await self.service.wait_replicated(
                key, write, replicas=self.replicas, timeout=self.timeout
            )
        except ReplicationTimeoutError as exc:
            raise EnqueueNotReplicatedError(queue, job_ids, self.replicas, self.timeout, str(exc)) from exc
        return results
