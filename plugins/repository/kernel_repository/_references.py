"""References between models: resolved with one ``$in`` query per field, stored as primary keys."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from bson import ObjectId
from kernel_errors import DatabaseError
from motor.motor_asyncio import AsyncIOMotorClientSession, AsyncIOMotorDatabase
from odmantic import EmbeddedModel, Model
from odmantic.field import ODMReference


def reference_fields(model: type[Model]) -> dict[str, ODMReference]:
    """The reference fields of ``model`` by attribute name."""
    return {name: f for name, f in model.__odm_fields__.items() if isinstance(f, ODMReference)}


async def populate_references(
    database: AsyncIOMotorDatabase[Any],
    collection: str,
    docs: list[dict[str, Any]],
    refs: Mapping[str, ODMReference],
    session: AsyncIOMotorClientSession | None,
) -> None:
    """Replace, in place, the ids in ``docs`` under each of ``refs`` by the referenced documents.

    One ``$in`` query per reference field and page (not one per document), and plain
    ``find`` rather than odmantic's ``$lookup`` pipeline, which the wire server rejects.
    Nested references are resolved too; a dangling one raises ``DatabaseError``.
    """
    for name, ref in refs.items():
        key = ref.key_name
        ids = list({d[key] for d in docs if isinstance(d.get(key), ObjectId)})
        if not ids:
            continue
        target = ref.model
        cursor = database[target.__collection__].find({"_id": {"$in": ids}}, session=session)
        found = await cursor.to_list(None)
        nested = reference_fields(target)
        if nested:
            await populate_references(database, target.__collection__, found, nested, session)
        by_id = {d["_id"]: d for d in found}
        for d in docs:
            ref_id = d.get(key)
            if not isinstance(ref_id, ObjectId):
                continue
            if ref_id not in by_id:
                raise DatabaseError(
                    f"{collection}.{name} references a missing {target.__name__}",
                    {"collection": collection, "field": name},
                    internal={"id": str(d.get("_id")), "reference": str(ref_id)},
                )
            d[key] = by_id[ref_id]


def nest_references(instance: Model, doc: dict[str, Any]) -> None:
    """Put the documents of the models ``instance`` references into ``doc`` (recursively)."""
    for name, ref in reference_fields(type(instance)).items():
        child = getattr(instance, name)
        sub = child.model_dump_doc()
        nest_references(child, sub)
        doc[ref.key_name] = sub


def to_document_value(value: Any) -> Any:
    """A validated field value as stored: a referenced model becomes its primary key."""
    if isinstance(value, Model):
        return getattr(value, value.__primary_field__)
    if isinstance(value, EmbeddedModel):
        return value.model_dump_doc()
    if isinstance(value, list | tuple):
        return [to_document_value(v) for v in value]
    if isinstance(value, dict):
        return {k: to_document_value(v) for k, v in value.items()}
    return value
