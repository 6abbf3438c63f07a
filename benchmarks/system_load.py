"""End-to-end load: the example service (kernel + plugins) vs a bare Starlette app on redis-py/motor.

Both run as real processes on one private Redis and one MongoDB wire server: a web process
(uvicorn) and a worker process each, over loopback, driven by an httpx client with bounded
concurrency for a fixed time per round, rounds interleaved (ours, raw, ours, raw, ...).

The bare app does the same work by hand: ``POST /users`` inserts the document with audit
fields (motor) and ``XADD``s the event; a consumer task in the web process reads the stream
(``XREADGROUP``), pushes a job (``LPUSH``) and acknowledges; the worker pops it (``BRPOP``)
and records the notification. ``GET /users/{id}`` is cache-aside (``GET``/``find_one``/
``SET EX``). No validation beyond the fields, no retries, DLQ, metrics, problems or trace ids.

Cases (``ours``/``raw`` = wall µs per request at that concurrency = 1e6 / requests per second):

- ``create``: ``POST /users`` (each a new user: the whole write path, jobs included);
- ``read``: ``GET /users/{id}`` over 20 users (cache hits after the first read).
"""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager, suppress
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx

from ._harness import emit, resp_parser, rounds, server

SUITE = "system_load"
ROOT = Path(__file__).resolve().parents[1]
CONCURRENCY = 16


# ---------------------------------------------------------------------- the bare app (raw)


def _raw_app() -> Any:
    """Starlette + redis-py + motor, no kernel (built lazily: only the raw web process needs it)."""
    import json

    import redis.asyncio as aioredis
    from bson import ObjectId
    from motor.motor_asyncio import AsyncIOMotorClient
    from starlette.applications import Starlette
    from starlette.requests import Request
    from starlette.responses import JSONResponse
    from starlette.routing import Route

    state: dict[str, Any] = {}

    def public(doc: dict[str, Any]) -> dict[str, Any]:
        return {
            "id": str(doc["_id"]),
            "name": doc["name"],
            "email": doc["email"],
            "created_at": doc["created_at"].isoformat(),
            "created_by": doc["created_by"],
        }

    async def create(request: Request) -> JSONResponse:
        body = json.loads(await request.body())
        now = datetime.now(UTC)
        doc = {
            "name": body["name"],
            "email": body["email"],
            "created_at": now,
            "updated_at": now,
            "created_by": request.headers.get("x-user-id"),
            "updated_by": request.headers.get("x-user-id"),
        }
        await state["users"].insert_one(doc)
        await state["redis"].xadd(
            "raw:stream:user.created", {"e": json.dumps({"user_id": str(doc["_id"]), "email": doc["email"]})}
        )
        return JSONResponse(public(doc), status_code=201)

    async def get(request: Request) -> JSONResponse:
        user_id = request.path_params["user_id"]
        cached = await state["redis"].get(f"raw:user:{user_id}")
        if cached is not None:
            return JSONResponse(json.loads(cached))
        doc = await state["users"].find_one({"_id": ObjectId(user_id)})
        if doc is None:
            return JSONResponse({"detail": "not found"}, status_code=404)
        data = public(doc)
        await state["redis"].set(f"raw:user:{user_id}", json.dumps(data), ex=300)
        return JSONResponse(data)

    async def consume() -> None:
        r = state["redis"]
        with suppress(aioredis.ResponseError):  # the group exists already
            await r.xgroup_create("raw:stream:user.created", "notify", id="$", mkstream=True)
        while True:
            batch = await r.xreadgroup(
                "notify", "c1", {"raw:stream:user.created": ">"}, count=100, block=1000
            )
            for _stream, entries in batch or ():
                for entry_id, fields in entries:
                    await r.lpush("raw:jobs", fields[b"e"])
                    await r.xack("raw:stream:user.created", "notify", entry_id)

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        state["redis"] = aioredis.Redis.from_url(os.environ["RAW_REDIS_URL"])
        mongo: Any = AsyncIOMotorClient(os.environ["RAW_MONGO_URI"])
        state["users"] = mongo["raw"]["users"]
        task = asyncio.create_task(consume())
        yield
        task.cancel()
        mongo.close()
        await state["redis"].aclose()

    return Starlette(
        routes=[Route("/users", create, methods=["POST"]), Route("/users/{user_id}", get, methods=["GET"])],
        lifespan=lifespan,
    )


async def _raw_worker() -> None:
    """The bare worker: pop a job, run the 'notification', record it."""
    import redis.asyncio as aioredis

    r = aioredis.Redis.from_url(os.environ["RAW_REDIS_URL"])
    stop = asyncio.Event()
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
    while not stop.is_set():
        item = await r.brpop(["raw:jobs"], timeout=1)
        if item is not None:
            await r.hset("raw:notifications:sent", uuid.uuid4().hex, datetime.now(UTC).isoformat())
    await r.aclose()


def __getattr__(name: str) -> Any:
    if name == "raw_app":  # `uvicorn benchmarks.system_load:raw_app`
        return _raw_app()
    raise AttributeError(name)


# ---------------------------------------------------------------------- the load client


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Figures:
    def __init__(self) -> None:
        self.latencies: list[float] = []
        self.errors = 0
        self.elapsed = 0.0

    @property
    def requests(self) -> int:
        return len(self.latencies) + self.errors


