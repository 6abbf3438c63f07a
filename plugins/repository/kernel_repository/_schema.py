"""Schema versions: upgrade steps, lazy upgrade on write, bulk migration."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import attrs
from kernel_errors import DatabaseError
from motor.motor_asyncio import AsyncIOMotorClientSession, AsyncIOMotorCollection
from pymongo import ReplaceOne

Upgrade = Callable[[dict[str, Any]], dict[str, Any]]
"""One upgrade step: a version-``n`` document in, the version-``n + 1`` document out."""

_UPDATE_ATTEMPTS = 5
"""Re-reads of a document that keeps changing while an update upgrades it."""


@attrs.frozen
class MigrationReport:
    """What :meth:`BaseRepository.migrate` did."""

    collection: str
    target_version: int
    scanned: int
    upgraded: int
    skipped: int
    """Documents changed concurrently (already upgraded by someone else)."""


def check_steps(owner: str, version: object, upgrades: Mapping[int, Upgrade]) -> None:
    """Raise ``TypeError`` unless ``upgrades`` has a step from every version below ``version``."""
    if not isinstance(version, int) or version < 1:
        raise TypeError(f"{owner}.schema_version must be an int >= 1")
    missing = [v for v in range(1, version) if v not in upgrades]
    if missing:
        raise TypeError(
            f"{owner}: schema_version is {version} but upgrades lack "
            f"step(s) from version {', '.join(map(str, missing))}"
        )


def version_guard(old: Any) -> Any:
    """The ``schema_version`` filter value matching a document read at version ``old``."""
    return old if old is not None else {"$exists": False}


@attrs.frozen
class Schema:
    """The current ``version`` of one collection's documents and the steps up to it."""

    version: int
    upgrades: Mapping[int, Upgrade]

    def upgrade(self, doc: dict[str, Any]) -> dict[str, Any]:
        """``doc`` brought to :attr:`version` (unchanged when current; no version means 1)."""
        version = doc.get("schema_version", 1)
        if version >= self.version:
            return doc
        while version < self.version:
            doc = self.upgrades[version](doc)
            version += 1
        doc["schema_version"] = self.version
        return doc

    def stale(self) -> dict[str, Any]:
        """The filter of documents older than :attr:`version`."""
        return {"$or": [{"schema_version": {"$lt": self.version}}, {"schema_version": {"$exists": False}}]}

    async def update_upgrading(
        self,
        collection: AsyncIOMotorCollection[Any],
        query: dict[str, Any],
        changes: dict[str, Any],
        session: AsyncIOMotorClientSession | None,
    ) -> dict[str, Any] | None:
        """Apply ``$set: changes`` to the first match of ``query``, upgrading an older document whole.

        An older document must not get the new version stamp over its old shape: it is
        upgraded and replaced, guarded on the version read (re-read when it moved).
        Returns the updated document, or ``None`` when nothing matches.
        """
        for _ in range(_UPDATE_ATTEMPTS):
            doc = await collection.find_one(query, session=session)
            if doc is None:
                return None
            old = doc.get("schema_version")
            if old is not None and old >= self.version:
                # Current (or newer) after all: upgraded meanwhile, or the fast path's
                # findAndModify failed silently (the wire server answers a unique-index
                # violation with null instead of E11000). update_one reports it properly.
                guard = {"_id": doc["_id"], "schema_version": old}
                result = await collection.update_one(guard, {"$set": changes}, session=session)
                if result.matched_count:
                    return await collection.find_one({"_id": doc["_id"]}, session=session)
                continue
            new = self.upgrade(doc)
            new.update(changes)
            guard = {"_id": doc["_id"], "schema_version": version_guard(old)}
            result = await collection.replace_one(guard, new, session=session)
            if result.matched_count:
                return new
        raise DatabaseError(
            "the document kept changing during a schema upgrade", {"collection": collection.name}
        )

    async def migrate(
        self,
        collection: AsyncIOMotorCollection[Any],
        batch_size: int,
        progress: Callable[[int, int], None] | None,
    ) -> MigrationReport:
        """Upgrade every stale document of ``collection`` in ``_id`` order, ``batch_size`` at a time."""
        stale = self.stale()
        scanned = upgraded = 0
        total = await collection.count_documents(stale)
        if progress is not None:
            progress(0, total)
        query = stale
        while batch := await collection.find(query, sort=[("_id", 1)], limit=batch_size).to_list(None):
            ops = []
            for doc in batch:
                # The guard holds the version read: build it before upgrading the document.
                guard = {"_id": doc["_id"], "schema_version": version_guard(doc.get("schema_version"))}
                ops.append(ReplaceOne(guard, self.upgrade(doc)))
            result = await collection.bulk_write(ops, ordered=False)
            scanned += len(batch)
            upgraded += result.matched_count
            query = {"$and": [stale, {"_id": {"$gt": batch[-1]["_id"]}}]}
            if progress is not None:
                progress(scanned, total)
        return MigrationReport(collection.name, self.version, scanned, upgraded, scanned - upgraded)
