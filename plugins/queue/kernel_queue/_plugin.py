"""The ``queue`` plugin: a QueueManager in the registry, ``kernel worker`` and ``kernel queue``."""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys
from collections.abc import AsyncIterator
from importlib import metadata
from pathlib import Path
from typing import TYPE_CHECKING, Any

import anyio

from kernel import Command, ConfigError, Kernel, Plugin, PluginContext, Registry, hookimpl
from kernel.config import import_object
from kernel.console import print_table

from ._config import QueueConfig
from ._errors import QueueError

if TYPE_CHECKING:
    from kernel_eventbus import EventBus  # both optional plugins
    from kernel_metrics import Metrics

    from ._manager import QueueManager  # saq and redis-py: imported by the lifespan and run functions


def load_processor_hooks(manager: QueueManager, specs: list[str]) -> None:
    """Import each ``"module:function"`` and call it with ``manager`` (it registers processors)."""
    errors = []
    for i, spec in enumerate(specs):
        try:
            fn = import_object(spec, expects="function")
        except ValueError as exc:
            errors.append(f"plugins.queue.processors[{i}]: {exc}")
            continue
        if not callable(fn):
            errors.append(f"plugins.queue.processors[{i}]: {spec!r} is not callable")
            continue
        fn(manager)
    if errors:
        raise ConfigError(errors)


class QueuePlugin(Plugin):
    """Background jobs on SAQ + Redis (``QueueManager``), workers via ``kernel worker``."""

    name = "queue"
    version = metadata.version("milo-kernel-queue")  # one source: the distribution's pyproject.toml
    requires = ("redis",)
    optional = ("metrics", "eventbus")
    config_class = QueueConfig
    provides = ("queue", "QueueManager")
    description = "Job queues: priorities, delays, exact retries, cron, pause/resume, no lost jobs."

    @hookimpl
    async def kernel_lifespan(self, ctx: PluginContext[QueueConfig]) -> AsyncIterator[None]:
        """Provide the ``QueueManager``; on shutdown its workers stop gracefully."""
        from kernel_redis import find_redis

        from ._manager import QueueManager

        redis = find_redis(ctx.registry, "queue", setting=None)
        # Idle workers block on BLPOP: give them a client without a socket read timeout
        # (a client given by the host is shared as is).
        blocking = redis.new_client(socket_timeout=None)
        own_blocking = blocking is not redis.client
        cfg = ctx.config
        replication = None
        if cfg.durability == "replicated":
            from ._durability import Replication

            replication = Replication(redis, replicas=cfg.replicas, timeout=cfg.replication_timeout)
        manager = QueueManager(
            redis.client,
            ctx.config,
            blocking=blocking if own_blocking else None,
            replication=replication,
            metrics=find_metrics(ctx.registry),
            eventbus=find_eventbus(ctx.registry),
        )
        try:
            await register_key_layout(ctx.registry, manager)
            load_processor_hooks(manager, ctx.config.processors)
            ctx.provide(manager, name="queue")
            yield
        finally:
            await manager.close()
            if own_blocking:
                await blocking.aclose()

    @hookimpl
    def kernel_cli_commands(self) -> list[Command]:
        """``kernel worker`` and ``kernel queue``."""
        return [
            Command("worker", "run queue workers until SIGTERM/SIGINT", run_worker, add_worker_arguments),
            Command("queue", "queue stats, pause, resume, clean, retry", run_queue, add_queue_arguments),
        ]


async def register_key_layout(registry: Registry, manager: QueueManager) -> None:
    """Tell ``kernel redis migrate-keys`` the old key names of every queue this Redis knows."""
    from kernel_redis import KeyLayouts
    from redis.exceptions import RedisError

    from ._layout import QueueKeyLayout

    layouts = registry.find(KeyLayouts)
    if layouts is None:
        return
    try:
        names = await manager.queue_names()
    except RedisError:  # Redis down at boot: the queues of the config still get their layout
        names = list(manager.config.queues)
    layouts.add(QueueKeyLayout(names))


def find_metrics(registry: Registry) -> Metrics | None:
    """The metrics plugin's collector when it is enabled (``None`` when it is not installed)."""
    try:
        from kernel_metrics import Metrics
    except ImportError:  # not installed: nothing can have registered one
        return None
    return registry.find(Metrics)


def find_eventbus(registry: Registry) -> EventBus | None:
    """The event bus when the eventbus plugin is enabled (``None`` when it is not installed)."""
    try:
        from kernel_eventbus import EventBus
    except ImportError:  # not installed: nothing can have registered one
        return None
    return registry.find(EventBus)


# ---------------------------------------------------------------------- kernel worker


def add_worker_arguments(parser: argparse.ArgumentParser) -> None:
    """The options of ``kernel worker``."""
    parser.add_argument(
        "--queue",
        "-q",
        action="append",
        dest="queues",
        metavar="NAME",
        help="queue to process (repeatable; default: config 'queues', else every queue "
        "with a registered processor)",
    )
    parser.add_argument(
        "--concurrency",
        "-n",
        type=int,
        default=None,
        help="jobs run at once per queue (default: config 'concurrency')",
    )
    parser.add_argument(
        "--ready-file",
        metavar="PATH",
        default=None,
        help="create this file once the workers take jobs, remove it on stop "
        "(for supervisors and readiness probes)",
    )


