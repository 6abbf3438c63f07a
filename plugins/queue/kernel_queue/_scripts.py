"""The queue's Lua scripts: every state change of a job is one atomic step in Redis.

Scores in the ``waiting`` set are ``rank * 2**31 + 2**30 + seq`` (exact in a double): priority
rank first, then FIFO by the ``seq`` counter; a negative ``seq`` puts a re-run ahead of its rank.

Job events go out with ``publish_event(<events channel>, event)``: ``PUBLISH``, or on a Redis
Cluster ``SPUBLISH`` (a shard channel: a classic ``PUBLISH`` there is sent to every node of the
cluster over the cluster bus, which cost each enqueue more than the rest of its work). A server
without ``SPUBLISH`` (Redis < 7) gets ``PUBLISH``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, cast

from redis.exceptions import NoScriptError

if TYPE_CHECKING:
    from collections.abc import Awaitable

    from redis.asyncio import Redis
    from redis.asyncio.cluster import RedisCluster
    from redis.commands.core import AsyncScript

MAX_TOKENS = 1000
"""Wake-up tokens kept at most; workers drain the waiting set on every wake-up anyway.

A full list gets no new token (``LLEN`` first: cheaper than pushing and trimming it back when a
backlog builds up with no idle worker to take the tokens).
"""

# A worker's write is refused when the job's record already counts a later try: a worker that was
# only slow (presumed dead, its job reclaimed and taken again) finds the job's id back on the active
# list, but that entry is the newer try's. Decoded, never re-encoded: the record stays as written.
_NEWER_TRY = """
local function newer_try(id, attempts)
    local raw = redis.call('GET', id)
    if not raw then return false end
    local ok, rec = pcall(cjson.decode, raw)
    return ok and type(rec) == 'table' and (tonumber(rec['attempts']) or 0) > tonumber(attempts)
end
"""

# A worker's write announced: the job's status on its own channel, then the queue's job event, if any.
_ANNOUNCE = """
local function announce(id, status, events, event)
    redis.call('PUBLISH', id, status)
    if event ~= '' then publish_event(events, event) end
end
"""

# Shared by the scripts that put a job in the waiting set or take it off the active list.
_HELPERS = (
    _NEWER_TRY
    + f"""
local function to_waiting(waiting, seq_key, wake, id, rank, front)
    local seq = redis.call('INCR', seq_key)
    if front then seq = -seq end
    redis.call('ZADD', waiting, tonumber(rank) * 2147483648 + 1073741824 + seq, id)
    if redis.call('LLEN', wake) < {MAX_TOKENS} then redis.call('LPUSH', wake, 1) end
end
local function off_active(active, heartbeat, id, guard, attempts)
    if guard == '1' and newer_try(id, attempts) then return false end
    local removed = redis.call('LREM', active, 1, id)
    if guard == '1' and removed == 0 then return false end
    redis.call('ZREM', heartbeat, id)
    return true
end
"""
)

ENQUEUE = (
    _HELPERS
    + """
-- KEYS: incomplete, job, waiting, wake, seq, events; ARGV: payload, due (0: now), rank, event
if not redis.call('SET', KEYS[2], ARGV[1], 'NX') then return 0 end
redis.call('ZADD', KEYS[1], ARGV[2], KEYS[2])
if ARGV[2] == '0' then to_waiting(KEYS[3], KEYS[5], KEYS[4], KEYS[2], ARGV[3], false) end
if ARGV[4] ~= '' then publish_event(KEYS[6], ARGV[4]) end
return 1
"""
)

ENQUEUE_MANY = (
    _HELPERS
    + """
