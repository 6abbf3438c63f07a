"""``BaseRepository[Model]``: CRUD, pagination, audit fields, schema versions, transactions (odmantic)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterable, Mapping
from typing import Any, ClassVar, Generic, TypeVar, get_args, get_origin

import anyio
from bson import ObjectId
from kernel_errors import AppError, DatabaseError, ValidationError
from motor.motor_asyncio import AsyncIOMotorClient, AsyncIOMotorCollection
from odmantic import AIOEngine, Model
from pymongo import ReturnDocument

from ._documents import Projection, WriteInput, now, projection
from ._filters import Filter, SortSpec, normalize_sort, prepare_filter
from ._observe import QueryObserver
from ._operation import DatabaseOperation, QueryMetrics
from ._outbox import Events, OutboxStore, TransactionsUnsupportedError, transactions_unsupported
from ._pages import CursorPage, Keyset, Page, Pagination, check_limit, check_page, check_skip_limit
from ._references import nest_references, populate_references, reference_fields
from ._schema import MigrationReport, Schema, Upgrade, check_steps
from ._transactions import Session, run_transaction

M = TypeVar("M", bound=Model)
T = TypeVar("T")
A = TypeVar("A")
B = TypeVar("B")


async def _concurrently(first: Awaitable[A], second: Awaitable[B]) -> tuple[A, B]:
    """Await both at once (one round-trip of latency instead of two); a failure is raised as itself."""
    results: list[Any] = [None, None]

    async def run(index: int, awaitable: Awaitable[Any]) -> None:
        results[index] = await awaitable

    try:
        async with anyio.create_task_group() as tg:
            tg.start_soon(run, 0, first)
            tg.start_soon(run, 1, second)
    except BaseExceptionGroup as group:
        # Callers map driver errors by type: hand them the first failure, not the group.
        leaf: BaseException = group
        while isinstance(leaf, BaseExceptionGroup):
            leaf = leaf.exceptions[0]
        raise leaf from leaf.__cause__
    return results[0], results[1]


class BaseRepository(Generic[M]):
    """Data access for one odmantic model.

    >>> class UserRepository(BaseRepository[User]):     # doctest: +SKIP
    ...     schema_version = 2
    ...     upgrades = {1: lambda doc: {**doc, "name": doc.pop("full_name", "")}}
    ...     async def find_by_email(self, email: str) -> User | None:
    ...         return await self.find_one(User.email == email)

    Build it with ``RepositoryManager.repository(UserRepository)`` (metrics and
    transaction settings wired in) or ``UserRepository(engine)``. Every method
    raises the ``errors`` plugin's types: ``ValidationError`` (bad id, data,
    filter), ``ConflictError`` (duplicate key), ``ServiceUnavailableError`` (server
    unreachable) and ``DatabaseError`` (any other database failure).
    """

    model: ClassVar[type[Model]]
    """The odmantic model stored in this repository's collection (taken from ``BaseRepository[Model]``)."""
    schema_version: ClassVar[int] = 1
    """Version stamped on every write; documents without one are version 1."""
    upgrades: ClassVar[Mapping[int, Upgrade]] = {}
    """``{n: step}``: ``step(doc)`` turns a version-``n`` document into version ``n + 1``."""
    max_limit: ClassVar[int] = 100
    """Largest ``limit`` :meth:`find_paginated` and :meth:`find_after` accept."""

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if "model" not in cls.__dict__:
            for base in getattr(cls, "__orig_bases__", ()):
                if get_origin(base) is BaseRepository:
                    (arg,) = get_args(base)
                    if isinstance(arg, type) and issubclass(arg, Model):
                        cls.model = arg
        check_steps(cls.__name__, cls.schema_version, cls.upgrades)

    def __init__(
        self,
        engine: AIOEngine,
        *,
        metrics: QueryMetrics | None = None,
        transaction_attempts: int = 3,
        outbox: OutboxStore | None = None,
    ) -> None:
        if not hasattr(type(self), "model"):
            raise TypeError(
                f"{type(self).__name__} names no model: subclass BaseRepository[YourModel] or set `model`"
            )
        self.engine = engine
        self.client: AsyncIOMotorClient[Any] = engine.client
        self.collection_name: str = self.model.__collection__
        self.collection: AsyncIOMotorCollection[Any] = engine.database[self.collection_name]
        self.metrics = metrics
        self.transaction_attempts = transaction_attempts
        self.outbox = outbox if outbox is not None else OutboxStore(engine.database, metrics=metrics)
        """Where ``events=`` of a write go (the manager's :attr:`RepositoryManager.outbox`)."""
        self._schema = Schema(self.schema_version, self.upgrades)
        self._input: WriteInput[M] = WriteInput(self.model)  # type: ignore[arg-type]
        self._oid_ids = self.model.__primary_field__ == "id"  # odmantic's default ObjectId primary key
        self._references = reference_fields(self.model)

    # ------------------------------------------------------------------ plumbing

    observer: QueryObserver | None = None
    """Told about every operation (tracing); set by :meth:`RepositoryManager.set_observer`."""

    def _operation(self, name: str) -> DatabaseOperation:
        """Time ``name`` on this collection into the metrics and map the driver's errors."""
        if self.observer is not None:
            return DatabaseOperation(
                name, self.collection_name, self.metrics, self.observer, self.engine.database.name
            )
        return DatabaseOperation(name, self.collection_name, self.metrics)

    def _id(self, value: Any) -> Any:
        if not self._oid_ids or isinstance(value, ObjectId):
            return value
        if isinstance(value, str) and ObjectId.is_valid(value):
            return ObjectId(value)
        raise ValidationError(
            "malformed id: expected a 24-character hex ObjectId",
            {"field": "id", "collection": self.collection_name},
        )

    async def _models(self, docs: list[dict[str, Any]], session: Session | None) -> list[M]:
        if self._references:
            await populate_references(
                self.engine.database, self.collection_name, docs, self._references, session
            )
        parse = self.model.model_validate_doc
        upgrade = self._schema.upgrade
        try:
            return [parse(upgrade(d)) for d in docs]  # type: ignore[misc]
        except AppError:
            raise
        except Exception as exc:
            raise DatabaseError(
                f"a stored {self.model.__name__} document does not match the model",
                {"collection": self.collection_name},
                internal={"error": f"{type(exc).__name__}: {exc}"},
            ) from exc

    async def _model(self, doc: dict[str, Any] | None, session: Session | None) -> M | None:
        return None if doc is None else (await self._models([doc], session))[0]

    # ------------------------------------------------------------------ reads

    async def find_by_id(self, id: Any, *, session: Session | None = None) -> M | None:
        """The document with primary key ``id`` (ObjectId or its hex string), or ``None``."""
        oid = self._id(id)
        with self._operation("find_by_id"):
            doc = await self.collection.find_one({"_id": oid}, session=session)
        return await self._model(doc, session)

    async def find_one(
        self, criteria: Filter | None = None, *, sort: SortSpec = None, session: Session | None = None
    ) -> M | None:
        """The first document matching ``criteria`` (in ``sort`` order), or ``None``."""
        query = prepare_filter(criteria)
        with self._operation("find_one"):
            doc = await self.collection.find_one(query, sort=normalize_sort(sort), session=session)
        return await self._model(doc, session)

    async def find(
        self,
        criteria: Filter | None = None,
        *,
        sort: SortSpec = None,
        skip: int = 0,
        limit: int | None = None,
        session: Session | None = None,
    ) -> list[M]:
        """Documents matching ``criteria`` as models (references resolved), ``sort``ed, ``skip``/``limit``."""
        docs = await self._find_docs(criteria, sort, skip, limit, None, session)
        return await self._models(docs, session)

    async def find_documents(
        self,
        criteria: Filter | None = None,
        *,
        select: Projection | None = None,
        populate: str | Iterable[str] | None = None,
        sort: SortSpec = None,
        skip: int = 0,
        limit: int | None = None,
        session: Session | None = None,
    ) -> list[dict[str, Any]]:
        """Raw documents (plain dicts, no model validation): only the ``select``ed fields.

        ``select`` is ``"name email"``, ``["name", "-password"]`` or a projection
        mapping; ``populate`` names reference fields to replace by the referenced
        documents (one ``$in`` query per field). No schema upgrade is applied to
        partial documents: select fields that exist in every version.
        """
        docs = await self._find_docs(criteria, sort, skip, limit, projection(select), session)
        if populate is not None:
            names = [populate] if isinstance(populate, str) else list(populate)
            unknown = [n for n in names if n not in self._references]
            if unknown:
                raise ValidationError(
                    f"{', '.join(unknown)}: not reference field(s) of {self.model.__name__}",
                    {"field": "populate"},
                )
            refs = {n: self._references[n] for n in names}
            await populate_references(self.engine.database, self.collection_name, docs, refs, session)
        return docs

    async def _find_docs(
        self,
        criteria: Filter | None,
        sort: SortSpec,
        skip: int,
        limit: int | None,
        projection: dict[str, Any] | None,
        session: Session | None,
    ) -> list[dict[str, Any]]:
        check_skip_limit(skip, limit)
        query = prepare_filter(criteria)
        with self._operation("find"):
            cursor = self.collection.find(
                query, projection, sort=normalize_sort(sort), skip=skip, limit=limit or 0, session=session
            )
            return await cursor.to_list(None)

    async def find_paginated(
        self,
        criteria: Filter | None = None,
        *,
        page: int = 1,
        limit: int = 20,
        sort: SortSpec = None,
        session: Session | None = None,
    ) -> Page[M]:
        """Page ``page`` (1-based) of ``limit`` items, with the total count and page flags.

        ``limit`` must be in ``1..max_limit``. Sort by a unique key (or add ``_id``) for
        stable pages; without ``sort`` the order is ``_id`` ascending.
        """
        check_page(page)
        check_limit(limit, self.max_limit)
        keys = normalize_sort(sort) or [("_id", 1)]
        query = prepare_filter(criteria)
        with self._operation("find_paginated"):
            total, docs = await _concurrently(
                self.collection.count_documents(query, session=session),
                self.collection.find(
                    query, sort=keys, skip=(page - 1) * limit, limit=limit, session=session
                ).to_list(None),
            )
        return Page(await self._models(docs, session), Pagination.of(page, limit, total))

    async def find_after(
        self,
        criteria: Filter | None = None,
        *,
        after: str | None = None,
        limit: int = 20,
        sort: str | tuple[str, int] = "_id",
        session: Session | None = None,
    ) -> CursorPage[M]:
        """Keyset (cursor) pagination: cost independent of depth, stable under inserts.

        ``sort`` is one field (``"-created_at"`` or ``("created_at", -1)``); ``_id``
        breaks ties. Pass the previous page's ``next_cursor`` as ``after``.
        """
        check_limit(limit, self.max_limit)
        keyset = Keyset(normalize_sort(sort) or [("_id", 1)])
        query = prepare_filter(criteria)
        if after is not None:
            query = keyset.after(query, after)
        with self._operation("find_after"):
            docs = await self.collection.find(
                query, sort=keyset.order, limit=limit + 1, session=session
            ).to_list(None)
        token = keyset.encode(docs[limit - 1]) if len(docs) > limit else None
        return CursorPage(await self._models(docs[:limit], session), token, limit)

    async def count(self, criteria: Filter | None = None, *, session: Session | None = None) -> int:
        """How many documents match ``criteria``."""
        query = prepare_filter(criteria)
        with self._operation("count"):
            return int(await self.collection.count_documents(query, session=session))

    async def exists(self, criteria: Filter | None = None, *, session: Session | None = None) -> bool:
        """Whether any document matches ``criteria`` (fetches one ``_id``, not a count)."""
        query = prepare_filter(criteria)
        with self._operation("exists"):
            return await self.collection.find_one(query, {"_id": 1}, session=session) is not None

    # ------------------------------------------------------------------ writes

    async def create(
        self,
        data: M | Mapping[str, Any],
        *,
        created_by: Any = None,
        session: Session | None = None,
        events: Events | None = None,
    ) -> M:
        """Validate and insert one document with audit fields and ``schema_version``; return it.

        ``events`` (a list of :class:`OutboxEvent`, or a callable of the new document returning
        them) are written to the outbox in the same transaction (see :meth:`_with_events`).
        """
        if events is None:
            return await self._create(data, created_by, session)
        created = await self._with_events(
            "create", lambda s: self._create(data, created_by, s), events, session
        )
        assert created is not None  # an insert either writes or raises
        return created

    async def _create(self, data: M | Mapping[str, Any], created_by: Any, session: Session | None) -> M:
        instance = self._input.instance(data)
        doc = instance.model_dump_doc()
        stamp = now()
        doc["created_at"] = stamp
        doc["updated_at"] = stamp
        doc["created_by"] = created_by
        doc["updated_by"] = created_by
        doc["schema_version"] = self.schema_version
        with self._operation("create"):
            await self.collection.insert_one(doc, session=session)
        if self._references:
            # The references are in hand: rebuild from the instance rather than re-reading them.
            nest_references(instance, doc)
        return self.model.model_validate_doc(doc)  # type: ignore[return-value]

    async def update_by_id(
        self,
        id: Any,
        data: Mapping[str, Any] | Model,
        *,
        updated_by: Any = None,
        session: Session | None = None,
        events: Events | None = None,
    ) -> M | None:
        """Set the fields in ``data`` (validated per field); return the updated document or ``None``.

        ``events`` (list, or callable of the updated document) are written to the outbox in the
        same transaction, only when a document was updated.
        """
        query = {"_id": self._id(id)}
        if events is None:
            return await self._update(query, data, updated_by, session, "update_by_id")
        return await self._with_events(
            "update_by_id",
            lambda s: self._update(query, data, updated_by, s, "update_by_id"),
            events,
            session,
        )

    async def update_one(
        self,
        criteria: Filter,
        data: Mapping[str, Any] | Model,
        *,
        updated_by: Any = None,
        session: Session | None = None,
    ) -> M | None:
        """Like :meth:`update_by_id` for the first document matching ``criteria``."""
        return await self._update(prepare_filter(criteria), data, updated_by, session, "update_one")

    async def _update(
        self,
        query: dict[str, Any],
        data: Mapping[str, Any] | Model,
        updated_by: Any,
        session: Session | None,
        name: str,
    ) -> M | None:
        changes = self._input.changes(data)
        changes["updated_at"] = now()
        if updated_by is not None:
            changes["updated_by"] = updated_by
        version = self.schema_version
        # Fast path: a current-version document is updated in place in one round-trip.
        current = (
            {**query, "schema_version": version}
            if "schema_version" not in query
            else {"$and": [query, {"schema_version": version}]}
        )
        with self._operation(name):
            doc = await self.collection.find_one_and_update(
                current, {"$set": changes}, return_document=ReturnDocument.AFTER, session=session
            )
            if doc is None:
                doc = await self._schema.update_upgrading(self.collection, query, changes, session)
        return await self._model(doc, session)

    async def delete_by_id(
        self, id: Any, *, session: Session | None = None, events: Events | None = None
    ) -> bool:
        """Delete by primary key; ``True`` when a document was deleted.

        ``events`` (list, or callable of the deleted document) are written to the outbox in the
        same transaction, only when a document was deleted.
        """
        oid = self._id(id)
        if events is None:
            return await self._delete_one({"_id": oid}, session, "delete_by_id")
        deleted = await self._with_events("delete_by_id", lambda s: self._take(oid, s), events, session)
        return deleted is not None

    async def _take(self, oid: Any, session: Session | None) -> M | None:
        """Delete the document ``oid`` and return it (``None`` if there was none)."""
        with self._operation("delete_by_id"):
            doc = await self.collection.find_one_and_delete({"_id": oid}, session=session)
        return await self._model(doc, session)

    async def _with_events(
        self,
        operation: str,
        write: Callable[[Session], Awaitable[M | None]],
        events: Events,
        session: Session | None,
    ) -> M | None:
        """Run ``write`` and insert its events into the outbox atomically.

        Without ``session``: one transaction of its own (committed here, retried on transient
        errors like :meth:`with_transaction`); with one: it must be in a transaction, which the
        entries join. No document written (update/delete matched nothing): no events. A server
        without transactions (standalone ``mongod``) raises :class:`TransactionsUnsupportedError`
        and writes nothing.
        """
        if session is not None and not session.in_transaction:  # type: ignore[truthy-function]
            raise ValidationError(
                f"{operation}(events=...) with session= needs that session inside a transaction "
                "(with_transaction), or the document and its events would not commit together",
                {"field": "session", "collection": self.collection_name},
            )
        outbox = self.outbox

        async def work(s: Session) -> M | None:
            written = await write(s)
            if written is not None:
                found = events(written) if callable(events) else events
                key = getattr(written, written.__primary_field__)
                await outbox.add(found, session=s, aggregate_id=str(key))
            return written

        await outbox.ensure_ready()
        if session is not None:
            return await work(session)
        try:
            result = await run_transaction(self.client, work, attempts=self.transaction_attempts)
        except Exception as exc:
            if transactions_unsupported(exc):
                raise TransactionsUnsupportedError(operation, self.collection_name, str(exc)) from exc
            raise
        if result is not None:
            outbox.notify()
        return result

    async def delete_one(self, criteria: Filter, *, session: Session | None = None) -> bool:
        """Delete the first document matching ``criteria``; ``True`` when one was deleted."""
        return await self._delete_one(prepare_filter(criteria), session, "delete_one")

    async def _delete_one(self, query: dict[str, Any], session: Session | None, name: str) -> bool:
        with self._operation(name):
            result = await self.collection.delete_one(query, session=session)
        return bool(result.deleted_count)

    async def delete_many(self, criteria: Filter, *, session: Session | None = None) -> int:
        """Delete every document matching ``criteria`` (``{}`` deletes all); return how many."""
        if criteria is None:
            raise ValidationError("delete_many needs criteria; pass {} to delete every document")
        query = prepare_filter(criteria)
        with self._operation("delete_many"):
            result = await self.collection.delete_many(query, session=session)
        return int(result.deleted_count)

    # ------------------------------------------------------------------ transactions, migration

    async def with_transaction(
        self, callback: Callable[[Session], Awaitable[T]], *, attempts: int | None = None
    ) -> T:
        """Run ``callback(session)`` in a transaction; see :func:`run_transaction`."""
        return await run_transaction(self.client, callback, attempts=attempts or self.transaction_attempts)

    async def migrate(
        self, *, batch_size: int = 500, progress: Callable[[int, int], None] | None = None
    ) -> MigrationReport:
        """Upgrade every document older than ``schema_version`` in place, in ``_id`` order.

        ``progress(done, total)`` is called after each batch. Safe to rerun and to run
        while the application writes: each replace is guarded on the version it read.
        """
        if batch_size < 1:
            raise ValidationError("batch_size must be >= 1", {"field": "batch_size"})
        with self._operation("migrate"):
            return await self._schema.migrate(self.collection, batch_size, progress)
