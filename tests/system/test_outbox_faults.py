"""The outbox under faults, on the example service as real processes (real redis-server, the wire server).

``POST /users`` commits the user and its ``user.created`` in one transaction; relays (in every
web and worker process, or in relay-only processes) publish it; an idempotent subscriber
enqueues one notification job per user. Each test makes one kind of fault during 500 POSTs and
checks that nothing is lost and that each user's side effect happens once:

- a web process SIGKILLed at random points, 5 times;
- Redis stopped for 15 s, and (another test) hung with SIGSTOP for 25 s: every POST still 201
  with p99 < 1 s, every notification done within 10 s of Redis returning, DLQ empty;
- relay-only processes SIGKILLed mid-batch 10 times while two relays run: duplicates counted.

Each test prints one ``outbox-faults <test>: ...`` line with its figures (``pytest -s``) and
puts the same line in its assertion messages.
"""

from __future__ import annotations

import asyncio
import json
import os
import random
import signal
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx
import pymongo
import pytest
import redis
from user_load import LoadThread, UserLoad

from examples.service.notifications import RUNS_KEY, SENT_KEY
from examples.service.run import Child, Stack
from kernel.testing import poll_until

REQUESTS = 500
STREAM = "{eventbus:user.created}:stream"  # the bus's stream key (kernel_eventbus._keys.stream_key)
"""The example's event stream (eventbus ``prefix`` default): one entry per publish."""
OUTBOX = "outbox"
"""The outbox collection (``[plugins.repository] outbox_collection`` default)."""
SHORT_LEASE = {"KERNEL__PLUGINS__OUTBOX__LEASE_SECONDS": "2", "KERNEL__PLUGINS__OUTBOX__PUBLISH_TIMEOUT": "1"}
"""A killed relay's claimed batch is taken over after 2 s instead of 30 (a publish must fit in half)."""

pytestmark = pytest.mark.slow


# ---------------------------------------------------------------------------- the client side


class Load(UserLoad):
    """POSTs ``count`` users at ``rate`` per second (each on its own schedule), recording what came back.

    ``retry`` sends a request that met a transport error (a killed web process) again, to the next
    web process; a 409 after such an attempt means the first attempt stored the user.
    """

    def __init__(self, urls: list[str], *, count: int, rate: float, retry: bool, tag: str) -> None:
        super().__init__(urls, tag=tag, user_id="faults", attempts=8 if retry else 1, pause=0.1)
        self.count, self.rate = count, rate
        self.slow: list[tuple[float, float]] = []  # (monotonic start, seconds) of responses over 0.5 s

    def answered(self, email: str, response: httpx.Response, took: float) -> None:
        super().answered(email, response, took)
        if took > 0.5:
            self.slow.append((time.monotonic() - took, took))

    async def run(self) -> None:
        limits = httpx.Limits(max_connections=200, max_keepalive_connections=50)
        async with httpx.AsyncClient(timeout=30, limits=limits, trust_env=False) as client:
            t0 = time.perf_counter()

            async def scheduled(i: int) -> None:
                await asyncio.sleep(max(0.0, t0 + i / self.rate - time.perf_counter()))
                try:
                    await self.create(client, i)
                finally:
                    self.done += 1

            await asyncio.gather(*(scheduled(i) for i in range(self.count)))

    def latency(self) -> str:
        """``latency p50 … ms p99 … ms`` of the HTTP responses, for the report lines."""
        return f"latency p50 {self.percentile(0.5) * 1000:.0f} ms p99 {self.percentile(0.99) * 1000:.0f} ms"


# ---------------------------------------------------------------------------- the server side


def wait_for(predicate: Callable[[], Any], timeout: float, what: str) -> Any:
    """Poll ``predicate`` until it is truthy (returned), or fail naming ``what``."""
    return poll_until(predicate, timeout, interval=0.1, what=what)


