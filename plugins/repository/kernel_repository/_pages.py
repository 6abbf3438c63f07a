"""Pages: offset pagination results, keyset pagination and its opaque cursor codec."""

from __future__ import annotations

import base64
import math
from typing import Any, Generic, TypeVar

import attrs
import bson
from kernel_errors import ValidationError

T = TypeVar("T")


@attrs.frozen
class Pagination:
    """Offset pagination metadata: the ``pagination`` object of a page response."""

    page: int
    limit: int
    total: int
    pages: int
    has_next: bool
    has_prev: bool

    @classmethod
    def of(cls, page: int, limit: int, total: int) -> Pagination:
        """The metadata of page ``page`` of ``limit`` items out of ``total``."""
        pages = math.ceil(total / limit) if total else 0
        return cls(page, limit, total, pages, page < pages, page > 1)

    def to_dict(self) -> dict[str, int | bool]:
        """The fields as a JSON-ready mapping."""
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
        """Whether another page follows (``next_cursor`` is set)."""
        return self.next_cursor is not None


def check_page(page: object) -> None:
    """Raise ``ValidationError`` unless ``page`` is an integer >= 1."""
    if not isinstance(page, int) or isinstance(page, bool) or page < 1:
        raise ValidationError(f"page must be an integer >= 1, got {page!r}", {"field": "page"})


def check_limit(limit: object, max_limit: int) -> None:
    """Raise ``ValidationError`` unless ``limit`` is an integer in ``1..max_limit``."""
    if not isinstance(limit, int) or isinstance(limit, bool) or not 1 <= limit <= max_limit:
        raise ValidationError(
            f"limit must be an integer between 1 and {max_limit}, got {limit!r}", {"field": "limit"}
        )


def check_skip_limit(skip: object, limit: object) -> None:
    """Raise ``ValidationError`` unless ``skip`` is an integer >= 0 and ``limit`` one or ``None``."""
    if not isinstance(skip, int) or isinstance(skip, bool) or skip < 0:
        raise ValidationError(f"skip must be an integer >= 0, got {skip!r}", {"field": "skip"})
    if limit is not None and (not isinstance(limit, int) or isinstance(limit, bool) or limit < 0):
        raise ValidationError(f"limit must be an integer >= 0, got {limit!r}", {"field": "limit"})


class Keyset:
    """Keyset pagination over one sort field (``_id`` breaks ties): order, seek filter, cursors."""

    __slots__ = ("direction", "field")

    def __init__(self, keys: list[tuple[str, int]]) -> None:
        if len(keys) != 1:
            raise ValidationError("find_after sorts by exactly one field", {"field": "sort"})
        self.field, self.direction = keys[0]

    @property
    def order(self) -> list[tuple[str, int]]:
        """The sort keys: the field, then ``_id`` in the same direction."""
        if self.field == "_id":
            return [("_id", self.direction)]
        return [(self.field, self.direction), ("_id", self.direction)]

    def after(self, query: dict[str, Any], cursor: str) -> dict[str, Any]:
        """``query`` narrowed to the documents after the one ``cursor`` names."""
        value, last_id = self.decode(cursor)
        op = "$gt" if self.direction == 1 else "$lt"
        if self.field == "_id":
            seek: dict[str, Any] = {"_id": {op: last_id}}
        else:
            seek = {"$or": [{self.field: {op: value}}, {self.field: value, "_id": {op: last_id}}]}
        return {"$and": [query, seek]} if query else seek

    def encode(self, doc: dict[str, Any]) -> str:
        """The opaque cursor pointing after ``doc``."""
        raw = bson.encode({"f": self.field, "d": self.direction, "v": doc.get(self.field), "i": doc["_id"]})
        return base64.urlsafe_b64encode(raw).decode().rstrip("=")

    def decode(self, cursor: str) -> tuple[Any, Any]:
        """The ``(sort value, _id)`` a cursor of this sort holds; ``ValidationError`` otherwise."""
        try:
            doc = bson.decode(base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)))
            if doc["f"] != self.field or doc["d"] != self.direction:
                raise ValueError("cursor belongs to another sort")
            return doc["v"], doc["i"]
        except Exception:
            raise ValidationError("invalid or foreign pagination cursor", {"field": "after"}) from None
