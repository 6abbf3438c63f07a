"""The Redis Streams adapter: durable events, one consumer group per subscription, retries kept in Redis.

Keys (``P`` is the prefix, ``E`` the event; see ``_keys`` -- one hash tag per stream):

- ``{P:E}:stream``          the event stream (XADD MAXLEN ~ ``stream_maxlen``); one group per subscription
- ``{P:E}:retry:<sub>``     re-deliveries of one subscription (due retries, replays), deleted once acked
- ``{P:E}:schedule:<sub>``  retries scored by due time (ms), moved to the retry stream by a script
- ``{P:E}:dlq`` / ``{P:E}:dlq:index``  dead-letter entries (hash by ``<event_id>|<sub>``) and their order

Works on one server, a Sentinel master client and a ``RedisCluster`` client alike.
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import json
import os
import random
import secrets
import socket
import time
from collections.abc import Awaitable, Callable, Sequence
from typing import TYPE_CHECKING, Any, Literal, TypeAlias

import anyio
import attrs
from redis import exceptions as rexc
from redis.asyncio.cluster import RedisCluster

from ._bus import EventBus, Failure, PublishProgress, Subscription, dumps, log
from ._deadline import MAX_QUEUES, DeadlineQueue
from ._dlq import DeadLetterEntry
from ._errors import DeliveryLimitError, PublishNotReplicatedError, SubscriptionError, UndecodableEventError
from ._idempotency import IdempotencyStore, RedisIdempotencyStore
from ._keys import check_prefix, retry_key, schedule_key, stream_key
from ._metadata import EventMetadata, make_metadata, now_rfc3339, rfc3339
from ._redis_dlq import RedisDeadLetterStore, parse_dead

if TYPE_CHECKING:
    from kernel_redis import AnyRedis

WaitReplicated: TypeAlias = Callable[..., Awaitable[tuple[list[Any], int]]]
"""``RedisService.wait_replicated(key, write, *, replicas, timeout)`` of the redis plugin."""

# Moves due retries of one subscription into its retry stream; returns [moved, next due ms or -1].
_MOVE_DUE = """
local due = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', ARGV[1], 'LIMIT', 0, tonumber(ARGV[2]))
for _, m in ipairs(due) do
  redis.call('XADD', KEYS[2], '*', 'j', m)
  redis.call('ZREM', KEYS[1], m)
