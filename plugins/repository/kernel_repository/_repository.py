"""``BaseRepository[Model]``: CRUD, pagination, audit fields, schema versions, transactions (odmantic)."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import math
import time
from collections.abc import Awaitable, Callable, Iterable, Mapping
from datetime import UTC, datetime
from typing import Any, ClassVar, Generic, Protocol, TypeVar, get_args, get_origin

import attrs
import bson
import pydantic
from bson import ObjectId
from kernel_errors import AppError, DatabaseError, ValidationError
from motor.motor_asyncio import AsyncIOMotorClient, AsyncIOMotorClientSession, AsyncIOMotorCollection
from odmantic import AIOEngine, EmbeddedModel, Model
from odmantic.field import ODMReference
from pymongo import ReplaceOne, ReturnDocument

from ._errors import has_label, map_error
from ._filters import Filter, SortSpec, normalize_sort, prepare_filter

M = TypeVar("M", bound=Model)
T = TypeVar("T")

AUDIT_FIELDS = ("created_at", "updated_at", "created_by", "updated_by", "schema_version")
"""Document keys the repository owns: stamped on every write, never taken from update data."""

Session = AsyncIOMotorClientSession
Upgrade = Callable[[dict[str, Any]], dict[str, Any]]


class QueryMetrics(Protocol):
    """What the repository needs of the metrics plugin's ``MetricsCollector``."""

    def record_db_query(self, operation: str, collection: str, seconds: float) -> None: ...


@attrs.frozen
class Pagination:
    """Offset pagination metadata (the seed's ``pagination`` object)."""

    page: int
    limit: int
    total: int
    pages: int
    has_next: bool
    has_prev: bool

    def to_dict(self) -> dict[str, int | bool]:
        return attrs.asdict(self)


@attrs.frozen
class Page(Generic[T]):
    """One page of ``items`` with its :class:`Pagination`."""

    items: list[T]
    pagination: Pagination


@attrs.frozen
class CursorPage(Generic[T]):
    """One keyset page: pass ``next_cursor`` back as ``after`` for the next one (``None`` at the end)."""

    items: list[T]
    next_cursor: str | None
    limit: int

    @property
    def has_next(self) -> bool:
        return self.next_cursor is not None


@attrs.frozen
class MigrationReport:
    """What :meth:`BaseRepository.migrate` did."""

    collection: str
    target_version: int
    scanned: int
    upgraded: int
    skipped: int
    """Documents changed concurrently (already upgraded by someone else)."""


