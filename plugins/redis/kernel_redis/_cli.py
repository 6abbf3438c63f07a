"""``kernel redis info`` (topology, nodes, health) and ``kernel redis migrate-keys [--apply]``."""

from __future__ import annotations

import argparse
import json
import sys
from typing import TYPE_CHECKING, TextIO

from kernel import Command
from kernel.console import ProgressBar, print_table

if TYPE_CHECKING:
    from kernel import Kernel

    from ._connection import RedisConnection
    from ._layouts import KeyLayouts
    from ._migrate import MigrationReport
    from ._topology import NodeStatus, TopologyReport

DEFAULT_LIMIT = 50


def redis_command() -> Command:
    """The ``kernel redis`` command."""
    return Command(
        "redis",
        "the Redis deployment: info (topology, nodes, health), migrate-keys (rename keys of old layouts)",
        run_redis,
        add_arguments=_arguments,
    )


def _arguments(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="redis_command", metavar="ACTION", required=True)
    p = sub.add_parser("info", help="topology, nodes, roles, slot ranges, replicas, sentinels and PING times")
    p.add_argument("--json", action="store_true", help="JSON instead of text")
    p = sub.add_parser(
        "migrate-keys", help="list (or --apply: rename) the keys of the plugins' old key layouts"
    )
    p.add_argument(
        "--apply", action="store_true", help="rename the keys (default: a dry run that lists them)"
    )
    p.add_argument(
        "--limit",
        type=int,
        default=DEFAULT_LIMIT,
        help=f"keys listed (default {DEFAULT_LIMIT}; all are counted)",
    )
    p.add_argument("--json", action="store_true", help="JSON instead of text (every key)")


async def run_redis(args: argparse.Namespace, kernel: Kernel) -> int:
    """Entry point of ``kernel redis``."""
    from ._connection import RedisConnection
    from ._layouts import KeyLayouts

    connection = kernel.registry.get(RedisConnection)
    if args.redis_command == "info":
        return await _info(args, connection, sys.stdout)
    return await _migrate(args, connection, kernel.registry.get(KeyLayouts), sys.stdout)


def _ms(seconds: float | None) -> str:
    return "-" if seconds is None else f"{seconds * 1000:.1f} ms"


def _slots(node: NodeStatus) -> str:
    return ",".join(f"{a}-{b}" if a != b else str(a) for a, b in node.slots)


def _status(node: NodeStatus) -> str:
    if node.error:
        return f"DOWN: {node.error}"
    return f"ok ({node.flags})" if node.flags else "ok"


async def _info(args: argparse.Namespace, connection: RedisConnection, out: TextIO) -> int:
    """``kernel redis info``: exit 1 when a primary is down (or the cluster state is not ok)."""
    from ._topology import inspect_topology

    report = await inspect_topology(connection)
    if args.json:
        print(json.dumps({**report.to_dict(), "problems": report.problems()}, indent=2), file=out)
        return 1 if report.problems() else 0
    _print_report(report, out)
    return 1 if report.problems() else 0


def _print_report(report: TopologyReport, out: TextIO) -> None:
    print(f"topology:   {report.topology}", file=out)
    print(f"url:        {report.url}", file=out)
    print(f"state:      {report.state}", file=out)
    if report.topology == "sentinel":
        print(
            f"sentinels:  {report.sentinels_answering} of {report.sentinels_total} answer "
            f"(service {report.service})",
            file=out,
        )
    if report.topology == "cluster":
        serving = [n for n in report.primaries if n.slots]
        covered = sum(b - a + 1 for n in serving for a, b in n.slots)
        print(f"primaries:  {len(serving)} serving {covered} of 16384 slots", file=out)
    print(file=out)
    rows = [["node", "role", "slots", "replica of", "ping", "status"]]
    rows += [
        [n.address, n.role, _slots(n), n.primary or "", _ms(n.latency), _status(n)] for n in report.nodes
    ]
    print_table(rows, out)
    for problem in report.problems():
        print(f"problem: {problem}", file=out)


async def _migrate(
    args: argparse.Namespace, connection: RedisConnection, layouts: KeyLayouts, out: TextIO
) -> int:
    """``kernel redis migrate-keys``: exit 1 when a key could not be renamed (its new name exists)."""
    from ._migrate import migrate_keys

    if not len(layouts):
        print("no key layouts registered by the enabled plugins: nothing to migrate", file=out)
        return 0
    bar = ProgressBar("renaming", sys.stderr, piped_bar=False, piped_step=10) if args.apply else None
    report = await migrate_keys(connection.client, layouts, apply=args.apply, progress=bar)
    if bar is not None:
        bar.close()
    if args.json:
        print(json.dumps(report.to_dict(), indent=2), file=out)
    else:
        _print_migration(report, args.limit, connection.topology, out)
    return 1 if report.count("conflict") else 0


def _print_migration(report: MigrationReport, limit: int, topology: str, out: TextIO) -> None:
    owners = ", ".join(report.owners)
    total = len(report.moves)
    if not total:
        print(f"no key of an old layout found (layouts: {owners})", file=out)
        return
    per_owner = ", ".join(f"{o}: {report.count(owner=o)}" for o in report.owners if report.count(owner=o))
    if report.applied:
        print(
            f"renamed {report.count('renamed')} of {total} keys ({per_owner}); "
            f"conflicts (new name exists, left alone): {report.count('conflict')}; "
            f"gone meanwhile: {report.count('gone')}",
            file=out,
        )
    else:
        print(f"dry run: {total} keys to rename ({per_owner}); run with --apply to rename them", file=out)
        if topology == "cluster":
            print(
                "(on a cluster, a key whose slot changes is copied with DUMP/RESTORE, then deleted)", file=out
            )
    print(file=out)
    header = ["owner", "old name", "new name"] + (["outcome"] if report.applied else [])
    rows = [header]
    for move in report.moves[:limit]:
        rows.append([move.owner, move.old, move.new] + ([move.outcome] if report.applied else []))
    print_table(rows, out)
    if total > limit:
        print(f"... and {total - limit} more (--limit N lists more, --json lists all)", file=out)
