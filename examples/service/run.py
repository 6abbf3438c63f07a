"""One command for the whole service: one Redis, one wire server, N web and M worker processes.

    python -m examples.service.run [--web 1] [--workers 1] [--port 4000]

Web and worker processes must share their servers, so the launcher starts one embedded
Redis (append-only, so jobs and events survive a Redis restart) and one MongoDB wire
server, then runs every process with ``KERNEL__PLUGINS__REDIS__URL`` /
``KERNEL__PLUGINS__REPOSITORY__URI`` pointing at them and one ``PROMETHEUS_MULTIPROC_DIR``
(a scrape of any web process sums all of them). Ctrl-C or SIGTERM stops the processes
(SIGTERM, then SIGKILL after a grace period), then the servers; children die with the
launcher even when it is SIGKILLed. With ``--redis-url`` / ``--mongo-uri`` it uses
existing servers instead.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from types import FrameType
from typing import IO, Any

import httpx

from kernel import die_with_parent

ROOT = Path(__file__).resolve().parents[2]
CONFIG = ROOT / "examples" / "kernel.toml"
APP = "examples.service.app:app"


class Child:
    """One web or worker process of the stack."""

    def __init__(self, name: str, argv: list[str], env: Mapping[str, str], log: Path | None,
                 url: str | None = None) -> None:
        self.name, self.argv, self.env, self.log_path, self.url = name, argv, dict(env), log, url
        self.proc: subprocess.Popen[bytes] | None = None
        self._log: IO[bytes] | None = None

    def start(self) -> None:
        if self.log_path is not None:
            self._log = self.log_path.open("ab")
        self.proc = subprocess.Popen(
            self.argv, cwd=ROOT, env=self.env, stdin=subprocess.DEVNULL,
            stdout=self._log, stderr=subprocess.STDOUT if self._log else None,
            # Own session: a terminal's Ctrl-C reaches only the launcher, which stops everyone in order.
            start_new_session=True, preexec_fn=die_with_parent(),
        )

    @property
    def pid(self) -> int | None:
        return self.proc.pid if self.proc is not None else None

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    @property
    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path else ""

    def terminate(self) -> None:
        if self.running and self.proc is not None:
            self.proc.send_signal(signal.SIGTERM)

    def kill(self) -> None:
        """SIGKILL (a crash: no shutdown at all) and reap."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()

    def wait(self, timeout: float) -> int | None:
        if self.proc is None:
            return None
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            return None

    def close(self) -> None:
        if self._log is not None:
            self._log.close()
            self._log = None


class Stack:
    """The servers and processes of one running service (used by the launcher and the system tests)."""

    def __init__(
        self,
        *,
        web: int = 1,
        workers: int = 1,
        host: str = "127.0.0.1",
        port: int = 4000,
        config: Path = CONFIG,
        redis_url: str | None = None,
        mongo_uri: str | None = None,
        log_dir: Path | None = None,
        redis_options: Mapping[str, Any] | None = None,
        env: Mapping[str, str] | None = None,
        worker_args: Sequence[str] = (),
    ) -> None:
        self.web_count, self.worker_count = web, workers
        self.host, self.port, self.config = host, port, config
        self.log_dir = log_dir
        self.worker_args = list(worker_args)
        self._redis_url, self._mongo_uri = redis_url, mongo_uri
        self._redis_options = {"appendonly": True, **(redis_options or {})}
        self._extra_env = dict(env or {})
        self.redis: Any = None  # kernel_redis.RedisServer when embedded
        self.mongo: Any = None  # kernel_repository.MongoWireServer when embedded
        self.metrics_dir: Path | None = None
        self.run_dir: Path | None = None  # the workers' ready files
        self.webs: list[Child] = []
        self.workers: list[Child] = []

    # ------------------------------------------------------------------ servers

    @property
    def redis_url(self) -> str:
        return self._redis_url or self.redis.url

    @property
    def mongo_uri(self) -> str:
        return self._mongo_uri or self.mongo.uri

    def start_servers(self) -> None:
        if self._redis_url is None:
            from kernel_redis import RedisServer

            self.redis = RedisServer(**self._redis_options).start()
        if self._mongo_uri is None:
            from kernel_repository import MongoWireServer

            self.mongo = MongoWireServer().start()
        self.metrics_dir = Path(tempfile.mkdtemp(prefix="kernel-metrics-"))
        self.run_dir = Path(tempfile.mkdtemp(prefix="kernel-run-"))

    def env(self) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items()
               if k not in ("PROMETHEUS_MULTIPROC_DIR", "prometheus_multiproc_dir")}
        env.update({
            "KERNEL_CONFIG": str(self.config),
            "KERNEL__PLUGINS__REDIS__URL": self.redis_url,
            "KERNEL__PLUGINS__REPOSITORY__URI": self.mongo_uri,
            "PROMETHEUS_MULTIPROC_DIR": str(self.metrics_dir),
            "PYTHONUNBUFFERED": "1",
        })
        env.update(self._extra_env)
        return env

    # ------------------------------------------------------------------ processes

    def _log(self, name: str) -> Path | None:
        return self.log_dir / f"{name}.log" if self.log_dir is not None else None

    def web(self, i: int) -> Child:
        port = self.port + i
        argv = [sys.executable, "-m", "kernel", "--config", str(self.config), "serve", "--app", APP,
                "--host", self.host, "--port", str(port)]
        return Child(f"web{i}", argv, self.env(), self._log(f"web{i}"), f"http://{self.host}:{port}")

    def worker(self, i: int) -> Child:
        assert self.run_dir is not None, "start_servers() first"
        ready = self.run_dir / f"worker{i}.ready"
        argv = [sys.executable, "-m", "kernel", "--config", str(self.config), "worker", *self.worker_args,
                "--ready-file", str(ready)]
        child = Child(f"worker{i}", argv, self.env(), self._log(f"worker{i}"))
        child.ready_file = ready
        return child

    def start(self, ready_timeout: float = 60.0) -> None:
        """Servers, then every process; returns once each web process answers ``/health`` and
        each worker takes jobs."""
        self.start_servers()
        self.webs = [self.web(i) for i in range(self.web_count)]
        self.workers = [self.worker(i) for i in range(self.worker_count)]
        for child in (*self.webs, *self.workers):
            child.start()
        self.wait_ready(ready_timeout)

    def wait_ready(self, timeout: float = 60.0) -> None:
        deadline = time.monotonic() + timeout
        for child in self.webs:
            while True:
                if not child.running:
                    raise RuntimeError(f"{child.name} exited with {child.wait(0)}\n{child.log[-4000:]}")
                try:
                    if httpx.get(f"{child.url}/health", timeout=2).status_code == 200:
                        break
                except httpx.TransportError:
                    pass
                if time.monotonic() > deadline:
                    raise RuntimeError(f"{child.name} did not become healthy\n{child.log[-4000:]}")
                time.sleep(0.1)
        for child in self.workers:
            while child.ready_file is not None and not child.ready_file.exists():
                if not child.running:
                    raise RuntimeError(f"{child.name} exited with {child.wait(0)}\n{child.log[-4000:]}")
                if time.monotonic() > deadline:
                    raise RuntimeError(f"{child.name} did not become ready\n{child.log[-4000:]}")
                time.sleep(0.05)

    def restart_worker(self, i: int) -> Child:
        """Start a fresh worker process in slot ``i`` (after a kill)."""
        child = self.worker(i)
        self.workers[i].close()
        self.workers[i] = child
        child.start()
        return child

    def stop(self, grace: float = 20.0) -> dict[str, int | None]:
        """SIGTERM every process (SIGKILL after ``grace``), then stop the servers; returns exit codes."""
        children = [*self.webs, *self.workers]
        for child in children:
            child.terminate()
        deadline = time.monotonic() + grace
        codes: dict[str, int | None] = {}
        for child in children:
            code = child.wait(max(0.0, deadline - time.monotonic()))
            if code is None:
                child.kill()
            codes[child.name] = code
            child.close()
        for server in (self.mongo, self.redis):
            if server is not None:
                with contextlib.suppress(Exception):
                    server.close()
        for path in (self.metrics_dir, self.run_dir):
            if path is not None:
                shutil.rmtree(path, ignore_errors=True)
        return codes

    def __enter__(self) -> Stack:
        try:
            self.start()
        except BaseException:
            self.stop(grace=5)
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


