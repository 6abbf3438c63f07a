"""The redis plugin's instrumentation seam: what an observer (tracing) is told about each command.

redis-py 7 has no per-client command hook (its ``EventDispatcher`` reports connection events,
and its ``redis.observability`` records process-wide OpenTelemetry *metrics*, no spans), so the
seam is the plugin's connection: :meth:`RedisConnection.set_observer` routes the
``execute_command`` and ``pipeline`` of the clients *it built* through the observer. The routing
is an attribute of those client objects, set while an observer is set and removed with it: a
client without an observer runs redis-py's own methods, untouched (no per-command cost).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from typing import Any, NamedTuple, Protocol

from redis.asyncio.cluster import RedisCluster

from ._clients import AnyRedis

CommandEnded = Callable[[BaseException | None], None]
"""Called once a command (or pipeline) ended, with the exception it raised (``None``: it returned)."""


class RedisEndpoint(NamedTuple):
    """Where a client's commands go, as far as the client knows before sending one."""

    address: str | None
    """Host name or IP (a Unix socket's path); ``None`` when only the server decides (Sentinel's
    master, a cluster's node)."""
    port: int | None
    db: int
    """The database index (always 0 on a cluster)."""


class RedisObserver(Protocol):
    """Told about every command and pipeline of the clients a :class:`RedisConnection` built."""

    def command(self, name: str, endpoint: RedisEndpoint) -> CommandEnded | None:
        """Command ``name`` (``GET``, ``XADD``... upper case; no argument: keys and values stay out)
        starts; the callback is called once it ended. ``None``: nothing to report (no cost further)."""
        ...

    def pipeline(self, names: Sequence[str], size: int, endpoint: RedisEndpoint) -> CommandEnded | None:
        """A pipeline (or ``MULTI`` transaction) of ``size`` commands starts; ``names`` are their
        names in order (empty for a cluster pipeline, whose queue redis-py keeps private)."""
        ...


def command_name(command: object) -> str:
    """A command's name as redis-py got it (``"GET"``, ``b"get"``), upper case."""
    if isinstance(command, bytes):
        return command.decode("ascii", "replace").upper()
    return str(command).upper()


def endpoint_of(client: AnyRedis) -> RedisEndpoint:
    """The endpoint ``client``'s commands go to (its pool's settings)."""
    if isinstance(client, RedisCluster):
        return RedisEndpoint(None, None, 0)
    settings = client.connection_pool.connection_kwargs
    address = settings.get("host", settings.get("path"))
    port = settings.get("port") if "host" in settings else None
    return RedisEndpoint(address, port, int(settings.get("db") or 0))


async def _reported(ended: CommandEnded, call: Awaitable[Any]) -> Any:
    try:
        result = await call
    except BaseException as exc:
        ended(exc)
        raise
    ended(None)
    return result


def _observed_pipe(pipe: Any, observer: RedisObserver, endpoint: RedisEndpoint) -> Any:
    """``pipe`` with its ``execute`` reporting to ``observer``."""
    run: Callable[..., Awaitable[Any]] = pipe.execute

    async def execute(*args: Any, **kwargs: Any) -> Any:
        stack = getattr(pipe, "command_stack", None)  # a plain pipeline's (args, options) pairs
        names = [command_name(args_[0]) for args_, _ in stack] if stack is not None else []
        ended = observer.pipeline(names, len(pipe), endpoint)
        if ended is None:
            return await run(*args, **kwargs)
        return await _reported(ended, run(*args, **kwargs))

    pipe.__dict__["execute"] = execute
    return pipe


def observe_client(client: AnyRedis, observer: RedisObserver | None) -> None:
    """Route ``client``'s commands and pipelines through ``observer`` (None: back to redis-py's own)."""
    attributes = vars(client)
    if observer is None:
        attributes.pop("execute_command", None)
        attributes.pop("pipeline", None)
        return
    endpoint = endpoint_of(client)
    cls = type(client)
    execute_command: Callable[..., Awaitable[Any]] = cls.execute_command.__get__(client)
    make_pipeline: Callable[..., Any] = cls.pipeline.__get__(client)

    def observed_command(*args: Any, **options: Any) -> Awaitable[Any]:
        ended = observer.command(command_name(args[0]), endpoint)
        if ended is None:
            return execute_command(*args, **options)
        return _reported(ended, execute_command(*args, **options))

    def observed_pipeline(*args: Any, **kwargs: Any) -> Any:
        return _observed_pipe(make_pipeline(*args, **kwargs), observer, endpoint)

    attributes["execute_command"] = observed_command
    attributes["pipeline"] = observed_pipeline
