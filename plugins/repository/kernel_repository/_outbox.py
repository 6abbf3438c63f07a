"""The transactional outbox: events written in the same MongoDB transaction as the document they describe.

Entries live in one collection (``[plugins.repository] outbox_collection``). A relay (the ``outbox``
plugin) claims batches with a lease, publishes them and marks them done; several relays share the
work without a leader. Field by field:

- ``_id``: the event id; ``name``, ``data``, ``trace_id``, ``source``, ``occurred_at``: the event
- ``traceparent``, ``tracestate``: the W3C trace context the entry was written in (with tracing:
  see :meth:`OutboxStore.set_propagation`); absent otherwise
- ``aggregate_id``: the document id (order is kept per aggregate); ``seq``: the order key
- ``status``: ``pending`` | ``done`` | ``failed``; ``attempts``, ``next_attempt_at``, ``last_error``
- ``lease_owner``, ``lease_until``, ``claim``: who holds it, until when, and which claim
- ``created_at``: when it was written; ``done_at``: when it was published (the TTL index's field)
"""

from __future__ import annotations

import json
import logging
import time
import uuid
from collections.abc import Callable, Iterable, Mapping, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any, Literal

import attrs
import pymongo.errors
from kernel_errors import DatabaseError, NotFoundError, ValidationError
from motor.motor_asyncio import AsyncIOMotorDatabase

from kernel.logging import get_trace_id, new_trace_id

from ._documents import now
from ._observe import TracePropagation
from ._operation import DatabaseOperation, QueryMetrics
from ._transactions import Session

log = logging.getLogger("kernel.plugins.repository")

EntryStatus = Literal["pending", "done", "failed"]
"""``pending`` (to publish), ``done`` (published), ``failed`` (the bus rejected it for good)."""

_ENCODER = json.JSONEncoder(separators=(",", ":"), allow_nan=False, ensure_ascii=False)
_SCAN_PAGE = 200
"""Pending entries read per page while looking for claimable ones."""
_MAX_SCAN_PAGES = 50


def _utcnow() -> datetime:
    return datetime.now(UTC)


def _check_text(what: str) -> Callable[[Any, attrs.Attribute[Any], Any], None]:
    def check(_inst: Any, attribute: attrs.Attribute[Any], value: Any) -> None:
        if value is None and attribute.name != "name" and attribute.name != "event_id":
            return
        if not isinstance(value, str) or not value or "\t" in value or "\n" in value:
            raise ValidationError(
                f"OutboxEvent.{attribute.name} must be a non-empty string without tabs or newlines, "
                f"got {value!r}",
                {"field": attribute.name, "what": what},
            )

    return check


def _check_when(_inst: Any, attribute: attrs.Attribute[datetime], value: datetime) -> None:
    if not isinstance(value, datetime) or value.tzinfo is None or value.utcoffset() is None:
        raise ValidationError(
            f"OutboxEvent.occurred_at must be a timezone-aware datetime (UTC), got {value!r}",
            {"field": "occurred_at"},
        )


@attrs.frozen
class OutboxEvent:
    """An event to publish once the write it belongs to commits.

    >>> OutboxEvent("user.created", {"user_id": "66f0..."})   # doctest: +SKIP

    ``event_id`` is what consumers see as ``EventMetadata.event_id`` (dedupe on it);
    ``trace_id`` ``None`` takes the current trace id at write time (else a new one);
    ``aggregate_id`` ``None`` takes the written document's id (order is kept per aggregate).
    """

    name: str = attrs.field(validator=_check_text("event name"))
    data: Any
    """JSON-serializable (checked when written)."""
    event_id: str = attrs.field(factory=lambda: uuid.uuid4().hex, validator=_check_text("event id"))
    trace_id: str | None = attrs.field(default=None, validator=_check_text("trace id"))
    occurred_at: datetime = attrs.field(factory=_utcnow, validator=_check_when)
    aggregate_id: str | None = attrs.field(default=None, validator=_check_text("aggregate id"))
    source: str | None = attrs.field(default=None, validator=_check_text("source"))


Events = Sequence[OutboxEvent] | Callable[[Any], Iterable[OutboxEvent]]
"""``events=`` of a repository write: a list, or a callable of the written document returning them."""