def _now() -> datetime:
    # BSON keeps milliseconds: truncate so the value we return equals the value read back.
    now = datetime.now(UTC)
    return now.replace(microsecond=now.microsecond // 1000 * 1000)


def _field_errors(exc: pydantic.ValidationError) -> list[dict[str, str]]:
    return [
        {"field": ".".join(str(p) for p in err["loc"]) or "__root__", "message": err["msg"]}
        for err in exc.errors()
    ]


def _projection(select: str | Iterable[str] | Mapping[str, Any] | None) -> dict[str, Any] | None:
    if select is None:
        return None
    if isinstance(select, str):
        select = select.replace(",", " ").split()
    if isinstance(select, Mapping):
        out = dict(select)
    else:
        out = {}
        for name in select:
            if name.startswith("-"):
                out[name[1:]] = 0
            else:
                out[name.lstrip("+")] = 1
    for key in out:
        if not key or key.startswith("$"):
            raise ValidationError(f"invalid projection field {key!r}", {"field": "select"})
    return out


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
        if not isinstance(cls.schema_version, int) or cls.schema_version < 1:
            raise TypeError(f"{cls.__name__}.schema_version must be an int >= 1")
        missing = [v for v in range(1, cls.schema_version) if v not in cls.upgrades]
        if missing:
            raise TypeError(
                f"{cls.__name__}: schema_version is {cls.schema_version} but upgrades lack "
                f"step(s) from version {', '.join(map(str, missing))}"
            )

    def __init__(
        self,
        engine: AIOEngine,
        *,
        metrics: QueryMetrics | None = None,
        transaction_attempts: int = 3,
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
        fields = self.model.__odm_fields__
        self._primary = self.model.__primary_field__
        self._oid_ids = self._primary == "id"  # odmantic's default ObjectId primary key
        self._references = {
            name: f for name, f in fields.items() if isinstance(f, ODMReference)
        }
        self._keys = {name: f.key_name for name, f in fields.items()}
        self._adapters: dict[str, pydantic.TypeAdapter[Any]] = {}
        self._audit_keys = frozenset(AUDIT_FIELDS)

    # ------------------------------------------------------------------ plumbing

    def _fail(self, exc: BaseException, operation: str) -> BaseException:
        return map_error(exc, operation, self.collection_name)

    def _record(self, operation: str, t0: float) -> None:
        if self.metrics is not None:
            self.metrics.record_db_query(operation, self.collection_name, time.perf_counter() - t0)

    def _id(self, value: Any) -> Any:
        if not self._oid_ids or isinstance(value, ObjectId):
            return value
        if isinstance(value, str) and ObjectId.is_valid(value):
            return ObjectId(value)
        raise ValidationError(
            "malformed id: expected a 24-character hex ObjectId",
            {"field": "id", "collection": self.collection_name},
        )

    def _upgrade(self, doc: dict[str, Any]) -> dict[str, Any]:
        version = doc.get("schema_version", 1)
        target = self.schema_version
        if version >= target:
            return doc
        while version < target:
            doc = self.upgrades[version](doc)
            version += 1
        doc["schema_version"] = target
        return doc

    async def _populate(self, docs: list[dict[str, Any]], session: Session | None,
                        refs: Mapping[str, ODMReference] | None = None) -> None:
        # One `$in` query per reference field and page (not one per document), and plain
        # `find` rather than odmantic's `$lookup` pipeline, which the wire server rejects.
        for name, ref in (self._references if refs is None else refs).items():
            key = ref.key_name
            ids = list({d[key] for d in docs if isinstance(d.get(key), ObjectId)})
            if not ids:
                continue
            target = ref.model
            coll = self.engine.database[target.__collection__]
            found = await coll.find({"_id": {"$in": ids}}, session=session).to_list(None)
            nested = {n: f for n, f in target.__odm_fields__.items() if isinstance(f, ODMReference)}
            if nested:
                await self._populate(found, session, nested)
            by_id = {d["_id"]: d for d in found}
            for d in docs:
                if isinstance(d.get(key), ObjectId):
                    ref_id = d[key]
                    if ref_id not in by_id:
                        raise DatabaseError(
                            f"{self.collection_name}.{name} references a missing {target.__name__}",
                            {"collection": self.collection_name, "field": name},
                            internal={"id": str(d.get("_id")), "reference": str(ref_id)},
                        )
                    d[key] = by_id[ref_id]

    async def _models(self, docs: list[dict[str, Any]], session: Session | None) -> list[M]:
        if self._references:
            await self._populate(docs, session)
        parse = self.model.model_validate_doc
        try:
            return [parse(self._upgrade(d)) for d in docs]  # type: ignore[misc]
        except AppError:
            raise
        except Exception as exc:
            raise DatabaseError(
                f"a stored {self.model.__name__} document does not match the model",
                {"collection": self.collection_name},
                internal={"error": f"{type(exc).__name__}: {exc}"},
            ) from exc

    def _instance(self, data: M | Mapping[str, Any]) -> M:
        if isinstance(data, self.model):
            return data
        if not isinstance(data, Mapping):
            raise ValidationError(
                f"expected a {self.model.__name__} or a mapping, got {type(data).__name__}"
            )
        managed = self._audit_keys.intersection(data)
        if managed:
            raise ValidationError(
                f"{', '.join(sorted(managed))} are managed by the repository",
                errors={k: "managed by the repository" for k in sorted(managed)},
            )
        try:
            return self.model(**data)  # type: ignore[return-value]
        except pydantic.ValidationError as exc:
            raise ValidationError(f"invalid {self.model.__name__}", errors=_field_errors(exc)) from None

    def _changes(self, data: Mapping[str, Any] | Model) -> dict[str, Any]:
        """``data`` validated per field and turned into document values for ``$set``."""
        if isinstance(data, Model):
            doc = data.model_dump_doc()
            doc.pop("_id", None)
            for key in AUDIT_FIELDS:
                doc.pop(key, None)
            return doc
        if not isinstance(data, Mapping) or not data:
            raise ValidationError("update data must be a non-empty mapping of field names to values")
        out: dict[str, Any] = {}
        problems: dict[str, str] = {}
        for name, value in data.items():
            if name in self._audit_keys:
                problems[name] = "managed by the repository"
                continue
            if name == self._primary or name not in self._keys:
                problems[str(name)] = "not an updatable field of " + self.model.__name__
                continue
            adapter = self._adapters.get(name)
            if adapter is None:
                info = self.model.model_fields[name]
                adapter = self._adapters[name] = pydantic.TypeAdapter(info.annotation or Any)
            try:
                value = adapter.validate_python(value)
            except pydantic.ValidationError as exc:
                problems[name] = "; ".join(e["msg"] for e in exc.errors())
                continue
            out[self._keys[name]] = _to_doc_value(value)
        if problems:
            raise ValidationError(f"invalid {self.model.__name__} update", errors=problems)
        return out

    # ------------------------------------------------------------------ reads

    async def find_by_id(self, id: Any, *, session: Session | None = None) -> M | None:
        """The document with primary key ``id`` (ObjectId or its hex string), or ``None``."""
        oid = self._id(id)
        t0 = time.perf_counter()
        try:
            doc = await self.collection.find_one({"_id": oid}, session=session)
        except Exception as exc:
            raise self._fail(exc, "find_by_id") from exc
        finally:
            self._record("find_by_id", t0)
        if doc is None:
            return None
        return (await self._models([doc], session))[0]

    async def find_one(
        self, criteria: Filter | None = None, *, sort: SortSpec = None, session: Session | None = None
    ) -> M | None:
        """The first document matching ``criteria`` (in ``sort`` order), or ``None``."""
        query = prepare_filter(criteria)
        t0 = time.perf_counter()
        try:
            doc = await self.collection.find_one(query, sort=normalize_sort(sort), session=session)
        except Exception as exc:
            raise self._fail(exc, "find_one") from exc
        finally:
            self._record("find_one", t0)
        return None if doc is None else (await self._models([doc], session))[0]

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
        docs = await self._find_docs(criteria, sort, skip, limit, None, session, "find")
        return await self._models(docs, session)

    async def find_documents(
        self,
        criteria: Filter | None = None,
        *,
        select: str | Iterable[str] | Mapping[str, Any] | None = None,
        populate: str | Iterable[str] | None = None,
        sort: SortSpec = None,
        skip: int = 0,
        limit: int | None = None,
        session: Session | None = None,
    ) -> list[dict[str, Any]]:
        """Raw documents (the seed's ``select`` + ``lean``): only the ``select``ed fields.

        ``select`` is ``"name email"``, ``["name", "-password"]`` or a projection
        mapping; ``populate`` names reference fields to replace by the referenced
        documents (one ``$in`` query per field). No schema upgrade is applied to
        partial documents: select fields that exist in every version.
        """
        projection = _projection(select)
        docs = await self._find_docs(criteria, sort, skip, limit, projection, session, "find")
        if populate is not None:
            names = [populate] if isinstance(populate, str) else list(populate)
            unknown = [n for n in names if n not in self._references]
            if unknown:
                raise ValidationError(
                    f"{', '.join(unknown)}: not reference field(s) of {self.model.__name__}",
                    {"field": "populate"},
                )
            await self._populate(docs, session, {n: self._references[n] for n in names})
        return docs

    async def _find_docs(
        self, criteria: Filter | None, sort: SortSpec, skip: int, limit: int | None,
        projection: dict[str, Any] | None, session: Session | None, operation: str,
    ) -> list[dict[str, Any]]:
        if not isinstance(skip, int) or isinstance(skip, bool) or skip < 0:
            raise ValidationError(f"skip must be an integer >= 0, got {skip!r}", {"field": "skip"})
        if limit is not None and (not isinstance(limit, int) or isinstance(limit, bool) or limit < 0):
            raise ValidationError(f"limit must be an integer >= 0, got {limit!r}", {"field": "limit"})
        query = prepare_filter(criteria)
        t0 = time.perf_counter()
        try:
            cursor = self.collection.find(
                query, projection, sort=normalize_sort(sort), skip=skip, limit=limit or 0, session=session
            )
            return await cursor.to_list(None)
        except Exception as exc:
            raise self._fail(exc, operation) from exc
        finally:
            self._record(operation, t0)

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
        if not isinstance(page, int) or isinstance(page, bool) or page < 1:
            raise ValidationError(f"page must be an integer >= 1, got {page!r}", {"field": "page"})
        self._check_limit(limit)
        keys = normalize_sort(sort) or [("_id", 1)]
        query = prepare_filter(criteria)
        t0 = time.perf_counter()
        try:
            # Count and page in parallel: one round-trip of latency instead of two.
            total, docs = await asyncio.gather(
                self.collection.count_documents(query, session=session),
                self.collection.find(query, sort=keys, skip=(page - 1) * limit, limit=limit,
                                     session=session).to_list(None),
            )
        except Exception as exc:
            raise self._fail(exc, "find_paginated") from exc
        finally:
            self._record("find_paginated", t0)
        pages = math.ceil(total / limit) if total else 0
        items = await self._models(docs, session)
        return Page(items, Pagination(page, limit, total, pages, page < pages, page > 1))

    def _check_limit(self, limit: int) -> None:
        if not isinstance(limit, int) or isinstance(limit, bool) or not 1 <= limit <= self.max_limit:
            raise ValidationError(
                f"limit must be an integer between 1 and {self.max_limit}, got {limit!r}", {"field": "limit"}
            )

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
        self._check_limit(limit)
        keys = normalize_sort(sort) or [("_id", 1)]
        if len(keys) != 1:
            raise ValidationError("find_after sorts by exactly one field", {"field": "sort"})
        field, direction = keys[0]
        order = [(field, direction)] if field == "_id" else [(field, direction), ("_id", direction)]
        query = prepare_filter(criteria)
        if after is not None:
            value, last_id = self._decode_cursor(after, field, direction)
            op = "$gt" if direction == 1 else "$lt"
            if field == "_id":
                seek: dict[str, Any] = {"_id": {op: last_id}}
            else:
                seek = {"$or": [{field: {op: value}}, {field: value, "_id": {op: last_id}}]}
            query = {"$and": [query, seek]} if query else seek
        t0 = time.perf_counter()
        try:
            cursor = self.collection.find(query, sort=order, limit=limit + 1, session=session)
            docs = await cursor.to_list(None)
        except Exception as exc:
            raise self._fail(exc, "find_after") from exc
        finally:
            self._record("find_after", t0)
        more = len(docs) > limit
        docs = docs[:limit]
        token: str | None = None
        if more and docs:
            last = docs[-1]
            token = self._encode_cursor(field, direction, last.get(field), last["_id"])
        return CursorPage(await self._models(docs, session), token, limit)

    @staticmethod
    def _encode_cursor(field: str, direction: int, value: Any, last_id: Any) -> str:
        raw = bson.encode({"f": field, "d": direction, "v": value, "i": last_id})
        return base64.urlsafe_b64encode(raw).decode().rstrip("=")

    @staticmethod
    def _decode_cursor(cursor: str, field: str, direction: int) -> tuple[Any, Any]:
        try:
            doc = bson.decode(base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)))
            if doc["f"] != field or doc["d"] != direction:
                raise ValueError("cursor belongs to another sort")
            return doc["v"], doc["i"]
        except Exception:
            raise ValidationError("invalid or foreign pagination cursor", {"field": "after"}) from None

    async def count(self, criteria: Filter | None = None, *, session: Session | None = None) -> int:
        """How many documents match ``criteria``."""
        query = prepare_filter(criteria)
        t0 = time.perf_counter()
        try:
            return int(await self.collection.count_documents(query, session=session))
        except Exception as exc:
            raise self._fail(exc, "count") from exc
        finally:
            self._record("count", t0)

    async def exists(self, criteria: Filter | None = None, *, session: Session | None = None) -> bool:
        """Whether any document matches ``criteria`` (fetches one ``_id``, not a count)."""
        query = prepare_filter(criteria)
        t0 = time.perf_counter()
        try:
            return await self.collection.find_one(query, {"_id": 1}, session=session) is not None
        except Exception as exc:
            raise self._fail(exc, "exists") from exc
        finally:
            self._record("exists", t0)

    # ------------------------------------------------------------------ writes

    async def create(
        self, data: M | Mapping[str, Any], *, created_by: Any = None, session: Session | None = None
    ) -> M:
        """Validate and insert one document with audit fields and ``schema_version``; return it."""
        instance = self._instance(data)
        doc = instance.model_dump_doc()
        now = _now()
        doc["created_at"] = now
        doc["updated_at"] = now
        doc["created_by"] = created_by
        doc["updated_by"] = created_by
        doc["schema_version"] = self.schema_version
        t0 = time.perf_counter()
        try:
            await self.collection.insert_one(doc, session=session)
        except Exception as exc:
            raise self._fail(exc, "create") from exc
        finally:
            self._record("create", t0)
        if self._references:
            # The references are in hand: rebuild from the instance rather than re-reading them.
            for name, ref in self._references.items():
                doc[ref.key_name] = getattr(instance, name).model_dump_doc()
            self._nest_refs(instance, doc)
        return self.model.model_validate_doc(doc)  # type: ignore[return-value]

    def _nest_refs(self, instance: Model, doc: dict[str, Any]) -> None:
        for name, ref in type(instance).__odm_fields__.items():
            if isinstance(ref, ODMReference):
                child = getattr(instance, name)
                sub = child.model_dump_doc()
                self._nest_refs(child, sub)
                doc[ref.key_name] = sub

    async def update_by_id(
        self,
        id: Any,
        data: Mapping[str, Any] | Model,
        *,
        updated_by: Any = None,
        session: Session | None = None,
    ) -> M | None:
        """Set the fields in ``data`` (validated per field); return the updated document or ``None``."""
        return await self._update({"_id": self._id(id)}, data, updated_by, session, "update_by_id")

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
        self, query: dict[str, Any], data: Mapping[str, Any] | Model, updated_by: Any,
        session: Session | None, operation: str,
    ) -> M | None:
        changes = self._changes(data)
        changes["updated_at"] = _now()
        if updated_by is not None:
            changes["updated_by"] = updated_by
        version = self.schema_version
        # Fast path: a current-version document is updated in place in one round-trip.
        current = {**query, "schema_version": version} if "schema_version" not in query else {
            "$and": [query, {"schema_version": version}]}
        t0 = time.perf_counter()
        try:
            doc = await self.collection.find_one_and_update(
                current, {"$set": changes}, return_document=ReturnDocument.AFTER, session=session
            )
            if doc is None:
                doc = await self._update_slow(query, changes, session)
        except Exception as exc:
            raise self._fail(exc, operation) from exc
        finally:
            self._record(operation, t0)
        return None if doc is None else (await self._models([doc], session))[0]

    async def _update_slow(
        self, query: dict[str, Any], changes: dict[str, Any], session: Session | None
    ) -> dict[str, Any] | None:
        # An older document must not get the new version stamp over its old shape: upgrade
        # it whole and replace it, guarded on the version we read (retry if it moved).
        for _ in range(5):
            doc = await self.collection.find_one(query, session=session)
            if doc is None:
                return None
            old = doc.get("schema_version")
            if old is not None and old >= self.schema_version:
                # Current (or newer) after all: upgraded meanwhile, or the fast path's
                # findAndModify failed silently (the wire server answers a unique-index
                # violation with null instead of E11000). update_one reports it properly.
                guard = {"_id": doc["_id"], "schema_version": old}
                result = await self.collection.update_one(guard, {"$set": changes}, session=session)
                if result.matched_count:
                    return await self.collection.find_one({"_id": doc["_id"]}, session=session)
                continue
            new = self._upgrade(doc)
            new.update(changes)
            guard = {"_id": doc["_id"], "schema_version": _version_guard(old)}
            result = await self.collection.replace_one(guard, new, session=session)
            if result.matched_count:
                return new
        raise DatabaseError(
            "the document kept changing during a schema upgrade", {"collection": self.collection_name}
        )

    async def delete_by_id(self, id: Any, *, session: Session | None = None) -> bool:
        """Delete by primary key; ``True`` when a document was deleted."""
        oid = self._id(id)
        return await self._delete_one({"_id": oid}, session, "delete_by_id")

    async def delete_one(self, criteria: Filter, *, session: Session | None = None) -> bool:
        """Delete the first document matching ``criteria``; ``True`` when one was deleted."""
        return await self._delete_one(prepare_filter(criteria), session, "delete_one")

    async def _delete_one(self, query: dict[str, Any], session: Session | None, operation: str) -> bool:
        t0 = time.perf_counter()
        try:
            result = await self.collection.delete_one(query, session=session)
        except Exception as exc:
            raise self._fail(exc, operation) from exc
        finally:
            self._record(operation, t0)
        return bool(result.deleted_count)

    async def delete_many(self, criteria: Filter, *, session: Session | None = None) -> int:
        """Delete every document matching ``criteria`` (``{}`` deletes all); return how many."""
        if criteria is None:
            raise ValidationError("delete_many needs criteria; pass {} to delete every document")
        query = prepare_filter(criteria)
        t0 = time.perf_counter()
        try:
            result = await self.collection.delete_many(query, session=session)
        except Exception as exc:
            raise self._fail(exc, "delete_many") from exc
        finally:
            self._record("delete_many", t0)
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
        target = self.schema_version
        stale: dict[str, Any] = {"$or": [{"schema_version": {"$lt": target}},
                                         {"schema_version": {"$exists": False}}]}
        scanned = upgraded = 0
        t0 = time.perf_counter()
        try:
            total = await self.collection.count_documents(stale)
            if progress is not None:
                progress(0, total)
            last_id: Any = None
            while True:
                query = stale if last_id is None else {"$and": [stale, {"_id": {"$gt": last_id}}]}
                batch = await self.collection.find(query, sort=[("_id", 1)], limit=batch_size).to_list(None)
                if not batch:
                    break
                ops = []
                for doc in batch:
                    old = doc.get("schema_version")
                    guard = {"_id": doc["_id"], "schema_version": _version_guard(old)}
                    ops.append(ReplaceOne(guard, self._upgrade(doc)))
                result = await self.collection.bulk_write(ops, ordered=False)
                scanned += len(batch)
                upgraded += result.matched_count
                last_id = batch[-1]["_id"]
                if progress is not None:
                    progress(scanned, total)
        except AppError:
            raise
        except Exception as exc:
            raise self._fail(exc, "migrate") from exc
        finally:
            self._record("migrate", t0)
        return MigrationReport(self.collection_name, target, scanned, upgraded, scanned - upgraded)