class Observed:
    """What the servers hold after a run: users, outbox entries, stream entries, notifications."""

    def __init__(self, stack: Stack, tag: str) -> None:
        self.stack, self.tag = stack, tag
        self.mongo: pymongo.MongoClient[Any] = pymongo.MongoClient(stack.mongo_uri)
        self.redis = redis.Redis.from_url(stack.redis_url)

    def close(self) -> None:
        self.mongo.close()
        self.redis.close()

    @property
    def db(self) -> Any:
        return self.mongo["example"]

    def users(self) -> list[dict[str, Any]]:
        return list(self.db["users"].find({"email": {"$regex": f"@{self.tag}\\.example$"}}))

    def pending(self) -> int:
        """Outbox entries not published yet."""
        return int(self.db[OUTBOX].count_documents({"status": {"$ne": "done"}}))

    def sent(self) -> dict[str, str]:
        """Notification id -> ``sent_at`` of its completed delivery."""
        return {k.decode(): v.decode() for k, v in self.redis.hgetall(SENT_KEY).items()}

    def runs(self) -> dict[str, int]:
        return {k.decode(): int(v) for k, v in self.redis.hgetall(RUNS_KEY).items()}

    def stream_event_ids(self) -> list[str]:
        """The event id of every entry of the ``user.created`` stream (a duplicate publish: twice)."""
        ids: list[str] = []
        last = "-"
        while True:
            batch = self.redis.xrange(STREAM, min=last, count=1000)
            if last != "-":
                batch = batch[1:]
            if not batch:
                return ids
            for _entry_id, fields in batch:
                head = fields[b"e"].decode().partition("\n")[0]
                ids.append(head.split("\t")[1])
            last = batch[-1][0].decode()

    def expected(self, docs: list[dict[str, Any]]) -> set[str]:
        return {f"welcome-{d['_id']}" for d in docs}

    def queue_stats(self) -> dict[str, Any]:
        stats = {s["queue_name"]: s for s in json.loads(self.stack.kernel_cli("queue", "stats", "--json"))}
        return dict(stats["notifications"])

    def dlq(self) -> list[Any]:
        return list(json.loads(self.stack.kernel_cli("dlq", "list", "--json")))


@pytest.fixture
def observe() -> Iterator[Callable[[Stack, str], Observed]]:
    opened: list[Observed] = []

    def make(stack: Stack, tag: str) -> Observed:
        opened.append(Observed(stack, tag))
        return opened[-1]

    yield make
    for o in opened:
        o.close()


def utc(value: Any) -> datetime:
    """A stored ``created_at`` (naive UTC from pymongo) or an ISO ``sent_at`` as an aware UTC datetime."""
    if isinstance(value, str):
        value = datetime.fromisoformat(value)
    return value if value.tzinfo else value.replace(tzinfo=UTC)