@attrs.frozen
class OutboxEntry:
    """One stored outbox entry, as the relay and ``kernel outbox`` see it."""

    event_id: str
    name: str
    data: Any
    trace_id: str | None
    occurred_at: datetime
    aggregate_id: str | None
    source: str | None
    status: EntryStatus
    seq: int
    attempts: int
    next_attempt_at: datetime
    created_at: datetime
    last_error: str | None = None
    lease_owner: str | None = None
    lease_until: datetime | None = None
    claim: str | None = None
    """The claim that holds it (set by :meth:`OutboxStore.claim`)."""
    done_at: datetime | None = None
    traceparent: str | None = None
    """W3C ``traceparent`` of the span current when the entry was written (tracing on), else None."""
    tracestate: str | None = None
    """W3C ``tracestate`` that went with it, if any."""
    taken_over: bool = False
    """Set by :meth:`OutboxStore.claim` when the entry was under an earlier claim's lease that ran out
    unsettled: that holder (a relay that died or stalled) may have published it already."""

    @property
    def trace_context(self) -> dict[str, str]:
        """``traceparent`` and ``tracestate`` as W3C headers (``{}`` without them)."""
        carrier: dict[str, str] = {}
        if self.traceparent is not None:
            carrier["traceparent"] = self.traceparent
            if self.tracestate is not None:
                carrier["tracestate"] = self.tracestate
        return carrier

    @classmethod
    def from_document(cls, doc: Mapping[str, Any]) -> OutboxEntry:
        """The entry stored as ``doc``."""
        return cls(
            event_id=doc["_id"],
            name=doc["name"],
            data=doc.get("data"),
            trace_id=doc.get("trace_id"),
            occurred_at=doc["occurred_at"],
            aggregate_id=doc.get("aggregate_id"),
            source=doc.get("source"),
            status=doc["status"],
            seq=int(doc["seq"]),
            attempts=int(doc.get("attempts") or 0),
            next_attempt_at=doc["next_attempt_at"],
            created_at=doc["created_at"],
            last_error=doc.get("last_error"),
            lease_owner=doc.get("lease_owner"),
            lease_until=doc.get("lease_until"),
            claim=doc.get("claim"),
            done_at=doc.get("done_at"),
            traceparent=doc.get("traceparent"),
            tracestate=doc.get("tracestate"),
        )


