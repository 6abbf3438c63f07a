"""``kernel dlq list|show|replay|clear``: operate the dead-letter queue from a shell."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, TextIO

from kernel import Command
from kernel.console import ProgressBar, print_table

from ._errors import CorruptDeadLetterError, DeadLetterNotFoundError

if TYPE_CHECKING:
    from kernel import Kernel

    from ._bus import EventBus  # imported by run_dlq: the command's name, help and arguments need no bus
    from ._dlq import DeadLetterEntry


def _short(text: str, width: int) -> str:
    text = " ".join(text.split())
    return text if len(text) <= width else text[: width - 1] + "…"


def _rows(entries: list[DeadLetterEntry]) -> list[list[str]]:
    rows = [["event_id", "event", "subscription", "attempts", "last failure", "error"]]
    for e in entries:
        if e.corrupt is not None:
            rows.append(
                [
                    e.event_id,
                    e.event_name or "?",
                    _short(e.subscription, 40) or "?",
                    "-",
                    "-",
                    _short(f"CORRUPT ({e.raw_size} bytes): {e.corrupt}", 60),
                ]
            )
            continue
        rows.append(
            [
                e.event_id,
                e.event_name,
                _short(e.subscription, 40),
                str(e.attempts),
                e.last_failure_at,
                _short(f"{e.error_type.rsplit('.', 1)[-1]}: {e.error_message}", 60),
            ]
        )
    return rows


_CORRUPT_HINT = "`kernel dlq show EVENT_ID` shows one, `kernel dlq clear EVENT_ID` drops it"


def _print_fields(fields: list[tuple[str, str]], out: TextIO) -> None:
    for k, v in fields:
        print(f"{k + ':':<15} {v}", file=out)


def _show_corrupt(e: DeadLetterEntry, out: TextIO) -> None:
    """One corrupt entry: what is known of it and how to drop it."""
    _print_fields(
        [
            ("event_id", e.event_id),
            ("subscription", e.subscription or "?"),
            ("CORRUPT", e.corrupt or ""),
            ("raw size", f"{e.raw_size} bytes"),
            ("note", f"cannot be replayed; drop it with `kernel dlq clear {e.event_id}`"),
        ],
        out,
    )
    print(file=out)


async def run_dlq(args: argparse.Namespace, kernel: Kernel) -> int:
    """Entry point of ``kernel dlq``: runs the ``list``, ``show``, ``replay`` or ``clear`` action."""
    from ._bus import EventBus

    bus = kernel.registry.get(EventBus)
    return await _ACTIONS[args.dlq_command](args, bus, sys.stdout)


async def _list(args: argparse.Namespace, bus: EventBus, out: TextIO) -> int:
    """``kernel dlq list``: the newest entries as a table (or JSON)."""
    entries = await bus.get_dead_letter_queue(args.limit, event=args.event)
    if args.json:
        print(json.dumps([e.to_dict(traceback=False) for e in entries], indent=2), file=out)
        return 0
    total = await bus.dead_letter_count()
    if not entries:
        print(f"dead-letter queue is empty ({bus.adapter} adapter)", file=out)
        return 0
    print_table(_rows(entries), out)
    print(f"\n{len(entries)} shown of {total} entries ({bus.adapter} adapter)", file=out)
    corrupt = sum(e.corrupt is not None for e in entries)
    if corrupt:
        print(f"{corrupt} shown entries are corrupt: {_CORRUPT_HINT}", file=out)
    return 0


def _show_entry(e: DeadLetterEntry, out: TextIO) -> None:
    """One sound entry, field by field, with its traceback."""
    _print_fields(
        [
            ("event_id", e.event_id),
            ("event", e.event_name),
            ("subscription", e.subscription),
            ("attempts", str(e.attempts)),
            ("published", e.metadata.timestamp),
            ("source", e.metadata.source or "-"),
            ("trace_id", e.metadata.trace_id or "-"),
            ("first failure", e.first_failure_at),
            ("last failure", e.last_failure_at),
            ("error", f"{e.error_type}: {e.error_message}"),
            ("data", json.dumps(e.data, ensure_ascii=False)),
        ],
        out,
    )
    if e.traceback:
        print("traceback:\n" + e.traceback.rstrip(), file=out)
    print(file=out)


async def _show(args: argparse.Namespace, bus: EventBus, out: TextIO) -> int:
    """``kernel dlq show EVENT_ID``: every entry of one event."""
    try:
        found = await bus.get_dead_letter(args.event_id)
    except DeadLetterNotFoundError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    if args.json:
        print(json.dumps([e.to_dict() for e in found], indent=2), file=out)
        return 0
    for e in found:
        (_show_corrupt if e.corrupt is not None else _show_entry)(e, out)
    return 0


async def _replay(args: argparse.Namespace, bus: EventBus, out: TextIO) -> int:
    """``kernel dlq replay EVENT_ID|--all``: re-deliver to the subscriptions that failed."""
    if args.all:
        bar = ProgressBar("replaying", sys.stderr, piped_bar=False, piped_step=10)
        result = await bus.replay_all(event=args.event, progress=bar)
        bar.close()
        print(f"replayed {result.replayed} entries", file=out)
        if result.skipped_corrupt:
            print(
                f"warning: skipped {len(result.skipped_corrupt)} corrupt entries, left in the "
                f"dead-letter queue: {_CORRUPT_HINT}",
                file=sys.stderr,
            )
        return 0
    if not args.event_id:
        print("error: give an EVENT_ID or --all", file=sys.stderr)
        return 2
    try:
        n = await bus.replay_from_dlq(args.event_id)
    except (LookupError, CorruptDeadLetterError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    print(f"replayed {args.event_id} to {n} subscription(s)", file=out)
    return 0


async def _clear(args: argparse.Namespace, bus: EventBus, out: TextIO) -> int:
    """``kernel dlq clear EVENT_ID|--yes``: drop one event's entries, or all of them."""
    if args.event_id:
        n = await bus.delete_dead_letter(args.event_id)
    else:
        if not args.yes:
            print("error: this drops every dead-letter entry; repeat with --yes", file=sys.stderr)
            return 2
        n = await bus.clear_dead_letter_queue()
    print(f"removed {n} entries", file=out)
    return 0


_ACTIONS: dict[str, Callable[[argparse.Namespace, EventBus, TextIO], Awaitable[int]]] = {
    "list": _list,
    "show": _show,
    "replay": _replay,
    "clear": _clear,
}


def _arguments(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="dlq_command", metavar="ACTION", required=True)
    p = sub.add_parser("list", help="newest dead-letter entries, as a table")
    p.add_argument("--event", help="only this event name")
    p.add_argument("--limit", type=int, default=50, help="how many (default 50)")
    p.add_argument("--json", action="store_true", help="JSON instead of a table")
    p = sub.add_parser("show", help="one event's entries with data, error and traceback")
    p.add_argument("event_id")
    p.add_argument("--json", action="store_true")
    p = sub.add_parser("replay", help="re-deliver an event (or --all) to the subscription that failed it")
    p.add_argument("event_id", nargs="?")
    p.add_argument("--all", action="store_true", help="replay every entry (with a progress bar)")
    p.add_argument("--event", help="with --all: only this event name")
    p = sub.add_parser("clear", help="drop every entry (--yes), or one event's entries")
    p.add_argument("event_id", nargs="?")
    p.add_argument("--yes", action="store_true", help="confirm dropping the whole queue")


def dlq_command() -> Command:
    """The ``kernel dlq`` command."""
    return Command(
        "dlq",
        "dead-letter queue of the event bus: list, show, replay, clear",
        run_dlq,
        add_arguments=_arguments,
    )
