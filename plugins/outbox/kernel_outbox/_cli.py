"""``kernel outbox status|replay|purge``: operate the outbox from a shell."""

from __future__ import annotations

import argparse
import json
import re
import sys
from datetime import timedelta
from typing import TYPE_CHECKING

from kernel import Command

if TYPE_CHECKING:
    from kernel import Kernel

_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86_400, "w": 604_800}
_DURATION = re.compile(r"(\d+(?:\.\d+)?)([smhdw]?)")


def parse_duration(text: str) -> timedelta:
    """``"7d"``, ``"12h"``, ``"30m"``, ``"45s"``, ``"2w"``, ``"1d12h"`` or plain seconds; ``ValueError``."""
    text = text.strip().lower()
    parts = _DURATION.findall(text)
    if not text or "".join(n + u for n, u in parts) != text:
        raise ValueError(f"not a duration: {text!r} (use e.g. 7d, 12h, 30m, 45s or seconds)")
    return timedelta(seconds=sum(float(n) * _UNITS[u or "s"] for n, u in parts))


def _duration(text: str) -> timedelta:
    try:
        return parse_duration(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


async def run_outbox(args: argparse.Namespace, kernel: Kernel) -> int:
    """Entry point of ``kernel outbox``: stops this process's relay, then runs the action."""
    from kernel_repository import OutboxEntryNotFoundError

    from ._relay import OutboxRelay

    relay = kernel.get(OutboxRelay)
    await relay.stop()  # a command inspects and edits the outbox; the services' relays publish it
    store = relay.store
    if args.outbox_command == "status":
        status = await relay.status()
        if args.json:
            print(json.dumps({**status.to_dict(), "collection": store.collection_name}, indent=2))
            return 0
        oldest = status.oldest_pending_at
        print(f"collection:     {store.collection_name}")
        print(f"backlog:        {status.backlog} (in flight {status.in_flight}, retrying {status.retrying})")
        print(
            "oldest pending: "
            + ("-" if oldest is None else f"{oldest.isoformat()} (lag {status.lag_seconds:.1f}s)")
        )
        print(f"done:           {status.done}")
        print(f"failed:         {status.failed}")
        return 0
    if args.outbox_command == "replay":
        before = await store.get(args.event_id)
        try:
            entry = await store.replay(args.event_id)
        except OutboxEntryNotFoundError:
            print(f"error: no outbox entry has event id {args.event_id!r}", file=sys.stderr)
            return 1
        was = before.status if before is not None else "?"
        print(f"replayed {entry.event_id} ({entry.name}): pending again (was {was})")
        return 0
    age: timedelta = args.done_older_than
    n = await store.purge(done_older_than=age)
    print(f"purged {n} done entries published more than {_show(age)} ago")
    return 0


def _show(age: timedelta) -> str:
    seconds = age.total_seconds()
    for unit, size in (("d", 86_400), ("h", 3600), ("m", 60)):
        if seconds >= size and seconds % size == 0:
            return f"{int(seconds // size)}{unit}"
    return f"{seconds:g}s"


def _arguments(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="outbox_command", metavar="ACTION", required=True)
    p = sub.add_parser("status", help="backlog, in flight, retrying, done, failed and the lag")
    p.add_argument("--json", action="store_true", help="JSON instead of text")
    p = sub.add_parser("replay", help="publish an entry again (done or failed -> pending, same event id)")
    p.add_argument("event_id")
    p = sub.add_parser("purge", help="delete done entries published longer ago than a duration")
    p.add_argument(
        "--done-older-than",
        type=_duration,
        required=True,
        metavar="DURATION",
        help="e.g. 7d, 12h, 30m, 45s (0 purges every done entry)",
    )


def outbox_command() -> Command:
    """The ``kernel outbox`` command."""
    return Command(
        "outbox", "transactional outbox: status, replay, purge", run_outbox, add_arguments=_arguments
    )