@attrs.frozen
class OutboxStatus:
    """Counts and lag of the outbox (``kernel outbox status``, the relay's metrics and health)."""

    backlog: int
    """Entries still to publish (pending), leased or not."""
    in_flight: int
    """Pending entries under a live lease (a relay is publishing them)."""
    retrying: int
    """Pending entries that failed at least once."""
    done: int
    failed: int
    """Entries the bus rejected for good (``kernel outbox replay`` sends them again)."""
    oldest_pending_at: datetime | None
    """When the oldest pending entry was written."""
    checked_at: datetime

    @property
    def lag_seconds(self) -> float:
        """Age of the oldest pending entry (0 when nothing is pending)."""
        if self.oldest_pending_at is None:
            return 0.0
        return max(0.0, (self.checked_at - self.oldest_pending_at).total_seconds())

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form."""
        return {
            "backlog": self.backlog,
            "in_flight": self.in_flight,
            "retrying": self.retrying,
            "done": self.done,
            "failed": self.failed,
            "oldest_pending_at": None
            if self.oldest_pending_at is None
            else self.oldest_pending_at.isoformat(),
            "lag_seconds": round(self.lag_seconds, 3),
        }


class TransactionsUnsupportedError(DatabaseError):
    """The server cannot run transactions (a standalone ``mongod``): outbox writes need a replica set."""

    error_code = "TRANSACTIONS_UNSUPPORTED"

    def __init__(self, operation: str, collection: str, detail: str = "") -> None:
        super().__init__(
            "writes with events need MongoDB transactions, which this server does not support "
            "(a standalone mongod): run it as a replica set (a single node is enough: "
            "`mongod --replSet rs0` then `rs.initiate()`)",
            {"operation": operation, "collection": collection},
            internal={"driver_error": detail} if detail else None,
        )


class OutboxEntryNotFoundError(NotFoundError):
    """No outbox entry has this event id."""

    def __init__(self, event_id: str) -> None:
        super().__init__(f"outbox entry {event_id!r}", {"event_id": event_id})
        self.event_id = event_id


def transactions_unsupported(exc: BaseException) -> bool:
    """Whether ``exc`` is the server refusing a transaction because it is standalone (code 20)."""
    while exc is not None:
        if isinstance(exc, pymongo.errors.OperationFailure) and (
            exc.code == 20 or "Transaction numbers are only allowed" in str(exc)
        ):
            return True
        exc = exc.__cause__ or exc.__context__  # type: ignore[assignment]
    return False


_last_seq = 0


def next_seq() -> int:
    """A process-monotonic order key: nanoseconds since the epoch, strictly increasing here."""
    global _last_seq
    seq = time.time_ns()
    if seq <= _last_seq:
        seq = _last_seq + 1
    _last_seq = seq
    return seq


def _document(
    event: OutboxEvent, aggregate_id: str | None, stamp: datetime, context: Mapping[str, str]
) -> dict[str, Any]:
    try:
        _ENCODER.encode(event.data)
    except (TypeError, ValueError) as exc:
        raise ValidationError(
            f"outbox event {event.name!r}: data is not JSON-serializable ({exc})",
            {"field": "events", "event": event.name},
        ) from None
    return {
        "_id": event.event_id,
        "name": event.name,
        "data": event.data,
        "trace_id": event.trace_id or get_trace_id() or new_trace_id(),
        "source": event.source,
        "occurred_at": event.occurred_at,
        "aggregate_id": event.aggregate_id if event.aggregate_id is not None else aggregate_id,
        "seq": next_seq(),
        "status": "pending",
        "attempts": 0,
        "next_attempt_at": stamp,
        "last_error": None,
        "lease_owner": None,
        "lease_until": None,
        "claim": None,
        "created_at": stamp,
        "done_at": None,
        **context,
    }


def _claimable(now: datetime, ids: list[str]) -> dict[str, Any]:
    """The filter of the entries ``ids`` that are pending, due, and under no live lease.

    One ``$and`` of clauses: nx-27017 ignores the keys that follow a top-level ``$or``.
    """
    return {
        "$and": [
            {"_id": {"$in": ids}},
            {"status": "pending"},
            {"next_attempt_at": {"$lte": now}},
            {"$or": [{"lease_until": None}, {"lease_until": {"$lte": now}}]},
        ]
    }


class OutboxStore:
    """The outbox collection: add entries in a transaction; claim, publish-mark, reschedule, inspect.

    ``RepositoryManager.outbox`` is the one the repositories of a kernel write to. Claims are
    leases: an entry is held by one claim until ``lease_until``; a holder that dies simply lets
    it expire and another relay takes it over. Order per aggregate: an entry is never claimed
    while an earlier entry (by ``seq``) of its ``aggregate_id`` is still pending and not part of
    the same claim.
    """

    def __init__(
        self,
        database: AsyncIOMotorDatabase[Any],
        collection: str = "outbox",
        *,
        metrics: QueryMetrics | None = None,
        done_ttl: float = 7 * 86_400.0,
    ) -> None:
        self.database = database
        self.collection_name = collection
        self.collection = database[collection]
        self.metrics = metrics
        self.done_ttl = done_ttl
        """Seconds a done entry is kept before the TTL index removes it."""
        self._ready = False
        self._listeners: list[Callable[[], object]] = []
        self.propagation: TracePropagation | None = None
        """Carries the trace context from writers to the relay (tracing); see :meth:`set_propagation`."""

    def set_propagation(self, propagation: TracePropagation | None) -> None:
        """From now on, entries keep the trace context ``propagation`` injects when they are written,
        and a relay publishes each in its entry's context (None: stop; entries keep none)."""
        self.propagation = propagation

    def _op(self, name: str) -> DatabaseOperation:
        return DatabaseOperation(f"outbox.{name}", self.collection_name, self.metrics)

    # ------------------------------------------------------------------ setup

    async def ensure_indexes(self) -> None:
        """Create the collection's indexes (also the collection: transactions need it to exist).

        ``(status, seq)`` serves claims and status; ``done_at`` is a TTL index (``done_ttl``):
        only done entries have a ``done_at`` date, so only they expire.
        """
        with self._op("ensure_indexes"):
            await self.collection.create_index([("status", 1), ("seq", 1)], name="outbox_status_seq")
            try:
                await self.collection.create_index(
                    "done_at", name="outbox_done_ttl", expireAfterSeconds=int(self.done_ttl)
                )
            except pymongo.errors.OperationFailure as exc:  # the TTL changed: adjust the index in place
                if exc.code not in (85, 86):
                    raise
                await self.database.command(
                    {
                        "collMod": self.collection_name,
                        "index": {"name": "outbox_done_ttl", "expireAfterSeconds": int(self.done_ttl)},
                    }
                )
        self._ready = True

    async def ensure_ready(self) -> None:
        """:meth:`ensure_indexes` once per store (before the first transaction that writes entries)."""
        if not self._ready:
            await self.ensure_indexes()

    async def check_transactions(self) -> None:
        """Run one empty transaction on the collection; raises :class:`TransactionsUnsupportedError`."""
        client = self.database.client
        try:
            async with await client.start_session() as session:
                session.start_transaction()
                try:
                    await self.collection.find_one({"_id": "__probe__"}, session=session)
                finally:
                    await session.abort_transaction()
        except Exception as exc:
            if transactions_unsupported(exc):
                raise TransactionsUnsupportedError(
                    "check_transactions", self.collection_name, str(exc)
                ) from exc
            with self._op("check_transactions"):
                raise

    # ------------------------------------------------------------------ writing

    async def add(
        self,
        events: Iterable[OutboxEvent],
        *,
        session: Session | None,
        aggregate_id: str | None = None,
    ) -> list[str]:
        """Insert ``events`` as pending entries in ``session``'s transaction; their event ids.

        ``aggregate_id`` fills in the events that name none. Pass the session of the
        transaction that writes the documents: the entries commit (or vanish) with them.
        """
        stamp = now()
        context = self.propagation.inject() if self.propagation is not None else {}
        docs = [_document(e, aggregate_id, stamp, context) for e in events]
        if not docs:
            return []
        with self._op("add"):
            if len(docs) == 1:
                await self.collection.insert_one(docs[0], session=session)
            else:
                await self.collection.insert_many(docs, session=session)
        return [d["_id"] for d in docs]

    def add_listener(self, callback: Callable[[], object]) -> Callable[[], None]:
        """Call ``callback()`` after each commit of a write with events here; returns the remover."""
        self._listeners.append(callback)

        def remove() -> None:
            if callback in self._listeners:
                self._listeners.remove(callback)

        return remove

    def notify(self) -> None:
        """Entries were committed: wake the listeners (a relay in this process publishes at once)."""
        for callback in list(self._listeners):
            try:
                callback()
            except Exception:  # a listener must never fail the write that committed
                log.exception("outbox: listener failed")

    # ------------------------------------------------------------------ the relay's side

    async def claim(self, owner: str, *, limit: int = 100, lease: float = 30.0) -> list[OutboxEntry]:
        """Lease up to ``limit`` due entries to ``owner`` for ``lease`` seconds, in ``seq`` order.

        Entries behind an earlier pending entry of the same aggregate that this claim did not get
        (leased elsewhere, waiting for a retry, or taken by a concurrent claim) are skipped. An
        entry taken from an earlier claim whose lease ran out is marked ``taken_over``.
        """
        if limit < 1 or lease <= 0:
            raise ValueError(f"claim needs limit >= 1 and lease > 0, got {limit}, {lease}")
        current = _utcnow()
        wanted = await self._candidates(current, limit)
        if not wanted:
            return []
        claim_id = uuid.uuid4().hex
        query = _claimable(current, [d["_id"] for d in wanted])
        with self._op("claim"):
            await self.collection.update_many(
                query,
                {
                    "$set": {
                        "lease_owner": owner,
                        "lease_until": current + timedelta(seconds=lease),
                        "claim": claim_id,
                    }
                },
            )
            got = await self.collection.find(
                {"claim": claim_id, "status": "pending"}, sort=[("seq", 1)]
            ).to_list(None)
        held = {d["_id"] for d in got}
        # a concurrent claim took an earlier entry of an aggregate: give back our later ones of it
        missed: set[str] = set()
        give_back: list[str] = []
        for d in wanted:
            agg = d.get("aggregate_id")
            if agg is None:
                continue
            if d["_id"] not in held:
                missed.add(agg)
            elif agg in missed:
                give_back.append(d["_id"])
        if give_back:
            with self._op("release"):
                await self.collection.update_many(
                    {"_id": {"$in": give_back}, "claim": claim_id},
                    {"$set": {"lease_owner": None, "lease_until": None, "claim": None}},
                )
            returned = set(give_back)
            got = [d for d in got if d["_id"] not in returned]
        # A candidate still carrying a lease had it run out: its holder never settled it.
        expired = {d["_id"] for d in wanted if d.get("lease_until") is not None}
        entries = [OutboxEntry.from_document(d) for d in got]
        return [attrs.evolve(e, taken_over=True) if e.event_id in expired else e for e in entries]

    async def _candidates(self, current: datetime, limit: int) -> list[dict[str, Any]]:
        """Pending entries this claim may take, in ``seq`` order (aggregates behind a held entry skipped)."""
        blocked: set[str] = set()
        wanted: list[dict[str, Any]] = []
        after: tuple[int, str] | None = None
        for _page in range(_MAX_SCAN_PAGES):
            query: dict[str, Any] = {"status": "pending"}
            if after is not None:
                page = [{"seq": {"$gt": after[0]}}, {"seq": after[0], "_id": {"$gt": after[1]}}]
                query = {"$and": [query, {"$or": page}]}
            with self._op("scan"):
                docs = await self.collection.find(
                    query,
                    {"data": 0},
                    sort=[("seq", 1), ("_id", 1)],
                    limit=_SCAN_PAGE,
                ).to_list(None)
            for d in docs:
                agg = d.get("aggregate_id")
                if agg is not None and agg in blocked:
                    continue
                lease_until = d.get("lease_until")
                free = (lease_until is None or lease_until <= current) and d["next_attempt_at"] <= current
                if not free:
                    if agg is not None:
                        blocked.add(agg)
                    continue
                wanted.append(d)
                if len(wanted) >= limit:
                    return wanted
            if len(docs) < _SCAN_PAGE:
                break
            after = (int(docs[-1]["seq"]), docs[-1]["_id"])
        return wanted

    async def mark_done(self, entries: Sequence[OutboxEntry]) -> int:
        """Mark published entries done (only those their claim still holds); how many were.

        An entry missing from the count was taken over by another relay after its lease
        expired: it was (or will be) published twice.
        """
        if not entries:
            return 0
        done = 0
        stamp = now()
        with self._op("mark_done"):
            for claim_id, ids in _by_claim(entries).items():
                result = await self.collection.update_many(
                    {"_id": {"$in": ids}, "claim": claim_id, "status": "pending"},
                    {
                        "$set": {
                            "status": "done",
                            "done_at": stamp,
                            "lease_owner": None,
                            "lease_until": None,
                            "claim": None,
                        }
                    },
                )
                done += int(result.modified_count)
        return done

    async def release(self, entries: Sequence[OutboxEntry]) -> int:
        """Give claimed entries back unpublished (lease cleared, no attempt counted); how many."""
        if not entries:
            return 0
        n = 0
        with self._op("release"):
            for claim_id, ids in _by_claim(entries).items():
                result = await self.collection.update_many(
                    {"_id": {"$in": ids}, "claim": claim_id, "status": "pending"},
                    {"$set": {"lease_owner": None, "lease_until": None, "claim": None}},
                )
                n += int(result.modified_count)
        return n

    async def reschedule(self, entry: OutboxEntry, error: str, *, delay: float) -> bool:
        """A publish failed: count the attempt, keep ``error``, retry after ``delay`` s; False if not held."""
        return await self._give_up_claim(
            "reschedule", entry, error, next_attempt_at=_utcnow() + timedelta(seconds=delay)
        )

    async def mark_failed(self, entry: OutboxEntry, error: str) -> bool:
        """The bus rejected the entry for good (e.g. too large): status ``failed``, kept for an operator."""
        return await self._give_up_claim("mark_failed", entry, error, status="failed")

    async def _give_up_claim(self, op: str, entry: OutboxEntry, error: str, **fields: object) -> bool:
        """Count a failed attempt on ``entry`` (still pending, still held by its claim), keep ``error``,
        release the claim and set ``fields``; False if the claim is no longer held."""
        with self._op(op):
            result = await self.collection.update_one(
                {"_id": entry.event_id, "claim": entry.claim, "status": "pending"},
                {
                    "$set": {
                        **fields,
                        "last_error": error[:2000],
                        "lease_owner": None,
                        "lease_until": None,
                        "claim": None,
                    },
                    "$inc": {"attempts": 1},
                },
            )
        return bool(result.modified_count)

    # ------------------------------------------------------------------ operating

    async def get(self, event_id: str) -> OutboxEntry | None:
        """The entry of ``event_id``, or ``None``."""
        with self._op("get"):
            doc = await self.collection.find_one({"_id": event_id})
        return None if doc is None else OutboxEntry.from_document(doc)

    async def backlog(self) -> tuple[int, datetime | None]:
        """Pending entries and when the oldest was written: two queries (:meth:`status` runs six)."""
        with self._op("backlog"):
            first = await self.collection.find_one(
                {"status": "pending"}, {"created_at": 1}, sort=[("seq", 1), ("_id", 1)]
            )
            if first is None:
                return 0, None
            return await self.collection.count_documents({"status": "pending"}), first["created_at"]

    async def status(self) -> OutboxStatus:
        """Backlog, in-flight, retrying, done and failed counts, and the oldest pending entry's time."""
        current = _utcnow()
        with self._op("status"):
            backlog = await self.collection.count_documents({"status": "pending"})
            in_flight = await self.collection.count_documents(
                {"status": "pending", "lease_until": {"$gt": current}}
            )
            retrying = await self.collection.count_documents({"status": "pending", "attempts": {"$gt": 0}})
            done = await self.collection.count_documents({"status": "done"})
            failed = await self.collection.count_documents({"status": "failed"})
            oldest = None
            if backlog:
                first = await self.collection.find_one(
                    {"status": "pending"}, {"created_at": 1}, sort=[("seq", 1), ("_id", 1)]
                )
                oldest = None if first is None else first["created_at"]
        return OutboxStatus(backlog, in_flight, retrying, done, failed, oldest, current)

    async def replay(self, event_id: str) -> OutboxEntry:
        """Publish ``event_id`` again (done or failed -> pending, same event id); raises if unknown.

        Consumers see the original event id: idempotent ones skip what they handled already.
        """
        with self._op("replay"):
            result = await self.collection.update_one(
                {"_id": event_id},
                {
                    "$set": {
                        "status": "pending",
                        "attempts": 0,
                        "next_attempt_at": now(),
                        "last_error": None,
                        "lease_owner": None,
                        "lease_until": None,
                        "claim": None,
                        "done_at": None,
                    }
                },
            )
        if not result.matched_count:
            raise OutboxEntryNotFoundError(event_id)
        self.notify()
        entry = await self.get(event_id)
        if entry is None:  # purged in between
            raise OutboxEntryNotFoundError(event_id)
        return entry

    async def purge(self, *, done_older_than: timedelta | float) -> int:
        """Delete done entries published over ``done_older_than`` (seconds or timedelta) ago; how many."""
        age = (
            done_older_than if isinstance(done_older_than, timedelta) else timedelta(seconds=done_older_than)
        )
        if age < timedelta(0):
            raise ValidationError(
                f"done_older_than must not be negative, got {age}", {"field": "done_older_than"}
            )
        with self._op("purge"):
            result = await self.collection.delete_many(
                {"status": "done", "done_at": {"$lte": _utcnow() - age}}
            )
        return int(result.deleted_count)


def _by_claim(entries: Sequence[OutboxEntry]) -> dict[str | None, list[str]]:
    out: dict[str | None, list[str]] = {}
    for e in entries:
        out.setdefault(e.claim, []).append(e.event_id)
    return out