def _worker_plan(args: argparse.Namespace, manager: QueueManager) -> tuple[list[str], int] | None:
    """The queues and concurrency of ``kernel worker``; None (after an error message) if there is none."""
    cfg = manager.config
    queues = args.queues or cfg.queues or manager.processors.queues()
    if not queues:
        print(
            "error: no queue to process: register processors (config 'processors' or a plugin calling "
            "register_processor) or pass --queue",
            file=sys.stderr,
        )
        return None
    concurrency = args.concurrency or cfg.concurrency
    if concurrency < 1:
        print(f"error: --concurrency must be >= 1, got {concurrency}", file=sys.stderr)
        return None
    for name in queues:
        if not manager.processors.names(name):
            print(
                f"warning: queue {name!r} has no processor; its jobs will fail with UnknownProcessorError",
                file=sys.stderr,
            )
    return list(queues), concurrency


async def run_worker(args: argparse.Namespace, kernel: Kernel) -> int:
    """``kernel worker``: run workers until SIGTERM/SIGINT, then let running jobs finish."""
    from kernel_redis import find_redis

    from ._manager import QueueManager

    manager = kernel.get(QueueManager)
    if find_redis(kernel.registry, "queue", setting=None).embedded:
        print(
            'warning: [plugins.redis] url = "embedded" gives this worker its own private Redis: '
            "jobs added by other processes never reach it; point url at a shared server",
            file=sys.stderr,
        )
    plan = _worker_plan(args, manager)
    if plan is None:
        return 2
    queues, concurrency = plan
    ready_file = Path(args.ready_file) if args.ready_file else None
    if ready_file is not None:
        ready_file.unlink(missing_ok=True)  # a stale one from an earlier run
    try:
        with anyio.open_signal_receiver(signal.SIGTERM, signal.SIGINT) as signals:
            for name in queues:
                await manager.create_worker(name, concurrency=concurrency)
            print(f"worker ready: queues={','.join(queues)} concurrency={concurrency}", flush=True)
            if ready_file is not None:
                ready_file.write_text(f"{os.getpid()}\n")
            async for _ in signals:
                break
            print("worker stopping: finishing running jobs", flush=True)
            if ready_file is not None:
                ready_file.unlink(missing_ok=True)
            await manager.stop_workers()  # a second signal meanwhile changes nothing
    finally:
        if ready_file is not None:
            ready_file.unlink(missing_ok=True)
    print("worker stopped", flush=True)
    return 0


# ---------------------------------------------------------------------- kernel queue


def add_queue_arguments(parser: argparse.ArgumentParser) -> None:
    """The subcommands of ``kernel queue``."""
    sub = parser.add_subparsers(dest="queue_command", metavar="SUBCOMMAND", required=True)
    p = sub.add_parser("stats", help="waiting/active/completed/failed/delayed per queue")
    p.add_argument("names", nargs="*", metavar="NAME", help="queues (default: all known)")
    p.add_argument("--json", action="store_true")
    for name, text in (
        ("pause", "stop every worker taking jobs from a queue"),
        ("resume", "let workers take jobs again"),
    ):
        p = sub.add_parser(name, help=text)
        p.add_argument("name", metavar="NAME")
    p = sub.add_parser("clean", help="delete old finished (or waiting/delayed) jobs")
    p.add_argument("name", metavar="NAME")
    p.add_argument("--status", choices=["completed", "failed", "waiting", "delayed"], default="completed")
    p.add_argument("--grace", type=float, default=0.0, help="only jobs older than this many seconds")
    p.add_argument("--limit", type=int, default=1000, help="at most this many (0: all)")
    p = sub.add_parser("retry", help="re-queue failed jobs")
    p.add_argument("name", metavar="NAME")
    p.add_argument("--job", dest="job_id", help="one job id (default: every failed job)")


async def run_queue(args: argparse.Namespace, kernel: Kernel) -> int:
    """``kernel queue``: errors of the queue are printed, exit status 1."""
    from ._manager import QueueManager

    try:
        return await _queue_command(args, kernel.get(QueueManager))
    except QueueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1


async def _queue_command(args: argparse.Namespace, manager: QueueManager) -> int:
    cmd = args.queue_command
    if cmd == "stats":
        stats: list[dict[str, Any]] = (
            [await manager.get_queue_stats(n) for n in args.names]
            if args.names
            else await manager.get_all_queue_stats()
        )
        if args.json:
            print(json.dumps(stats, indent=2))
        else:
            cols = ["queue_name", "waiting", "active", "delayed", "completed", "failed", "total", "paused"]
            print_table([cols] + [[str(s[c]) for c in cols] for s in stats], rule=False)
        return 0
    if cmd == "pause":
        await manager.pause_queue(args.name)
        print(f"queue {args.name!r} paused")
    elif cmd == "resume":
        await manager.resume_queue(args.name)
        print(f"queue {args.name!r} resumed")
    elif cmd == "clean":
        removed = await manager.clean_queue(args.name, args.grace, args.limit, args.status)
        print(f"removed {len(removed)} {args.status} job(s) from {args.name!r}")
    elif cmd == "retry":
        count = await manager.retry_failed(args.name, args.job_id)
        print(f"re-queued {count} failed job(s) on {args.name!r}")
    return 0