def _version_guard(old: Any) -> Any:
    return old if old is not None else {"$exists": False}


def _to_doc_value(value: Any) -> Any:
    if isinstance(value, Model):
        return getattr(value, value.__primary_field__)
    if isinstance(value, EmbeddedModel):
        return value.model_dump_doc()
    if isinstance(value, list | tuple):
        return [_to_doc_value(v) for v in value]
    if isinstance(value, dict):
        return {k: _to_doc_value(v) for k, v in value.items()}
    return value


async def run_transaction(
    client: AsyncIOMotorClient[Any], callback: Callable[[Session], Awaitable[T]], *, attempts: int = 3
) -> T:
    """Run ``callback(session)`` in one transaction and commit it.

    Any exception aborts the transaction (no partial writes) and is re-raised (driver
    errors mapped to the ``errors`` plugin's types). Errors labelled
    ``TransientTransactionError`` rerun the whole callback, up to ``attempts`` times;
    ``UnknownTransactionCommitResult`` retries the commit. The callback must pass
    ``session=session`` to every repository call and be safe to rerun.
    """
    if attempts < 1:
        raise ValueError("attempts must be >= 1")
    try:
        session = await client.start_session()
    except Exception as exc:
        raise map_error(exc, "transaction", "") from exc
    async with session:
        for attempt in range(1, attempts + 1):
            session.start_transaction()
            try:
                result = await callback(session)
            except BaseException as exc:
                # A property at runtime (motor's stub declares a method).
                if session.in_transaction:  # type: ignore[truthy-function]
                    # The callback's error is the one to report, not a failed abort.
                    with contextlib.suppress(Exception):
                        await session.abort_transaction()
                if attempt < attempts and has_label(exc, "TransientTransactionError"):
                    continue
                mapped = map_error(exc, "transaction", "")
                if mapped is exc:
                    raise
                raise mapped from exc
            try:
                await _commit(session, attempts)
            except Exception as exc:
                if attempt < attempts and has_label(exc, "TransientTransactionError"):
                    continue
                raise map_error(exc, "commit", "") from exc
            return result
    raise AssertionError("unreachable")


async def _commit(session: Session, attempts: int) -> None:
    for attempt in range(1, attempts + 1):
        try:
            await session.commit_transaction()
            return
        except Exception as exc:
            if attempt < attempts and has_label(exc, "UnknownTransactionCommitResult"):
                continue
            raise
