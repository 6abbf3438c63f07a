"""The connection's observer seam: commands and pipelines of its clients are reported, on a real server."""

from __future__ import annotations

import uuid
from collections.abc import Sequence

import pytest
import redis.exceptions
from kernel_redis import CommandEnded, RedisConfig, RedisConnection, RedisEndpoint

from kernel import Secret

pytestmark = pytest.mark.anyio


class Recorder:
    """A :class:`kernel_redis.RedisObserver` keeping what it was told."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, tuple[str, ...], int, RedisEndpoint, str | None]] = []

    def _ended(self, kind: str, names: tuple[str, ...], size: int, endpoint: RedisEndpoint) -> CommandEnded:
        def ended(error: BaseException | None) -> None:
            failed = None if error is None else type(error).__name__
            self.calls.append((kind, names, size, endpoint, failed))

        return ended

    def command(self, name: str, endpoint: RedisEndpoint) -> CommandEnded | None:
        return self._ended("command", (name,), 1, endpoint)

    def pipeline(self, names: Sequence[str], size: int, endpoint: RedisEndpoint) -> CommandEnded | None:
        return self._ended("pipeline", tuple(names), size, endpoint)


async def test_commands_and_pipelines_of_its_clients_are_reported_until_unset(redis_url: str) -> None:
    conn = RedisConnection(Secret(redis_url), RedisConfig(url=Secret(redis_url), check_on_start=False))
    early = conn.new_client()  # made before the observer: reported too
    key = f"kctest-observer-{uuid.uuid4().hex[:8]}"
    seen = Recorder()
    try:
        conn.set_observer(seen)
        late = conn.new_client()
        await conn.client.set(key, b"v")
        assert await early.get(key) == b"v"
        pipe = late.pipeline(transaction=False)
        pipe.incr(f"{key}:n")
        pipe.expire(f"{key}:n", 60)
        assert await pipe.execute() == [1, True]
        with pytest.raises(redis.exceptions.ResponseError):
            await conn.client.incr(key)  # not an integer
        batched = ("INCRBY", "EXPIRE")  # a cluster pipeline's queue is private to redis-py: no names
        if conn.topology == "standalone":  # the client knows where its commands go
            host = redis_url.split("://")[1].split("/")[0].rsplit("@", 1)[-1]
            endpoint = RedisEndpoint(host.rsplit(":", 1)[0], int(host.rsplit(":", 1)[1]), 0)
        else:  # the server decides (a Sentinel's master, a cluster's node)
            endpoint = RedisEndpoint(None, None, 0)
            batched = () if conn.topology == "cluster" else batched
        assert seen.calls == [
            ("command", ("SET",), 1, endpoint, None),
            ("command", ("GET",), 1, endpoint, None),
            ("pipeline", batched, 2, endpoint, None),
            ("command", ("INCRBY",), 1, endpoint, "ResponseError"),
        ]
        conn.set_observer(None)
        assert "execute_command" not in vars(conn.client)  # redis-py's own method again
        await conn.client.delete(key, f"{key}:n")
        await late.get(key)
        assert len(seen.calls) == 4
    finally:
        conn.set_observer(None)
        await conn.client.delete(key, f"{key}:n")
        await conn.aclose()