-- KEYS: incomplete, waiting, wake, seq, events, then one job key per job
-- ARGV: per job: payload, due (0: now), rank, event; returns 1 (added) or 0 (id exists) per job
local added = {}
for i = 6, #KEYS do
    local a = (i - 6) * 4
    local id = KEYS[i]
    if redis.call('SET', id, ARGV[a + 1], 'NX') then
        redis.call('ZADD', KEYS[1], ARGV[a + 2], id)
        if ARGV[a + 2] == '0' then to_waiting(KEYS[2], KEYS[4], KEYS[3], id, ARGV[a + 3], false) end
        if ARGV[a + 4] ~= '' then publish_event(KEYS[5], ARGV[a + 4]) end
        added[#added + 1] = 1
    else
        added[#added + 1] = 0
    end
end
return added
"""
)

# Pop the best waiting job and mark it running in one step: a worker killed at any point
# leaves the job either waiting or in active+heartbeats, where the sweep finds it.
DEQUEUE = """
-- KEYS: waiting, active, heartbeat, paused; ARGV: now (ms)
if redis.call('EXISTS', KEYS[4]) == 1 then return false end
local r = redis.call('ZPOPMIN', KEYS[1])
if #r == 0 then return false end
local id = r[1]
redis.call('RPUSH', KEYS[2], id)
redis.call('ZADD', KEYS[3], ARGV[1], id)
return {id, redis.call('GET', id)}
"""

# Writes from a worker only land while the job is still in the active list: after a sweep
# reclaimed it, a late (zombie) worker must not overwrite the new attempt's record.
UPDATE = (
    _NEWER_TRY
    + _ANNOUNCE
    + """
-- KEYS: job, active, events; ARGV: payload, status, event, the writer's try (attempts)
if redis.call('LPOS', KEYS[2], KEYS[1]) == false or newer_try(KEYS[1], ARGV[4]) then return 0 end
redis.call('SET', KEYS[1], ARGV[1])
announce(KEYS[1], ARGV[2], KEYS[3], ARGV[3])
return 1
"""
)

FINISH = (
    _HELPERS
    + _ANNOUNCE
    + """
-- KEYS: active, incomplete, job, finished set, heartbeat, counts, events, waiting
-- ARGV: payload, finish time, counter ('' : none), guard, status, event, keep ms (0: forever), cutoff,
--       the writer's try (attempts)
if not off_active(KEYS[1], KEYS[5], KEYS[3], ARGV[4], ARGV[9]) then return 0 end
redis.call('ZREM', KEYS[2], KEYS[3])
redis.call('ZREM', KEYS[8], KEYS[3])
if ARGV[7] ~= '0' then
    redis.call('SET', KEYS[3], ARGV[1], 'PX', ARGV[7])
else
    redis.call('SET', KEYS[3], ARGV[1])
end
if ARGV[3] ~= '' then
    redis.call('ZADD', KEYS[4], ARGV[2], KEYS[3])
    redis.call('HINCRBY', KEYS[6], ARGV[3], 1)
    if ARGV[7] ~= '0' then redis.call('ZREMRANGEBYSCORE', KEYS[4], '-inf', '(' .. ARGV[8]) end
end
announce(KEYS[3], ARGV[5], KEYS[7], ARGV[6])
return 1
"""
)

REQUEUE = (
    _HELPERS
    + """
-- KEYS: active, heartbeat, incomplete, waiting, wake, seq, job, failed
-- ARGV: payload, due (0: now), rank, guard, front, the writer's try (attempts)
if not off_active(KEYS[1], KEYS[2], KEYS[7], ARGV[4], ARGV[6]) then return 0 end
redis.call('ZREM', KEYS[8], KEYS[7])
redis.call('SET', KEYS[7], ARGV[1])
if ARGV[2] == '0' then
    redis.call('ZADD', KEYS[3], 0, KEYS[7])
    to_waiting(KEYS[4], KEYS[6], KEYS[5], KEYS[7], ARGV[3], ARGV[5] == '1')
else
    redis.call('ZADD', KEYS[3], ARGV[2], KEYS[7])
end
redis.call('PUBLISH', KEYS[7], 'queued')
return 1
"""
)

PROMOTE = (
    _HELPERS
    + """
-- KEYS: incomplete, waiting, wake, seq; ARGV: now (s), rank of jobs without a priority
local due = redis.call('ZRANGEBYSCORE', KEYS[1], 1, ARGV[1], 'LIMIT', 0, 1000)
for _, id in ipairs(due) do
    local raw = redis.call('GET', id)
    if raw then
        redis.call('ZADD', KEYS[1], 0, id)
        local rank = ARGV[2]
        local ok, job = pcall(cjson.decode, raw)
        if ok and type(job['priority']) == 'number' and job['priority'] > 0 then rank = job['priority'] end
        to_waiting(KEYS[2], KEYS[4], KEYS[3], id, rank, false)
    else
        redis.call('ZREM', KEYS[1], id)
    end
end
return due
"""
)

# Lease jobs whose worker stopped heart-beating: each stays on the active list and its heartbeat
# is set to now, so no other sweeper takes it for stall_timeout. The sweeper then re-queues (or
# fails) it with a guarded script; a sweeper that dies or fails in between leaves the job where
# the next sweep, of any worker, finds it again. (Taking it off the active list here, as before,
# lost it for good when its sweeper died before the re-queue: the sweepers are workers, and
# workers die.) A heartbeat without an active job is dropped.
CLAIM_STALLED = """
-- KEYS: heartbeat, active; ARGV: cutoff (ms), now (ms)
local ids = redis.call('ZRANGEBYSCORE', KEYS[1], 0, ARGV[1], 'LIMIT', 0, 500)
local claimed = {}
for _, id in ipairs(ids) do
    if redis.call('LPOS', KEYS[2], id) then
        redis.call('ZADD', KEYS[1], 'XX', ARGV[2], id)
        table.insert(claimed, id)
    else
        redis.call('ZREM', KEYS[1], id)
    end
end
return claimed
"""


class Script:
    """One script: ``EVALSHA``; on ``NOSCRIPT`` after redis-py's own reload, ``EVAL`` with the source.

    After a cluster failover redis-py 7.4's asyncio cluster client may still take the promoted
    replica for a replica: its ``SCRIPT LOAD`` (sent to the primaries it knows) never reaches
    the node, and ``EVALSHA`` fails there for good. ``EVAL`` runs the script and caches it on
    that node, so the next ``EVALSHA`` works.
    """

    __slots__ = ("_redis", "_script", "sha", "source")

    def __init__(self, redis: Redis | RedisCluster, source: str) -> None:
        self._redis = redis
        self._script: AsyncScript = cast("Redis", redis).register_script(
            source
        )  # the cluster client has it too
        self.source = source
        self.sha: str = self._script.sha

    async def __call__(self, keys: list[Any], args: list[Any]) -> Any:
        """Run the script on the client it was registered on; its Lua reply."""
        try:
            return await self._script(keys=keys, args=args)
        except NoScriptError:
            return await cast("Awaitable[Any]", self._redis.eval(self.source, len(keys), *keys, *args))


_PUBLISH_EVENT = """
local function publish_event(channel, event) redis.call('PUBLISH', channel, event) end
"""
_PUBLISH_EVENT_SHARDED = """
local function publish_event(channel, event)
    if not pcall(redis.call, 'SPUBLISH', channel, event) then redis.call('PUBLISH', channel, event) end
end
"""


def with_events(source: str, sharded: bool) -> str:
    """``source`` with ``publish_event`` set: ``SPUBLISH`` when ``sharded`` (cluster), else ``PUBLISH``."""
    return (_PUBLISH_EVENT_SHARDED if sharded else _PUBLISH_EVENT) + source


class Scripts:
    """The scripts registered on one client (``EVALSHA``, loaded by Redis on first use).

    ``sharded_events``: job events on a shard channel (``SPUBLISH``), for a Redis Cluster.
    """

    def __init__(self, redis: Redis | RedisCluster, *, sharded_events: bool = False) -> None:
        self.enqueue = Script(redis, with_events(ENQUEUE, sharded_events))
        self.enqueue_many = Script(redis, with_events(ENQUEUE_MANY, sharded_events))
        self.dequeue = Script(redis, DEQUEUE)
        self.update = Script(redis, with_events(UPDATE, sharded_events))
        self.finish = Script(redis, with_events(FINISH, sharded_events))
        self.requeue = Script(redis, REQUEUE)
        self.promote = Script(redis, PROMOTE)
        self.claim_stalled = Script(redis, CLAIM_STALLED)