end
local nxt = redis.call('ZRANGE', KEYS[1], 0, 0, 'WITHSCORES')
return {#due, nxt[2] or '-1'}
"""

# Takes one entry out of the DLQ and re-delivers it, only if it was still there (concurrent replays are safe).
_REPLAY = """
if redis.call('HDEL', KEYS[1], ARGV[1]) == 1 then
  redis.call('ZREM', KEYS[2], ARGV[1])
  redis.call('XADD', KEYS[3], '*', 'j', ARGV[2])
  return 1
end
return 0
"""

_CONNECTION_ERRORS = (rexc.ConnectionError, rexc.TimeoutError, OSError, asyncio.TimeoutError)
# a write that met a failover or a moved slot: nothing was stored, the topology is reloaded and it is retried
_MOVED_ERRORS = (
    rexc.MovedError,
    rexc.AskError,
    rexc.TryAgainError,
    rexc.ClusterDownError,
    rexc.ReadOnlyError,
    rexc.SlotNotCoveredError,
)
_RETRIED = _CONNECTION_ERRORS + _MOVED_ERRORS


def _ms() -> int:
    return time.time_ns() // 1_000_000


def _get_connection_args(pool: Any) -> tuple[str, ...]:
    """Arguments of ``pool.get_connection``: redis-py < 5.3 needs a command name, later ones warn about it."""
    try:
        param = inspect.signature(pool.get_connection).parameters.get("command_name")
    except (TypeError, ValueError):
        return ()
    return ("XADD",) if param is not None and param.default is inspect.Parameter.empty else ()


def _releaser(node: Any) -> Callable[[Any], Awaitable[None]]:
    """An async ``release`` for a cluster node's connections (``ClusterNode.release`` is synchronous)."""

    async def release(conn: Any) -> None:
        node.release(conn)

    return release


def _acknowledged(exc: Exception) -> int | None:
    """Replicas a ``kernel_redis.ReplicationTimeoutError`` says acknowledged; ``None`` for other errors."""
    from kernel_redis import ReplicationTimeoutError  # the helper that raised it comes from there

    return exc.acknowledged if isinstance(exc, ReplicationTimeoutError) else None


@attrs.define
class _State:
    """Per-subscription consumer state."""

    task: asyncio.Task[None] | None = None
    acks: list[bytes] = attrs.field(factory=list)
    """Event-stream entries handled successfully but not yet acknowledged (kept across a lost connection)."""
    retry_acks: list[bytes] = attrs.field(factory=list)
    """The same for the subscription's retry stream."""
    next_due: float = 0.0
    """Earliest known retry due time (ms); 0 = check now."""
    next_reclaim: float = 0.0
    next_cleanup: float = attrs.field(factory=lambda: time.monotonic() + 60.0)
    ready: bool = False
    lost: bool = False
    """The group existed and vanished."""
    delay: float = 0.0
    """Current reconnect backoff (s) of the consumer loop."""
    failing: bool = False
    """The consumer loop lost Redis and has not read since (logged once, then quiet)."""


@attrs.frozen
class _Failed:
    """A stream entry to retry or dead-letter: where it stands, what it carried, how it failed."""

    stream: str
    is_retry: bool
    """``stream`` is the subscription's retry stream (its entries are deleted once acknowledged)."""
    entry_id: bytes
    data: Any
    meta: EventMetadata
    failure: Failure
    first_failure: str | None
    """When the event first failed (retry entries carry it), else None: this failure is the first."""


def _decode_event(fields: dict[bytes, bytes] | None, event: str) -> tuple[Any, EventMetadata]:
    """Data and metadata of an event-stream entry (see ``_publish``): a header line, then the JSON data.

    Raises (KeyError, ValueError, ...) when the entry is not one: the caller dead-letters it.
    """
    if fields is None:
        raise KeyError("entry has no fields")
    # decode once: json.loads of a str skips the encoding sniffing it does for bytes
    head, _, body = fields[b"e"].decode().partition("\n")
    version, event_id, ts, tid, src = head.split("\t")
    if version != "1":
        raise ValueError(f"unknown entry format {version!r}")
    tp = fields.get(b"tp")  # published with tracing (see _publish): its span's traceparent
    if tp is None:  # untraced: the other fields keep their defaults (fewer arguments to pass)
        meta = make_metadata(event_id, event, ts, src or None, tid or None)
    else:
        tst = fields.get(b"tst")  # and its tracestate, when it has one
        meta = make_metadata(
            event_id,
            event,
            ts,
            src or None,
            tid or None,
            1,
            None,
            tp.decode("ascii", "replace"),
            None if tst is None else tst.decode("ascii", "replace"),
        )
    # json.loads without its two Python-level calls and trailing-whitespace match: the C scanner
    # reads our compact JSON whole; anything else (whitespace, an error) goes through json.loads
    try:
        data, end = _scan_json(body, 0)
    except (StopIteration, ValueError):
        end = -1
    if end != len(body):
        data = json.loads(body)
    return data, meta


_scan_json: Callable[[str, int], tuple[Any, int]] = json.JSONDecoder().scan_once  # type: ignore[attr-defined]
"""``(value, end)`` of the JSON value at an index of a str (json's C scanner, when built with it)."""


class RedisEventBus(EventBus):
    """Events in Redis Streams: nothing published is lost when a consumer dies or Redis restarts (with AOF).

    Delivery is at-least-once per subscription: an entry is acknowledged only
    after its handler succeeded (or it was scheduled for retry / dead-lettered
    in the same transaction), so a crash re-delivers, never drops.
    """

    adapter = "redis"

    def __init__(
        self,
        client: AnyRedis,
        *,
        blocking_client: AnyRedis | None = None,
        prefix: str = "eventbus",
        batch_size: int = 100,
        read_block: float = 1.0,
        visibility_timeout: float = 30.0,
        reclaim_interval: float = 5.0,
        max_deliveries: int = 10,
        stream_maxlen: int = 100_000,
        new_group_start: Literal["latest", "earliest"] = "latest",
        reconnect_max_delay: float = 5.0,
        max_ack_delay: float = 0.05,
        consumer_name: str | None = None,
        durability: Literal["default", "replicated"] = "default",
        replicas: int = 1,
        replication_timeout: float = 1.0,
        wait_replicated: WaitReplicated | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        if durability not in ("default", "replicated"):
            raise ValueError(f'durability must be "default" or "replicated", not {durability!r}')
        if replicas < 1 or replication_timeout <= 0:
            raise ValueError(
                f"replicas must be >= 1 and replication_timeout > 0 s, got {replicas!r} and "
                f"{replication_timeout!r}"
            )
        self.client = client
        self.blocking = blocking_client or client
        self.cluster = isinstance(client, RedisCluster)
        """Whether the client is a ``RedisCluster`` (writes go to the node of the key's slot)."""
        self.prefix = check_prefix(prefix)
        self.durability = durability
        """``"replicated"``: ``publish`` returns once ``replicas`` replicas have the event (WAIT)."""
        self.replicas = replicas
        self.replication_timeout = replication_timeout
        self._wait_replicated = wait_replicated
        self.batch_size = batch_size
        self.read_block = read_block
        self.visibility_timeout = visibility_timeout
        self.reclaim_interval = reclaim_interval
        self.max_deliveries = max_deliveries
        self.stream_maxlen = stream_maxlen
        self.new_group_start = new_group_start
        self.reconnect_max_delay = reconnect_max_delay
        self.max_ack_delay = max_ack_delay
        self.consumer = consumer_name or f"{socket.gethostname()}:{os.getpid()}:{secrets.token_hex(3)}"
        self.dead_letters = self._dead_letters = RedisDeadLetterStore(client, prefix)
        # scripts (EVALSHA, loaded on NOSCRIPT) work on a cluster client too: their keys share one slot
        self._move_due = client.register_script(_MOVE_DUE)  # type: ignore[misc]
        self._replay = client.register_script(_REPLAY)  # type: ignore[misc]
        self._states: dict[str, _State] = {}
        self._setup: set[anyio.Event] = set()
        """Set when a new subscription's groups exist (or their creation failed): publish waits for them."""
        self._stream_keys: dict[str, str] = {}
        self._deadlines: dict[float, DeadlineQueue] = {}
        """In-flight publishes per timeout value, each with one timer (see :meth:`_publish_within`)."""
        self._idem = RedisIdempotencyStore(client, f"{prefix}:done:")
        self._stopping = False
        self._xadd_options: tuple[str | int, ...] = (
            ("MAXLEN", "~", stream_maxlen, "*", "e") if stream_maxlen else ("*", "e")
        )
        self._get_connection_args = (
            () if self.cluster else _get_connection_args(client.connection_pool)  # type: ignore[union-attr]
        )

    # ------------------------------------------------------------------ keys

    def stream_key(self, event: str) -> str:
        """``{<prefix>:<event>}:stream``: the stream events of that name are added to."""
        key = self._stream_keys.get(event)
        if key is None:
            key = self._stream_keys[event] = stream_key(self.prefix, event)
        return key

    def _event_of(self, sub: str, event: str | None) -> str:
        if event is not None:
            return event
        found = self._by_name.get(sub)
        if found is None:
            raise SubscriptionError(
                f"subscription {sub!r} is not subscribed on this bus: pass its event to name its keys"
            )
        return found.event

    def retry_key(self, sub: str, event: str | None = None) -> str:
        """``{<prefix>:<event>}:retry:<sub>``: the stream of a subscription's due retries and replays.

        ``event`` defaults to the event of the subscription ``sub`` of this bus.
        """
        return retry_key(self.prefix, self._event_of(sub, event), sub)

    def schedule_key(self, sub: str, event: str | None = None) -> str:
        """``{<prefix>:<event>}:schedule:<sub>``: a subscription's retries, scored by due time (ms)."""
        return schedule_key(self.prefix, self._event_of(sub, event), sub)

    # ------------------------------------------------------------------ publishing

    async def _publish_within(self, meta: EventMetadata, body: str, deadline: float) -> None:
        """:meth:`EventBus._publish_within` on asyncio directly, with one shared timer per timeout value.

        redis-py's client is asyncio-only, so this adapter always runs on asyncio (under anyio
        too) and may use its primitives: the deadline is a :class:`DeadlineQueue` entry, not an
        anyio cancel scope (a timer per call, most of what publish added to an XADD). Same
        guarantee: the publish is cancelled at its deadline and raises :class:`PublishTimeoutError`
        (``may_be_stored`` from ``progress``); a cancellation from outside (a caller's own
        deadline) passes through untouched.
        """
        loop = asyncio.get_running_loop()
        queue = self._deadlines.get(deadline)
        if queue is None or queue.loop is not loop:
            if queue is None and len(self._deadlines) >= MAX_QUEUES:  # many distinct timeouts
                return await super()._publish_within(meta, body, deadline)
            queue = self._deadlines[deadline] = DeadlineQueue(loop, deadline)
        task: Any = asyncio.current_task(loop)
        cancelling = task.cancelling()
        entry = queue.arm(task)
        progress = PublishProgress()
        try:
            await self._publish(meta, body, progress)
        except asyncio.CancelledError:
            if queue.disarm(entry) or task.uncancel() > cancelling:
                raise  # not (only) our deadline: cancelled from outside
            raise self._timed_out(meta, deadline, progress) from progress.last_error
        except BaseException:
            if not queue.disarm(entry):  # the deadline passed as it failed: take back its cancel
                task.uncancel()
            raise
        if not queue.disarm(entry):  # the deadline passed as it ended (stored): take back its cancel
            task.uncancel()

    async def _publish(self, meta: EventMetadata, body: str, progress: PublishProgress) -> None:
        if self._setup:
            # groups of subscriptions made just before must exist, or a "latest" group would miss this
            # event (waiting on an event: a publish cut by its deadline leaves the setup running)
            await self._groups_created()
        # one field: a tab-separated header line, then the JSON data (Redis parses and stores less)
        entry = f"1\t{meta.event_id}\t{meta.timestamp}\t{meta.trace_id or ''}\t{meta.source or ''}\n{body}"
        key = self._stream_keys.get(meta.event_name) or self.stream_key(meta.event_name)
        command: tuple[str | int | bytes, ...] = ("XADD", key, *self._xadd_options, entry)
        traceparent = meta.traceparent
        if traceparent is not None:  # traced: a field of its own (earlier consumers ignore it)
            # as bytes when ASCII (a W3C traceparent is): what redis-py's encoder makes of them in any
            # ASCII-compatible encoding (the field is read back as b"tp": the client's is one), without
            # its Python-level type tests per argument (~4k instructions each)
            command = (*command, b"tp", traceparent.encode() if traceparent.isascii() else traceparent)
            if meta.tracestate is not None:  # W3C: a tracestate only travels with a traceparent
                command = (*command, "tst", meta.tracestate)
        delay = 0.05
        while True:  # until stored or the publish deadline cancels this
            try:
                if self.durability == "replicated":
                    await self._xadd_replicated(meta, key, command, progress)
                else:
                    await self._xadd(key, (command,), progress)
                return
            except _RETRIED as exc:
                progress.last_error = exc
                log.debug(
                    "eventbus: publish of %s failed (%s: %s), retrying in %.2fs",
                    meta.event_id,
                    type(exc).__name__,
                    exc,
                    delay,
                )
                # a failover or a moved slot: learn the new owner of the slot; not when the node's
                # connections were all busy (MaxConnectionsError: the topology did not change, and a
                # reload drops the old nodes' open connections, redis/redis-py#4053): just retry
                if self.cluster and not isinstance(exc, rexc.MaxConnectionsError):
                    with contextlib.suppress(Exception):
                        await self.client.nodes_manager.initialize()  # type: ignore[union-attr]
            await anyio.sleep(delay * random.uniform(0.8, 1.2))
            delay = min(delay * 2, 1.0)

    async def _xadd_replicated(
        self, meta: EventMetadata, key: str, command: tuple[str | int | bytes, ...], progress: PublishProgress
    ) -> None:
        """XADD, then WAIT for ``replicas`` on the same connection; raise if too few acknowledged."""
        timeout_ms = max(1, int(self.replication_timeout * 1000))
        if self._wait_replicated is not None:  # the redis plugin's helper (RedisService.wait_replicated)
            progress.sent = True
            try:
                _results, acked = await self._wait_replicated(
                    key,
                    lambda pipe: pipe.execute_command(*command),
                    replicas=self.replicas,
                    timeout=self.replication_timeout,
                )
            except Exception as exc:
                acked_or_none = _acknowledged(exc)
                if acked_or_none is None:
                    raise
                acked = acked_or_none
        else:
            _entry_id, acked = await self._xadd(key, (command, ("WAIT", self.replicas, timeout_ms)), progress)
        if int(acked) < self.replicas:
            raise PublishNotReplicatedError(meta, self.replicas, int(acked), self.replication_timeout)

    async def _xadd(
        self, key: str, commands: Sequence[tuple[str | int | bytes, ...]], progress: PublishProgress
    ) -> list[Any]:
        """``commands`` (an XADD, maybe a WAIT) on one connection to the node of ``key``'s slot.

        It knows when they are sent (``execute_command`` would hide that). A connection that
        failed or was cancelled between sending and reading its replies is disconnected before
        it goes back to the pool: a late reply must never answer another command.
        """
        if self.cluster:
            client: Any = self.client
            await client.initialize()  # a no-op once the slots are known
            node = client.get_node_from_key(key)
            conn = node.acquire_connection()
            await node.disconnect_if_needed(conn)
            release: Callable[[Any], Awaitable[None]] = _releaser(node)
        else:
            pool = self.client.connection_pool  # type: ignore[union-attr]
            conn = await pool.get_connection(*self._get_connection_args)
            release = pool.release
        replies: list[Any] = []
        try:  # nothing of this publish sent yet
            if self.cluster and not conn.is_connected:  # the standalone pool connects in get_connection
                await conn.connect()
            await conn.check_health()  # a PING when the connection idled past health_check_interval
            progress.sent = True
            packed = conn.pack_command(*commands[0]) if len(commands) == 1 else conn.pack_commands(commands)
            await conn.send_packed_command(packed, check_health=False)
            error: rexc.ResponseError | None = None
            for _command in commands:  # read every reply, even after an error reply
                try:
                    replies.append(await conn.read_response())
                except rexc.ResponseError as exc:
                    error = error or exc
            if error is not None:
                raise error
        except BaseException as exc:
            with anyio.CancelScope(shield=True):
                if not isinstance(exc, rexc.ResponseError):  # an error reply leaves the connection in sync
                    with contextlib.suppress(Exception):
                        await conn.disconnect(nowait=True)
                await release(conn)
            raise
        await release(conn)
        return replies

    async def _run(self, script: Any, *, keys: list[str], args: list[Any]) -> Any:
        """EVALSHA ``script``; EVAL when the node does not know it.

        A replica promoted by a failover has an empty script cache, and redis-py's own reload
        (``SCRIPT LOAD`` on the primaries it knows) can miss it: EVAL always works, and caches it.
        """
        try:
            return await script(keys=keys, args=args)
        except rexc.NoScriptError:
            return await self.client.eval(script.script, len(keys), *keys, *args)  # type: ignore[misc]

    # ------------------------------------------------------------------ subscriptions

    def _started(self, sub: Subscription) -> None:
        self._states[sub.name] = _State()
        if self.running:
            self._launch(sub)

    def _stopped(self, sub: Subscription) -> None:
        state = self._states.pop(sub.name, None)
        if state is not None and state.task is not None:
            state.task.cancel()

    def _launch(self, sub: Subscription) -> None:
        # the loop is an asyncio task: subscribe() is synchronous and may run outside any task group (and
        # unsubscribe() cancels one loop), so no task group of start()'s caller can hold the loops
        state = self._states[sub.name]
        created = anyio.Event()
        self._setup.add(created)
        state.task = asyncio.get_running_loop().create_task(
            self._consume(sub, state, created), name=f"eventbus:{sub.name}"
        )
        state.task.add_done_callback(lambda _task: self._created(created))  # cancelled before it ran

    def _created(self, event: anyio.Event) -> None:
        event.set()
        self._setup.discard(event)

    async def _groups_created(self) -> None:
        """Wait until the groups of the subscriptions launched so far exist (or creating them failed)."""
        while self._setup:
            await next(iter(self._setup)).wait()

    async def _create_group(self, key: str, group: str, first: str) -> None:
        """XGROUP CREATE (MKSTREAM); a group that exists already is fine."""
        try:
            await self.client.xgroup_create(key, group, id=first, mkstream=True)
        except rexc.ResponseError as exc:
            if "BUSYGROUP" not in str(exc):
                raise

    async def _ensure_groups(self, sub: Subscription, state: _State) -> None:
        # a group that vanished (Redis lost its data) restarts at the stream's beginning: everything in the
        # stream was published after the loss, and "latest" would skip what came before the recreation
        start = "0" if state.lost or self.new_group_start == "earliest" else "$"
        await self._create_group(self.stream_key(sub.event), sub.name, start)
        await self._create_group(self.retry_key(sub.name, sub.event), sub.name, "0")
        await self._migrate_legacy_retries(sub)
        state.ready = True

    async def start(self) -> None:
        """Start a consumer loop per subscription; returns once their consumer groups exist (or failed).

        Dead-letter entries of the earlier key layout (one ``<prefix>:dlq`` hash) move to their
        event's DLQ first (:meth:`migrate_legacy_dlq`).
        """
        await super().start()
        try:
            await self.migrate_legacy_dlq()
        except Exception as exc:  # Redis down at start: the consumer loops wait for it, so does this
            log.warning(
                "eventbus: could not check for a DLQ of the earlier key layout: %s: %s",
                type(exc).__name__,
                exc,
            )
        self._stopping = False
        for sub in self.subscriptions:
            if self._states[sub.name].task is None:
                self._launch(sub)
        await self._groups_created()

    async def close(self, grace: float = 5.0) -> None:
        """Stop consuming after the batch in hand (cancelled after ``grace`` s); flush acknowledgements."""
        self._stopping = True
        tasks = [s.task for s in self._states.values() if s.task is not None]
        if tasks:
            # the consumer loops are asyncio tasks (see _launch) and anyio waits only for its task groups'
            # own: asyncio.wait and gather wait for these, under an anyio deadline
            with anyio.move_on_after(self.read_block + grace):
                await asyncio.wait(tasks)
            for t in tasks:
                t.cancel()  # nothing for those that ended
            await asyncio.gather(*tasks, return_exceptions=True)
        for name, state in self._states.items():
            state.task = None
            sub = self._by_name.get(name)
            if sub is not None and (state.acks or state.retry_acks):
                with contextlib.suppress(Exception), anyio.move_on_after(2.0):
                    await self._flush_acks(sub, state)
        await super().close()

    # ------------------------------------------------------------------ consuming

    async def _consume(self, sub: Subscription, state: _State, created: anyio.Event) -> None:
        """The consumer loop of one subscription: housekeeping, a blocking read, handling, until closed."""
        with contextlib.suppress(Exception):  # retried by the loop; publish must not fail because of it
            await self._ensure_groups(sub, state)
        self._created(created)
        streams = {self.stream_key(sub.event): ">", self.retry_key(sub.name, sub.event): ">"}
        state.delay, state.failing = 0.0, False
        # The state check ends the loop of an unsubscribed subscription whose cancellation was lost: a
        # cancel that meets a read's own timeout may come out as a TimeoutError (asyncio on 3.11).
        while not self._stopping and self._states.get(sub.name) is state:
            try:
                await self._housekeep(sub, state)
                wait = min(
                    self.read_block * 1000,
                    state.next_due - _ms(),
                    (state.next_reclaim - time.monotonic()) * 1000,
                )
                response = await self.blocking.xreadgroup(
                    sub.name,
                    self.consumer,
                    streams,  # type: ignore[arg-type]
                    count=self.batch_size,
                    block=int(wait) if wait >= 1 else None,
                )
                if state.failing:
                    log.warning("eventbus: %s reconnected to Redis", sub.name)
                    state.delay, state.failing = 0.0, False
                if response:
                    await self._deliver(sub, state, response)
            except Exception as exc:  # the loop outlives every error; _recover logs it
                await self._recover(sub, state, exc)

    async def _housekeep(self, sub: Subscription, state: _State) -> None:
        """Before each read: groups, pending acks, due retries, reclaiming and consumer cleanup."""
        if not state.ready:
            await self._ensure_groups(sub, state)
        if state.acks or state.retry_acks:
            await self._flush_acks(sub, state)
        now = _ms()
        if now >= state.next_due:
            moved, nxt = await self._run(
                self._move_due,
                keys=[self.schedule_key(sub.name, sub.event), self.retry_key(sub.name, sub.event)],
                args=[now, self.batch_size],
            )
            nxt = float(nxt)
            state.next_due = nxt if nxt >= 0 else now + self.read_block * 1000
            if moved >= self.batch_size:
                state.next_due = 0  # more are due: move the next batch after this read
        mono = time.monotonic()
        if mono >= state.next_reclaim:
            await self._reclaim(sub, state)
            state.next_reclaim = time.monotonic() + self.reclaim_interval
            if mono >= state.next_cleanup:
                await self._cleanup_consumers(sub)
                state.next_cleanup = mono + max(60.0, self.reclaim_interval)

    async def _deliver(self, sub: Subscription, state: _State, response: Any) -> None:
        """Handle what one XREADGROUP returned (RESP2 list or RESP3 dict)."""
        if self._states.get(sub.name) is not state:  # unsubscribed during the read: the entries stay
            return  # pending in the group (claimed again by the next consumer of that group)
        items = response.items() if isinstance(response, dict) else response
        for stream, entries in items:
            if isinstance(stream, bytes):
                stream = stream.decode()
            if entries and isinstance(entries[0], list):  # RESP3 nests one more level
                entries = entries[0]
            await self._process(sub, state, stream, entries, None)

    async def _recover(self, sub: Subscription, state: _State, exc: Exception) -> None:
        """After a failed loop turn: log once, back off (or recreate a vanished group), then go on."""
        while isinstance(exc, ExceptionGroup):  # from the task group of a concurrent batch
            exc = exc.exceptions[0]
        if isinstance(exc, rexc.ResponseError) and "NOGROUP" in str(exc):
            # the stream or group vanished (Redis restarted without persistence, or keys deleted)
            log.warning(
                "eventbus: %s: consumer group missing (Redis lost its data?), recreating it "
                "from the start of the stream",
                sub.name,
            )
            state.ready = False
            state.lost = True
            await anyio.sleep(0.05)
            return
        state.delay = min(max(state.delay * 2, 0.1), self.reconnect_max_delay)
        if isinstance(exc, _CONNECTION_ERRORS):
            if not state.failing:
                log.warning(
                    "eventbus: %s lost Redis (%s: %s); reconnecting with backoff",
                    sub.name,
                    type(exc).__name__,
                    exc,
                )
            state.failing = True
            await anyio.sleep(state.delay * random.uniform(0.8, 1.2))
            return
        if isinstance(exc, rexc.ResponseError):
            log.exception("eventbus: %s: unexpected Redis error", sub.name, exc_info=exc)
        else:
            log.exception("eventbus: %s: consumer loop error; continuing", sub.name, exc_info=exc)
        await anyio.sleep(state.delay)

    async def _process(
        self,
        sub: Subscription,
        state: _State,
        stream: str,
        entries: Sequence[Any],
        deliveries: dict[bytes, int] | None,
    ) -> None:
        is_retry = stream != self.stream_key(sub.event)
        if sub.concurrency == 1 or len(entries) == 1:
            if not is_retry and deliveries is None:  # new events, first delivery: the hot path
                await self._process_new(sub, state, stream, entries)
            else:
                flush_at = time.monotonic() + self.max_ack_delay
                for entry_id, fields in entries:
                    if entry_id is not None:
                        delivered = deliveries.get(entry_id) if deliveries else None
                        await self._handle(sub, state, stream, is_retry, entry_id, fields, delivered)
                        # slow handlers: do not hold many finished entries unacknowledged (see _process_new)
                        if (state.acks or state.retry_acks) and time.monotonic() >= flush_at:
                            await self._flush_acks(sub, state)
                            flush_at = time.monotonic() + self.max_ack_delay
        else:
            limit = anyio.Semaphore(sub.concurrency)

            async def one(entry_id: bytes, fields: dict[bytes, bytes]) -> None:
                async with limit:
                    await self._handle(
                        sub,
                        state,
                        stream,
                        is_retry,
                        entry_id,
                        fields,
                        deliveries.get(entry_id) if deliveries else None,
                    )

            async with anyio.create_task_group() as tg:
                for entry_id, fields in entries:
                    if entry_id is not None:
                        tg.start_soon(one, entry_id, fields)
        if state.acks or state.retry_acks:
            await self._flush_acks(sub, state)

    async def _process_new(
        self, sub: Subscription, state: _State, stream: str, entries: Sequence[Any]
    ) -> None:
        """:meth:`_handle` of each entry, inlined for event-stream entries read for the first time.

        Once per consumed event, so it does only what that needs: decode, run the handler,
        note the entry for the batch's acknowledgement. A failure or an undecodable entry
        takes the same path as in :meth:`_handle` (retry, DLQ); no delivery count to check.
        """
        acks, event = state.acks, sub.event
        flush_at = time.monotonic() + self.max_ack_delay
        for entry_id, fields in entries:
            if entry_id is None:
                continue
            try:
                data, meta = _decode_event(fields, event)
            except Exception as exc:
                await self._dead_raw(sub, stream, False, entry_id, fields or {}, exc)
                continue
            failure = await self._invoke(sub, data, meta)
            if failure is None:
                acks.append(entry_id)
            else:
                await self._failed(sub, state, _Failed(stream, False, entry_id, data, meta, failure, None))
            # slow handlers: do not hold many finished entries unacknowledged (a crash repeats them)
            if (acks or state.retry_acks) and time.monotonic() >= flush_at:
                await self._flush_acks(sub, state)
                flush_at = time.monotonic() + self.max_ack_delay

    def _decode_retry(self, fields: dict[bytes, bytes]) -> tuple[Any, EventMetadata, str | None]:
        """Data, metadata and first failure time of a retry-stream entry (a JSON envelope)."""
        env = json.loads(fields[b"j"])
        meta = make_metadata(
            env["id"],
            env["n"],
            env["ts"],
            env.get("src"),
            env.get("tid"),
            int(env["att"]),
            env.get("rep"),
            env.get("tp"),
            env.get("tst"),
        )
        return env["d"], meta, env.get("ff")

    async def _handle(
        self,
        sub: Subscription,
        state: _State,
        stream: str,
        is_retry: bool,
        entry_id: bytes,
        fields: dict[bytes, bytes] | None,
        delivered: int | None,
    ) -> None:
        try:
            if fields is None:
                raise KeyError("entry has no fields")
            if is_retry:
                data, meta, first_failure = self._decode_retry(fields)
            else:
                (data, meta), first_failure = _decode_event(fields, sub.event), None
        except Exception as exc:
            await self._dead_raw(sub, stream, is_retry, entry_id, fields or {}, exc)
            return
        if delivered is not None and delivered > self.max_deliveries:
            err = DeliveryLimitError(
                f"delivered {delivered} times without an acknowledgement (its consumers died or "
                f"outlived visibility_timeout={self.visibility_timeout}s each time); max_deliveries="
                f"{self.max_deliveries}"
            )
            limit = Failure(err, False, now_rfc3339())
            await self._dead(sub, _Failed(stream, is_retry, entry_id, data, meta, limit, first_failure))
            return
        failure = await self._invoke(sub, data, meta)
        if failure is None:
            (state.retry_acks if is_retry else state.acks).append(entry_id)
        else:
            await self._failed(
                sub, state, _Failed(stream, is_retry, entry_id, data, meta, failure, first_failure)
            )

    async def _flush_acks(self, sub: Subscription, state: _State) -> None:
        main, retry = state.acks, state.retry_acks
        n_main, n_retry = len(main), len(retry)
        if not retry:
            await self.client.xack(self.stream_key(sub.event), sub.name, *main)  # the common case
        else:
            key = self.retry_key(sub.name, sub.event)
            pipe = self.client.pipeline(transaction=False)  # one slot: one round trip on a cluster too
            if main:
                pipe.xack(self.stream_key(sub.event), sub.name, *main)
            pipe.xack(key, sub.name, *retry)
            pipe.xdel(key, *retry)
            await pipe.execute()
        # entries handled while the acknowledgement was in flight stay for the next flush
        del main[:n_main]
        del retry[:n_retry]

    def _ack_in(self, pipe: Any, sub: Subscription, failed: _Failed) -> None:
        pipe.xack(failed.stream, sub.name, failed.entry_id)
        if failed.is_retry:
            pipe.xdel(failed.stream, failed.entry_id)

    async def _failed(self, sub: Subscription, state: _State, failed: _Failed) -> None:
        """Schedule a retry of a failed entry when its failure allows one, else dead-letter it."""
        if failed.failure.retry:
            await self._schedule_retry(sub, state, failed)
        else:
            await self._dead(sub, failed)

    async def _schedule_retry(self, sub: Subscription, state: _State, failed: _Failed) -> None:
        meta = failed.meta
        due = _ms() + int(sub.policy.delay(meta.attempt) * 1000)
        member = dumps(
            {
                "id": meta.event_id,
                "n": meta.event_name,
                "ts": meta.timestamp,
                "src": meta.source,
                "tid": meta.trace_id,
                "att": meta.attempt + 1,
                "rep": meta.replayed_at,
                "ff": failed.first_failure or failed.failure.at,
                "d": failed.data,
                **({"tp": meta.traceparent} if meta.traceparent is not None else {}),
                **({"tst": meta.tracestate} if meta.tracestate is not None else {}),
            }
        )
        pipe = self.client.pipeline(transaction=True)
        pipe.zadd(self.schedule_key(sub.name, sub.event), {member: due})
        self._ack_in(pipe, sub, failed)
        await pipe.execute()
        state.next_due = min(state.next_due, due) if state.next_due else due

    async def _dead(self, sub: Subscription, failed: _Failed) -> None:
        meta = failed.meta
        entry = self._dead_entry(sub, failed.data, meta, failed.failure, failed.first_failure)
        await self._dead_letters.note_event(entry.event_name)
        pipe = self.client.pipeline(transaction=True)  # dead-lettered and acknowledged at once (one slot)
        self._ack_in(pipe, sub, failed)
        self._dead_letters.stage_add(pipe, entry)
        await pipe.execute()
        self._dlq_size_changed(await self._dead_letters.count())
        log.error(
            "eventbus: %s dead-lettered %s %s after %d attempt(s): %s: %s",
            sub.name,
            meta.event_name,
            meta.event_id,
            meta.attempt,
            entry.error_type,
            entry.error_message,
            extra={"event_id": meta.event_id, "event": meta.event_name, "subscription": sub.name},
        )

    async def _dead_raw(
        self,
        sub: Subscription,
        stream: str,
        is_retry: bool,
        entry_id: bytes,
        fields: dict[bytes, bytes],
        exc: Exception,
    ) -> None:
        raw = {k.decode(errors="replace"): v.decode(errors="replace") for k, v in fields.items()}
        head = raw.get("e", "").partition("\n")[0].split("\t")
        event_id = head[1] if len(head) > 1 and head[1] else f"stream-{entry_id.decode()}"
        ts = rfc3339(int(entry_id.split(b"-")[0]))
        meta = EventMetadata(event_id, sub.event, ts)
        err = UndecodableEventError(
            f"cannot decode stream entry {entry_id.decode()} of {stream}: {type(exc).__name__}: {exc}"
        )
        failure = Failure(err, False, now_rfc3339())
        await self._dead(sub, _Failed(stream, is_retry, entry_id, raw, meta, failure, None))

    async def _reclaim(self, sub: Subscription, state: _State) -> None:
        """Take over entries a dead (or too slow) consumer left unacknowledged past the visibility timeout."""
        idle = int(self.visibility_timeout * 1000)
        for stream in (self.stream_key(sub.event), self.retry_key(sub.name, sub.event)):
            start: bytes | str = "0-0"
            for _page in range(100):
                res = await self.client.xautoclaim(
                    stream, sub.name, self.consumer, idle, start_id=start, count=self.batch_size
                )
                start, entries = res[0], res[1]
                trimmed = res[2] if len(res) > 2 else []
                if trimmed:
                    # pending entries that the stream trimming deleted before anyone handled them
                    log.error(
                        "eventbus: %s: %d pending entries of %s were trimmed before being handled; "
                        "raise stream_maxlen",
                        sub.name,
                        len(trimmed),
                        stream,
                    )
                    await self.client.xack(stream, sub.name, *trimmed)
                live = [(i, f) for i, f in entries if i is not None]
                if live:
                    ids = [i for i, _f in live]
                    # XAUTOCLAIM answers in id order: the first and last ids bound the range
                    pending = await self.client.xpending_range(
                        stream,
                        sub.name,
                        min=ids[0],
                        max=ids[-1],
                        count=len(ids) * 2,
                        consumername=self.consumer,
                    )
                    counts = {p["message_id"]: int(p["times_delivered"]) for p in pending}
                    log.warning(
                        "eventbus: %s reclaimed %d entries of %s left by a dead or slow consumer",
                        sub.name,
                        len(live),
                        stream,
                    )
                    await self._process(sub, state, stream, live, counts)
                if start in (b"0-0", "0-0"):
                    break

    async def _cleanup_consumers(self, sub: Subscription) -> None:
        """Forget consumers (dead processes) with nothing pending that have been idle for an hour."""
        for stream in (self.stream_key(sub.event), self.retry_key(sub.name, sub.event)):
            with contextlib.suppress(rexc.ResponseError):
                for c in await self.client.xinfo_consumers(stream, sub.name):
                    name = c["name"].decode() if isinstance(c["name"], bytes) else c["name"]
                    if name != self.consumer and int(c["pending"]) == 0 and int(c["idle"]) > 3_600_000:
                        await self.client.xgroup_delconsumer(stream, sub.name, name)

    # ------------------------------------------------------------------ DLQ

    async def _redeliver(self, entries: list[DeadLetterEntry], replayed_at: str) -> int:
        n = 0
        for entry in entries:
            meta = entry.metadata
            retry = self.retry_key(entry.subscription, meta.event_name)
            await self._create_group(retry, entry.subscription, "0")
            payload = dumps(
                {
                    "id": meta.event_id,
                    "n": meta.event_name,
                    "ts": meta.timestamp,
                    "src": meta.source,
                    "tid": meta.trace_id,
                    "att": 1,
                    "rep": replayed_at,
                    "d": entry.data,
                    **({"tp": meta.traceparent} if meta.traceparent is not None else {}),
                    **({"tst": meta.tracestate} if meta.tracestate is not None else {}),
                }
            )
            store = self._dead_letters
            keys = [store.key(meta.event_name), store.index_key(meta.event_name), retry]
            n += int(await self._run(self._replay, keys=keys, args=[entry.key, payload]))
        return n

    # ------------------------------------------------------------------ the earlier key layout

    async def _migrate_legacy_retries(self, sub: Subscription) -> None:
        """Move ``<prefix>:retry:<sub>`` / ``<prefix>:schedule:<sub>`` of the earlier layout to the new keys.

        Copies first, deletes after: a crash in between re-delivers a retry, never loses one.
        """
        old_retry, old_schedule = f"{self.prefix}:retry:{sub.name}", f"{self.prefix}:schedule:{sub.name}"
        pipe = self.client.pipeline(transaction=False)
        pipe.exists(old_retry)
        pipe.exists(old_schedule)
        has_retry, has_schedule = await pipe.execute()
        moved = 0
        if has_retry:
            entries = await self.client.xrange(old_retry)
            for _id, fields in entries:
                if b"j" in fields:
                    await self.client.xadd(self.retry_key(sub.name, sub.event), {"j": fields[b"j"]})
            await self.client.delete(old_retry)
            moved += len(entries)
        if has_schedule:
            scheduled = await self.client.zrange(old_schedule, 0, -1, withscores=True)
            if scheduled:
                await self.client.zadd(self.schedule_key(sub.name, sub.event), dict(scheduled))
            await self.client.delete(old_schedule)
            moved += len(scheduled)
        if moved:
            log.warning("eventbus: %s: moved %d retries from the earlier key layout", sub.name, moved)

    async def migrate_legacy_dlq(self) -> int:
        """Move the dead-letter entries of the earlier layout (``<prefix>:dlq``) to their event's DLQ.

        Keeps their order; idempotent (an interrupted move is finished by the next). How many moved.
        """
        old, old_index = f"{self.prefix}:dlq", f"{self.prefix}:dlq:index"
        if not await self.client.exists(old):
            return 0
        store, moved = self._dead_letters, 0
        async for field, raw in self.client.hscan_iter(old, count=500):
            event = parse_dead(field, raw).event_name
            score = await self.client.zscore(old_index, field)
            await store.note_event(event)
            pipe = self.client.pipeline(transaction=True)
            pipe.hset(store.key(event), field, raw)
            # the earlier layout scored in ms, the current one in µs
            pipe.zadd(store.index_key(event), {field: score * 1000 if score is not None else 0})
            await pipe.execute()
            pipe = self.client.pipeline(transaction=True)
            pipe.hdel(old, field)
            pipe.zrem(old_index, field)
            await pipe.execute()
            moved += 1
        await self.client.delete(old_index)  # members without an entry (none when consistent)
        log.warning("eventbus: moved %d dead-letter entries from the earlier key layout", moved)
        return moved

    # ------------------------------------------------------------------ misc

    def idempotency_store(self) -> IdempotencyStore:
        """A store in Redis under ``<prefix>:done:``, shared by every process."""
        return self._idem

    async def pending(self, subscription: str) -> dict[str, int]:
        """Backlog of a subscription: ``lag`` (unread), ``pending`` (unacked), ``scheduled`` retries."""
        sub = self._by_name.get(subscription)
        event = sub.event if sub else subscription.split(":", 1)[0]
        out = {"lag": 0, "pending": 0, "scheduled": 0}
        with contextlib.suppress(rexc.ResponseError):
            for g in await self.client.xinfo_groups(self.stream_key(event)):
                gname = g["name"].decode() if isinstance(g["name"], bytes) else g["name"]
                if gname == subscription:
                    out["pending"] += int(g.get("pending") or 0)
                    out["lag"] = int(g.get("lag") or 0)
        with contextlib.suppress(rexc.ResponseError):
            out["pending"] += int(
                (await self.client.xpending(self.retry_key(subscription, event), subscription))["pending"]
            )
        out["scheduled"] = int(await self.client.zcard(self.schedule_key(subscription, event)))
        return out