class _Stop(Exception):
    pass


def _raise_stop(signum: int, _frame: FrameType | None) -> None:
    raise _Stop(signal.Signals(signum).name)


def health_line(url: str) -> str:
    """One line summing up ``GET {url}/health``: overall status and each plugin's check."""
    try:
        report = httpx.get(f"{url}/health", timeout=5).json()
    except (httpx.HTTPError, ValueError) as exc:
        return f"health: unavailable ({type(exc).__name__})"
    checks = ", ".join(f"{name} {c.get('status')}" for name, c in report.get("checks", {}).items())
    return f"health: {report.get('status')} ({checks})"


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m examples.service.run",
                                     description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--web", type=int, default=1, help="web processes (ports PORT, PORT+1, ...)")
    parser.add_argument("--workers", type=int, default=1, help="worker processes")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=4000)
    parser.add_argument("--config", type=Path, default=CONFIG)
    parser.add_argument("--redis-url", help="use this Redis instead of starting one")
    parser.add_argument("--mongo-uri", help="use this MongoDB instead of starting the wire server")
    args = parser.parse_args(argv)
    if args.web < 1 or args.workers < 0:
        parser.error("--web must be >= 1 and --workers >= 0")
    stack = Stack(web=args.web, workers=args.workers, host=args.host, port=args.port, config=args.config,
                  redis_url=args.redis_url, mongo_uri=args.mongo_uri)
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, _raise_stop)
    code = 0
    try:
        stack.start()
        print(f"service ready: {', '.join(c.url or '' for c in stack.webs)} "
              f"(web pids {[c.pid for c in stack.webs]}, worker pids {[c.pid for c in stack.workers]}); "
              "try POST /users, GET/PATCH /users/{id}, /health, /health/metrics; Ctrl-C stops it", flush=True)
        print(health_line(stack.webs[0].url or ""), flush=True)
        while True:
            dead = [c for c in (*stack.webs, *stack.workers) if not c.running]
            if dead:
                print(f"{dead[0].name} exited with {dead[0].wait(0)}: stopping the service", file=sys.stderr)
                code = 1
                break
            time.sleep(0.5)
    except _Stop as why:
        print(f"{why}: stopping the service", flush=True)
    except RuntimeError as exc:
        print(f"error: {exc}", file=sys.stderr)
        code = 1
    finally:
        for signum in (signal.SIGINT, signal.SIGTERM):
            signal.signal(signum, signal.SIG_IGN)  # a second Ctrl-C must not abandon the children
        codes = stack.stop()
        print(f"service stopped: exit codes {codes}", flush=True)
    return code


if __name__ == "__main__":
    raise SystemExit(main())
