"""Events: subscriptions with lag and pending counts; the dead-letter queue, its entries and actions."""

from __future__ import annotations

from typing import TYPE_CHECKING, Protocol, runtime_checkable

from ._html import Safe, badge, dl, h, join, link, pre, pretty, scrub, table
from ._http import BadRequest, Confirm, Done, NotFound, Page, PageHandler, Request

if TYPE_CHECKING:
    from kernel_eventbus import DeadLetterEntry, EventBus

SCAN = 2000
"""Newest dead-letter entries looked at when a text filter is given."""


@runtime_checkable
class Backlog(Protocol):
    """A bus adapter that reports a subscription's backlog (the redis adapter's ``pending``)."""

    async def pending(self, subscription: str) -> dict[str, int]:
        """``lag`` (unread), ``pending`` (unacknowledged), ``scheduled`` retries."""
        ...


def _matches(e: DeadLetterEntry, text: str) -> bool:
    if not text:
        return True
    hay = f"{e.event_id} {e.event_name} {e.subscription} {e.error_type} {e.error_message} {e.data!r}"
    return text.lower() in hay.lower()


class EventsSection:
    """The ``events`` pages and actions, on the eventbus plugin's :class:`~kernel_eventbus.EventBus`."""

    key = "events"
    actions = frozenset({"dlq.replay", "dlq.delete", "dlq.replay-all", "dlq.clear"})

    def __init__(self, bus: EventBus, page_size: int) -> None:
        self.bus = bus
        self.page_size = page_size

    def pages(self) -> dict[str, PageHandler]:
        """``/events`` and ``/dlq?id=``."""
        return {"/events": self.index, "/dlq": self.entry}

    async def index(self, req: Request) -> Page:
        """Subscriptions with their backlog, and the dead-letter queue with filters."""
        rows: list[list[object]] = []
        for sub in sorted(self.bus.subscriptions, key=lambda s: (s.event, s.name)):
            backlog = await self.bus.pending(sub.name) if isinstance(self.bus, Backlog) else {}
            rows.append(
                [
                    sub.event,
                    sub.name,
                    sub.concurrency,
                    sub.policy.max_retries,
                    *(backlog.get(k, "n/a") for k in ("lag", "pending", "scheduled")),
                ]
            )
        subs = table(
            ["event", "subscription", "concurrency", "max retries", "lag", "pending", "scheduled retries"],
            rows,
            empty="no subscriptions in this process",
        )
        body = h(
            "<p>Adapter: <b>{adapter}</b>. Subscriptions of this process; lag and pending are per "
            "consumer group (shared by every process).</p>{subs}<h2>Dead-letter queue</h2>{dlq}",
            adapter=self.bus.adapter or type(self.bus).__name__,
            subs=subs,
            dlq=await self._dlq(req),
        )
        return Page("Events", body, self.key)

    async def _dlq(self, req: Request) -> Safe:
        event, text, page = req.arg("event"), req.arg("text"), req.page_number()
        total = await self.bus.dead_letter_count()
        want = page * self.page_size
        entries = await self.bus.get_dead_letter_queue(SCAN if text else want, event=event or None)
        entries = [e for e in entries if _matches(e, text)]
        shown = entries[(page - 1) * self.page_size : want]
        filters = h(
            '<form method="get" class="filters" action="{action}"><label>event name <input name="event" '
            'value="{event}"></label><label>text <input name="text" value="{text}"></label>'
            '<button type="submit">filter</button></form>',
            action=req.href("/events"),
            event=event,
            text=text,
        )
        controls = join(
            [
                req.post(
                    "dlq.replay-all", "replay all" + (f" of {event}" if event else ""), {"event": event}
                ),
                req.post("dlq.clear", "clear the DLQ", danger=True),
            ],
            " ",
        )
        rows = [self._row(req, e) for e in shown]
        more = (
            link(req.href("/events", event=event, text=text, page=page + 1), "next page →")
            if len(entries) > want
            else Safe("")
        )
        listing = table(
            ["event id", "event", "subscription", "attempts", "last failure", "error", ""],
            rows,
            empty="the dead-letter queue is empty" if not (event or text) else "no entry matches the filter",
        )
        return h(
            "<p>{total} entr{ies} in all.</p><p>{controls}</p>{filters}{listing}{more}",
            total=total,
            ies="y" if total == 1 else "ies",
            controls=controls,
            filters=filters,
            listing=listing,
            more=more,
        )

    def _row(self, req: Request, e: DeadLetterEntry) -> list[object]:
        actions = [req.post("dlq.delete", "delete", {"id": e.event_id}, danger=True)]
        if e.corrupt is None:
            actions.insert(0, req.post("dlq.replay", "replay", {"id": e.event_id}))
        error = (
            badge("corrupt", "bad") if e.corrupt is not None else scrub(f"{e.error_type}: {e.error_message}")
        )
        return [
            link(req.href("/dlq", id=e.event_id), e.event_id),
            e.event_name,
            e.subscription,
            e.attempts,
            e.last_failure_at,
            error,
            join(actions),
        ]

    async def entry(self, req: Request) -> Page:
        """Every dead-letter entry of one event: payload, error, attempts, trace id, traceback."""
        from kernel_eventbus import DeadLetterNotFoundError

        event_id = req.arg("id")
        try:
            entries = await self.bus.get_dead_letter(event_id)
        except DeadLetterNotFoundError as exc:
            raise NotFound(f"no dead-letter entry for event {event_id!r}") from exc
        parts: list[Safe] = [h("<p>{actions}</p>", actions=self._row(req, entries[0])[-1])]
        for e in entries:
            meta = e.metadata
            parts.append(h("<h2>Subscription {s}</h2>", s=e.subscription or "(unknown)"))
            parts.append(
                dl(
                    [
                        ("event", e.event_name),
                        ("event id", e.event_id),
                        ("trace id", meta.trace_id or ""),
                        ("source", meta.source or ""),
                        ("published", meta.timestamp),
                        ("attempts", e.attempts),
                        ("first failure", e.first_failure_at),
                        ("last failure", e.last_failure_at),
                        ("replayed at", meta.replayed_at or "never"),
                        ("error", scrub(f"{e.error_type}: {e.error_message}")),
                        ("corrupt", e.corrupt or "no"),
                    ]
                )
            )
            parts.append(
                h(
                    "<h3>Payload</h3>{p}<h3>Traceback</h3>{t}",
                    p=pre(pretty(e.data)),
                    t=pre(scrub(e.traceback or "none")),
                )
            )
        return Page(f"Dead letter {event_id}", join(parts), self.key)

    # ------------------------------------------------------------------ actions

    async def act(self, req: Request, action: str) -> Done | Confirm:
        """Run ``action`` (``dlq.*``) with the posted form."""
        if action == "dlq.replay":
            return await self._replay(self._id(req))
        if action == "dlq.delete":
            event_id = self._id(req)
            n = await self.bus.delete_dead_letter(event_id)
            return Done(
                f"{n} dead-letter entr{'y' if n == 1 else 'ies'} of event {event_id} deleted",
                f"dlq {event_id}",
                ok=n > 0,
            )
        if action == "dlq.replay-all":
            return await self._replay_all(req)
        if action == "dlq.clear":
            if req.field("confirm") != "yes":
                n = await self.bus.dead_letter_count()
                return Confirm(
                    "Clear the dead-letter queue",
                    f"Delete all {n} dead-letter entries? This cannot be undone.",
                    "dlq",
                )
            n = await self.bus.clear_dead_letter_queue()
            return Done(f"dead-letter queue cleared: {n} entries deleted", "dlq")
        raise NotFound(f"no action {action!r}")

    @staticmethod
    def _id(req: Request) -> str:
        event_id = req.field("id")
        if not event_id:
            raise BadRequest("the form has no event id")
        return event_id

    async def _replay(self, event_id: str) -> Done:
        from kernel_eventbus import EventBusError

        try:
            n = await self.bus.replay_from_dlq(event_id)
        except (EventBusError, LookupError) as exc:
            return Done(f"event {event_id} not replayed: {exc}", f"dlq {event_id}", ok=False)
        return Done(f"event {event_id} replayed to {n} subscription(s)", f"dlq {event_id}")

    async def _replay_all(self, req: Request) -> Done | Confirm:
        event = req.field("event") or None
        target = f"dlq event={event}" if event else "dlq"
        if req.field("confirm") != "yes":
            entries = await self.bus.get_dead_letter_queue(1_000_000_000, event=event)
            sound = sum(1 for e in entries if e.corrupt is None)
            question = f"Replay {sound} dead-letter entr{'y' if sound == 1 else 'ies'}" + (
                f" of event {event}" if event else ""
            )
            skipped = len(entries) - sound
            question += f" ({skipped} corrupt ones stay)?" if skipped else "?"
            return Confirm("Replay dead letters", question, target, {"event": event or ""})
        result = await self.bus.replay_all(event=event)
        note = f", {len(result.skipped_corrupt)} corrupt skipped" if result.skipped_corrupt else ""
        return Done(f"{result.replayed} dead-letter entries replayed{note}", target)