async def _drive(
    client: httpx.AsyncClient, url: str, case: str, seconds: float, ids: list[str], into: Figures
) -> None:
    deadline = time.perf_counter() + seconds
    counter = iter(range(1 << 30))

    async def one_client() -> None:
        while time.perf_counter() < deadline:
            n = next(counter)
            t0 = time.perf_counter()
            try:
                if case == "create":
                    body = {"name": f"u{n}", "email": f"{uuid.uuid4().hex}@bench.example"}
                    r = await client.post(f"{url}/users", headers={"x-user-id": "bench"}, json=body)
                    ok = r.status_code == 201
                else:
                    r = await client.get(f"{url}/users/{ids[n % len(ids)]}")
                    ok = r.status_code == 200
            except httpx.HTTPError:
                ok = False
            if ok:
                into.latencies.append(time.perf_counter() - t0)
            else:
                into.errors += 1

    t0 = time.perf_counter()
    await asyncio.gather(*(one_client() for _ in range(CONCURRENCY)))
    into.elapsed += time.perf_counter() - t0


def run(quick: bool) -> None:
    if str(ROOT) not in sys.path:  # `examples` is a directory of the repository
        sys.path.insert(0, str(ROOT))
    from kernel_redis import RedisServer
    from kernel_repository import MongoWireServer

    from examples.service.run import Stack, wait_http

    seconds = 0.4 if quick else 5.0
    n_rounds = rounds(3, 3)
    settle = 0.05 if quick else 0.2
    logs = Path(tempfile.mkdtemp(prefix="bench-system-"))
    raw_procs: list[subprocess.Popen[bytes]] = []
    with RedisServer(appendonly=True) as redis_server, MongoWireServer() as mongo:
        import redis

        with redis.Redis.from_url(redis_server.url) as info_client:
            version = info_client.info("server").get("redis_version", "?")
        server(SUITE, f"redis-server {version}, parser {resp_parser().split()[0]} (both services)")
        env = {"KERNEL__KERNEL__LOG_LEVEL": "WARNING"}
        stack = Stack(
            web=1,
            workers=1,
            port=_free_port(),
            redis_url=redis_server.url,
            mongo_uri=mongo.uri,
            log_dir=logs,
            env=env,
        )
        try:
            # The bare app starts while the example boots (both on the servers started above).
            raw_port = _free_port()
            raw_env = {**os.environ, "RAW_REDIS_URL": redis_server.url, "RAW_MONGO_URI": mongo.uri}
            with (logs / "raw.log").open("ab") as log:
                raw_procs.append(
                    subprocess.Popen(
                        [
                            sys.executable,
                            "-m",
                            "uvicorn",
                            "benchmarks.system_load:raw_app",
                            "--host",
                            "127.0.0.1",
                            "--port",
                            str(raw_port),
                            "--log-level",
                            "warning",
                            "--no-access-log",
                        ],
                        cwd=ROOT,
                        env=raw_env,
                        stdout=log,
                        stderr=subprocess.STDOUT,
                    )
                )
                raw_procs.append(
                    subprocess.Popen(
                        [
                            sys.executable,
                            "-c",
                            "import asyncio, benchmarks.system_load as s; asyncio.run(s._raw_worker())",
                        ],
                        cwd=ROOT,
                        env=raw_env,
                        stdout=log,
                        stderr=subprocess.STDOUT,
                    )
                )
            stack.start()
            raw_url = f"http://127.0.0.1:{raw_port}"
            wait_http(f"{raw_url}/users/000000000000000000000000", raw_procs[0], time.monotonic() + 60)
            asyncio.run(_measure(stack.webs[0].url or "", raw_url, seconds, n_rounds, settle))
        finally:
            for proc in raw_procs:  # the raw processes stop while the stack stops
                proc.terminate()
            stack.stop(grace=10)
            for proc in raw_procs:
                try:
                    proc.wait(10)
                except subprocess.TimeoutExpired:
                    proc.kill()


async def _measure(ours_url: str, raw_url: str, seconds: float, n_rounds: int, settle: float) -> None:
    limits = httpx.Limits(max_connections=CONCURRENCY, max_keepalive_connections=CONCURRENCY)
    async with httpx.AsyncClient(timeout=30, limits=limits, trust_env=False) as client:
        ids: dict[str, list[str]] = {}
        for side, url in (("ours", ours_url), ("raw", raw_url)):
            made = [
                await client.post(f"{url}/users", json={"name": f"s{i}", "email": f"s{i}@seed.example"})
                for i in range(20)
            ]
            ids[side] = [r.json()["id"] for r in made]
        for case in ("create", "read"):
            figures = {"ours": Figures(), "raw": Figures()}
            per_round: dict[str, list[float]] = {"ours": [], "raw": []}
            for _ in range(n_rounds):
                for side, url in (("ours", ours_url), ("raw", raw_url)):
                    f = figures[side]
                    elapsed, requests = f.elapsed, f.requests
                    await _drive(client, url, case, seconds, ids[side], f)
                    per_round[side].append((f.elapsed - elapsed) / max(f.requests - requests, 1) * 1e6)
                    await asyncio.sleep(settle)  # let the side's background work (events, jobs) settle
            emit(SUITE, case, per_round["ours"], per_round["raw"])
            for side, f in figures.items():
                lat = sorted(f.latencies) or [0.0]
                p50, p99 = statistics.median(lat) * 1000, lat[int(len(lat) * 0.99)] * 1000
                print(
                    f"  {case} {side}: {f.requests / f.elapsed:.0f} req/s, p50 {p50:.1f} ms, "
                    f"p99 {p99:.1f} ms, errors {f.errors / max(f.requests, 1):.2%} "
                    f"({f.requests} requests, concurrency {CONCURRENCY})",
                    flush=True,
                )