def lag_figures(docs: list[dict[str, Any]], sent: dict[str, str]) -> str:
    """``lag commit->sent p50 … s p99 … s max … s``: from a user's commit to its notification's completion."""
    lags = sorted(
        (utc(sent[f"welcome-{d['_id']}"]) - utc(d["created_at"])).total_seconds()
        for d in docs
        if f"welcome-{d['_id']}" in sent
    )
    p50, p99, worst = (
        (lags[len(lags) // 2], lags[min(len(lags) - 1, int(len(lags) * 0.99))], lags[-1])
        if lags
        else (float("nan"), float("nan"), float("nan"))
    )
    return f"lag commit->sent p50 {p50:.2f} s p99 {p99:.2f} s max {worst:.2f} s"


def check_once_each(
    o: Observed, load: Load, *, expect_users: int, figures: Callable[[], str], redis_intact: bool = True
) -> tuple[list[dict[str, Any]], dict[str, str], int, int]:
    """Every 201 user stored once, every stored user exactly one completed notification job.

    ``redis_intact``: Redis was neither stopped nor hung, so no processor run was cut off and
    each notification's processor ran exactly once (a job running when Redis goes away is run
    again after it returns: the queue's at-least-once, still one completed job).
    Returns the users, the sent notifications, how many were lost and the relay's duplicates.
    """
    docs = o.users()
    emails = Counter(d["email"] for d in docs)
    ids = {d["email"]: str(d["_id"]) for d in docs}
    assert set(emails.values()) == {1}, f"users stored twice: {emails.most_common(3)}; {figures()}"
    assert all(ids.get(e) == uid for e, uid in load.created.items()), f"a 201 user is missing; {figures()}"
    assert len(docs) == expect_users, f"{len(docs)} users stored, expected {expect_users}; {figures()}"
    expected = o.expected(docs)
    wait_for(lambda: expected <= set(o.sent()), 90, f"every notification; {figures()}")
    wait_for(lambda: o.pending() == 0, 30, f"the outbox to drain; {figures()}")
    sent = o.sent()
    lost = len(expected - set(sent))
    runs = o.runs()
    ids_in_stream = o.stream_event_ids()
    duplicates = len(ids_in_stream) - len(set(ids_in_stream))
    assert lost == 0, figures()
    assert len(set(ids_in_stream)) == len(docs), f"{len(set(ids_in_stream))} events published; {figures()}"
    stats = wait_for(
        lambda: (s := o.queue_stats())["completed"] >= len(docs) and s, 30, "the completions to be counted"
    )
    assert stats["completed"] == len(docs) and stats["failed"] == 0, (stats, figures())
    # No worker is killed in these tests: with Redis intact, a notification whose processor ran
    # twice would be a side effect applied twice (a duplicate event past the subscriber's idempotency).
    twice = {k: v for k, v in runs.items() if k in expected and v != 1}
    if redis_intact:
        assert not twice, f"notifications processed more than once: {list(twice.items())[:5]}; {figures()}"
    return docs, sent, lost, duplicates


# ---------------------------------------------------------------------------- 1. web processes killed


def test_web_process_sigkilled_five_times_loses_nothing(
    make_stack: Callable[..., Stack], observe: Callable[[Stack, str], Observed]
) -> None:
    rng = random.Random(os.environ.get("FAULT_SEED", "14"))
    stack = make_stack(
        web=2,
        workers=1,
        # A killed relay's claimed batch is taken over after 2 s instead of 30.
        env=SHORT_LEASE,
    )
    o = observe(stack, "webkill")
    load = Load([w.url or "" for w in stack.webs], count=REQUESTS, rate=20, retry=True, tag="webkill")
    kills: list[str] = []
    t0 = time.perf_counter()
    with LoadThread(load) as runner:
        points = sorted(rng.sample(range(40, REQUESTS - 60), 5))
        for at in points:
            runner.wait_done(at)
            victim = stack.webs[rng.randrange(2)]
            time.sleep(rng.uniform(0, 0.05))  # anywhere in a request: before, in or after its commit
            backlog = o.pending()
            victim.kill()
            kills.append(f"{victim.name}@{load.done} (backlog {backlog})")
            victim.start()  # the launcher's supervisor would do this; same port
            stack.wait_ready(60)
        load = runner.join()
    elapsed = time.perf_counter() - t0
    stored_by_retry = len(load.conflict_on_retry)

    def figures() -> str:
        return (
            f"requests {REQUESTS} in {elapsed:.1f}s, 201 {len(load.created)}, 409-after-retry "
            f"{stored_by_retry}, transport errors {load.transport_errors}, failed {len(load.failed)}, "
            f"kills {kills}"
        )

    assert not load.failed, f"{load.failed[:3]}; {figures()}"
    assert len(load.created) + stored_by_retry == REQUESTS, figures()
    docs, sent, lost, duplicates = check_once_each(o, load, expect_users=REQUESTS, figures=figures)
    line = (
        f"outbox-faults web-kill: lost {lost}, duplicates {duplicates}, {load.latency()}, "
        f"{lag_figures(docs, sent)}; {figures()}"
    )
    print(f"\n{line}")
    assert len(kills) == 5, line


# ---------------------------------------------------------------------------- 2. Redis down or hung


def redis_outage(
    make_stack: Callable[..., Stack],
    observe: Callable[[Stack, str], Observed],
    *,
    name: str,
    outage: float,
    rate: float,
    fault: Callable[[Stack], Callable[[], None]],
) -> None:
    """500 POSTs at ``rate``/s; after 60 of them Redis is made unavailable by ``fault`` (which
    returns the function that ends the fault) for ``outage`` seconds."""
    stack = make_stack(web=2, workers=1, redis_options={"appendonly": True, "appendfsync": "always"})
    o = observe(stack, name)
    load = Load([w.url or "" for w in stack.webs], count=REQUESTS, rate=rate, retry=False, tag=name)
    with LoadThread(load) as runner:
        runner.wait_done(60)
        during0 = load.done
        end_fault = fault(stack)
        down_at = time.monotonic()
        # The outage itself is the scenario: it lasts `outage` seconds whatever happens meanwhile.
        time.sleep(outage)
        end_fault()
        back_at = time.monotonic()
        back_wall = datetime.now(UTC)
        down_for = time.monotonic() - down_at
        during = load.done - during0
        load = runner.join()
    docs = o.users()
    dlq = o.dlq()

    def figures() -> str:
        return (
            f"Redis {name} {down_for:.1f}s while {during} requests completed; 201 {load.statuses[201]}/"
            f"{REQUESTS}, statuses {dict(load.statuses)}, failed {len(load.failed)}, {load.latency()}, "
            f"DLQ {len(dlq)}; {len(load.slow)} responses over 0.5 s, at (s after the fault began, s): "
            f"{[(round(at - down_at, 1), round(took, 2)) for at, took in load.slow[:12]]} (Redis back at "
            f"{back_at - down_at:.1f})"
        )

    assert not load.failed, f"{load.failed[:3]}; {figures()}"
    assert load.statuses[201] == REQUESTS, figures()
    assert load.percentile(0.99) < 1.0, figures()
    docs, sent, lost, duplicates = check_once_each(
        o, load, expect_users=REQUESTS, figures=figures, redis_intact=False
    )
    reruns = sum(v - 1 for k, v in o.runs().items() if v > 1)
    dlq = o.dlq()
    assert dlq == [], f"{dlq[:3]}; {figures()}"
    # The users created before Redis returned (their events waited in the outbox): when was the
    # last of their notifications done? Users created later are the normal flow.
    waited = [d for d in docs if utc(d["created_at"]) <= back_wall]
    after = max((utc(sent[f"welcome-{d['_id']}"]) - back_wall).total_seconds() for d in waited)
    tail = max(utc(v) for v in sent.values()) - max(utc(d["created_at"]) for d in docs)
    line = (
        f"outbox-faults redis-{name}: lost {lost}, duplicates {duplicates} (processor re-runs of jobs the "
        f"outage cut off {reruns}), DLQ {len(dlq)}, {load.latency()}, the {len(waited)} notifications of "
        f"users created before Redis returned all done {after:.1f} s after it (last one "
        f"{tail.total_seconds():.1f} s after the last POST), {lag_figures(docs, sent)}; {figures()}"
    )
    print(f"\n{line}")
    assert after < 10.0, line


def test_redis_stopped_15s_posts_answer_201_and_notifications_follow(
    make_stack: Callable[..., Stack], observe: Callable[[Stack, str], Observed]
) -> None:
    def stop(stack: Stack) -> Callable[[], None]:
        stack.redis.stop()
        return lambda: stack.redis.start()

    redis_outage(make_stack, observe, name="stopped", outage=15.0, rate=16, fault=stop)


def test_redis_hung_25s_posts_answer_201_and_notifications_follow(
    make_stack: Callable[..., Stack], observe: Callable[[Stack, str], Observed]
) -> None:
    def hang(stack: Stack) -> Callable[[], None]:
        pid = stack.redis.pid
        os.kill(pid, signal.SIGSTOP)
        return lambda: os.kill(pid, signal.SIGCONT)

    redis_outage(make_stack, observe, name="hung", outage=25.0, rate=12, fault=hang)


# ---------------------------------------------------------------------------- 3. relays killed mid-batch


class SlowLink:
    """A TCP proxy to Redis holding every reply chunk for ``delay`` seconds: a slow network.

    The relay processes reach Redis through it, so a batch takes a while to publish and a
    SIGKILL lands in the middle of one (between its claim and its mark-done).
    """

    def __init__(self, url: str, delay: float) -> None:
        parts = urlsplit(url)
        self.target = (parts.hostname or "127.0.0.1", parts.port or 6379)
        self.url_parts = parts
        self.delay = delay
        self.loop = asyncio.new_event_loop()
        self.port = 0
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._run, name="slow-link")
        self._server: asyncio.Server | None = None

    @property
    def url(self) -> str:
        """``url`` with this proxy's port (same password and database)."""
        netloc = self.url_parts.netloc.rsplit(":", 1)[0] + f":{self.port}"
        return self.url_parts._replace(netloc=netloc).geturl()

    async def _pump(self, src: asyncio.StreamReader, dst: asyncio.StreamWriter, delay: float) -> None:
        try:
            while data := await src.read(65536):
                if delay:
                    await asyncio.sleep(delay)
                dst.write(data)
                await dst.drain()
        except (ConnectionError, OSError):
            pass
        finally:
            dst.close()

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            up_reader, up_writer = await asyncio.open_connection(*self.target)
        except OSError:
            writer.close()
            return
        await asyncio.gather(
            self._pump(reader, up_writer, 0.0),
            self._pump(up_reader, writer, self.delay),
            return_exceptions=True,
        )

    def _run(self) -> None:
        asyncio.set_event_loop(self.loop)

        async def serve() -> None:
            self._server = await asyncio.start_server(self._handle, "127.0.0.1", 0)
            self.port = self._server.sockets[0].getsockname()[1]
            self._ready.set()

        try:
            self.loop.run_until_complete(serve())
            self.loop.run_forever()
            # Stopped: close the listener and every proxied connection, then the loop.
            if self._server is not None:
                self._server.close()
            tasks = asyncio.all_tasks(self.loop)
            for task in tasks:
                task.cancel()
            self.loop.run_until_complete(asyncio.gather(*tasks, return_exceptions=True))
            self.loop.run_until_complete(asyncio.sleep(0.01))  # the closed transports finish closing
        finally:
            self.loop.close()

    def __enter__(self) -> SlowLink:
        self._thread.start()
        assert self._ready.wait(10), "the proxy did not start"
        return self

    def __exit__(self, *exc: object) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(10)


def relay_process(stack: Stack, i: int, redis_url: str, log_dir: Path) -> Child:
    """A process that boots the example's kernel and serves only the kernel's app (health,
    metrics): the one thing it does is run the outbox relay."""
    port = free_port()
    argv = [
        sys.executable,
        "-m",
        "kernel",
        "--config",
        str(stack.config),
        "serve",
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
    ]
    env = {
        **stack.env(),
        "KERNEL__PLUGINS__REDIS__URL": redis_url,
        "KERNEL__PLUGINS__OUTBOX__RELAY": "true",
        "KERNEL__PLUGINS__OUTBOX__BATCH_SIZE": "20",
    }
    return Child(f"relay{i}", argv, env, log_dir / f"relay{i}.log", f"http://127.0.0.1:{port}")


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def healthy(child: Child) -> bool:
    try:
        return httpx.get(f"{child.url}/health", timeout=2, trust_env=False).status_code == 200
    except httpx.TransportError:
        return False


def owner_filter(child: Child) -> dict[str, Any]:
    """Outbox entries leased by ``child``'s relay (its owner id names its pid)."""
    return {"lease_owner": {"$regex": f"(^|[^0-9]){child.pid}([^0-9]|$)"}}


def test_relays_sigkilled_mid_batch_ten_times_lose_nothing(
    make_stack: Callable[..., Stack], observe: Callable[[Stack, str], Observed], tmp_path: Path
) -> None:
    rng = random.Random(os.environ.get("FAULT_SEED", "14"))
    # Only the two relay processes publish; a killed one's batch is taken over after its 2 s lease.
    stack = make_stack(
        web=1,
        workers=1,
        env={**SHORT_LEASE, "KERNEL__PLUGINS__OUTBOX__RELAY": "false"},
    )
    o = observe(stack, "relaykill")
    relays: list[Child] = []
    kills: list[str] = []
    mid_batch = 0
    with SlowLink(stack.redis_url, delay=0.02) as link:
        try:
            relays = [relay_process(stack, i, link.url, tmp_path) for i in range(2)]
            for relay in relays:
                relay.start()
            for relay in relays:
                wait_for(lambda r=relay: healthy(r), 60, f"{relay.name} to boot")
            load = Load([stack.webs[0].url or ""], count=REQUESTS, rate=25, retry=False, tag="relaykill")
            with LoadThread(load) as runner:
                attempts = 0
                while mid_batch < 10:
                    attempts += 1
                    assert attempts <= 30, f"only {mid_batch} of {attempts} kills landed mid-batch: {kills}"
                    victim = relays[attempts % 2]
                    wait_for(lambda v=victim: healthy(v), 60, f"{victim.name} to boot again")
                    # Kill it while it holds a claimed batch (leased, not yet marked done).
                    leased = wait_for(
                        lambda v=victim: o.db[OUTBOX].count_documents(
                            {
                                "status": "pending",
                                "lease_until": {"$gt": datetime.now(UTC)},
                                **owner_filter(v),
                            }
                        ),
                        60,
                        f"{victim.name} to claim a batch",
                    )
                    time.sleep(rng.uniform(0, 0.05))
                    pid = victim.pid
                    victim.kill()
                    held = o.db[OUTBOX].count_documents({"status": "pending", **owner_filter(victim)})
                    mid_batch += held > 0
                    kills.append(
                        f"{victim.name} pid {pid} after {load.done} requests: {held} of {leased} held"
                    )
                    victim.start()
                load = runner.join()
            wait_for(lambda: o.pending() == 0, 90, "the relays to drain the outbox")
        finally:
            for relay in relays:
                relay.terminate()
            for relay in relays:
                if relay.wait(15) is None:
                    relay.kill()
                relay.close()

    def figures() -> str:
        return f"201 {load.statuses[201]}/{REQUESTS}, {len(kills)} kills, {mid_batch} mid-batch: {kills}"

    assert load.statuses[201] == REQUESTS, f"{load.failed[:3]}; {figures()}"
    docs, sent, lost, duplicates = check_once_each(o, load, expect_users=REQUESTS, figures=figures)
    skipped = sum(c.log.count("already handled") for c in stack.webs)
    line = (
        f"outbox-faults relay-kill: lost {lost}, duplicates {duplicates} (published twice; subscriber "
        f"skipped {skipped} as already handled), notifications {len(sent)} each processed once, "
        f"{lag_figures(docs, sent)}; {figures()}"
    )
    print(f"\n{line}")
    assert mid_batch == 10, line
