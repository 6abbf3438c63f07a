"""Query hygiene: reject server-side JavaScript operators, build safe filters from user input, sorts."""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime
from typing import Any

from bson import ObjectId
from kernel_errors import ValidationError
from odmantic.field import FieldProxy
from odmantic.query import SortExpression

FORBIDDEN_OPERATORS = frozenset({"$where", "$function", "$accumulator"})
"""Operators that run JavaScript on the server; never accepted in a filter."""

Filter = Mapping[str, Any]
SortSpec = str | FieldProxy | SortExpression | tuple[str, int] | Sequence[Any] | Mapping[str, int] | None

_REGEX_FLAGS = ((re.IGNORECASE, "i"), (re.MULTILINE, "m"), (re.DOTALL, "s"), (re.VERBOSE, "x"))
_SCALARS = (str, int, float, bool, ObjectId, datetime, type(None))


def _regex(pattern: re.Pattern[str]) -> dict[str, str]:
    # `{"$regex": ..., "$options": ...}` is what MongoDB stores a compiled pattern as; the wire
    # server rejects the BSON regex type, so send the equivalent operator form everywhere.
    options = "".join(letter for flag, letter in _REGEX_FLAGS if pattern.flags & flag)
    out = {"$regex": pattern.pattern}
    if options:
        out["$options"] = options
    return out


def _clean(value: Any, path: str, depth: int) -> Any:
    if depth > 32:
        raise ValidationError("filter is nested too deeply", {"field": path})
    if isinstance(value, Mapping):
        out: dict[str, Any] = {}
        for key, item in value.items():
            if not isinstance(key, str):
                raise ValidationError(
                    f"filter keys must be strings, got {type(key).__name__}", {"field": path}
                )
            if key in FORBIDDEN_OPERATORS:
                raise ValidationError(
                    f"operator {key} is not allowed in filters (it runs JavaScript on the server)",
                    {"field": f"{path}.{key}" if path else key},
                )
            if isinstance(item, re.Pattern) and key != "$in" and key != "$nin":
                if key == "$regex":
                    out.update(_regex(item))
                    continue
                out[key] = _regex(item)
                continue
            out[key] = _clean(item, f"{path}.{key}" if path else key, depth + 1)
        return out
    if isinstance(value, list | tuple):
        return [_clean(item, path, depth + 1) for item in value]
    return value


def prepare_filter(criteria: Filter | None) -> dict[str, Any]:
    """A copy of ``criteria`` with JavaScript operators rejected (at any depth) and regexes normalised.

    Accepts plain dicts and odmantic query expressions (``User.age >= 18``,
    ``query.and_(...)``). Raises the ``errors`` plugin's ``ValidationError``.
    """
    if criteria is None:
        return {}
    if not isinstance(criteria, Mapping):
        raise ValidationError(f"filter must be a mapping, got {type(criteria).__name__}")
    return _clean(criteria, "", 0)  # type: ignore[no-any-return]


def user_filter(params: Mapping[str, Any], allowed: Iterable[str]) -> dict[str, Any]:
    """An equality-only filter from untrusted input (query string, JSON body).

    Only ``allowed`` field names, only scalar values (or lists of scalars, matched with
    ``$in``): no operator key and no nested document can reach the database, so
    ``{"password": {"$ne": ""}}`` style injection is a ``ValidationError``.
    """
    permitted = set(allowed)
    out: dict[str, Any] = {}
    problems: dict[str, str] = {}
    for key, value in params.items():
        if not isinstance(key, str) or key.startswith("$") or "." in key or key not in permitted:
            problems[str(key)] = "unknown or not filterable field"
        elif isinstance(value, list | tuple):
            if not all(isinstance(v, _SCALARS) for v in value):
                problems[key] = "list items must be plain values"
            else:
                out[key] = {"$in": list(value)}
        elif isinstance(value, _SCALARS):
            out[key] = value
        else:
            problems[key] = "must be a plain value, not an object"
    if problems:
        raise ValidationError("invalid filter", errors=problems)
    return out


def normalize_sort(sort: SortSpec) -> list[tuple[str, int]] | None:
    """``"-created_at"``, ``User.name``, ``desc(User.age)``, ``[("a", 1)]``, ``{"a": -1}`` → keys."""
    if sort is None:
        return None
    if isinstance(sort, str):
        sort = sort.strip()
        if not sort:
            return None
        if "," in sort or " " in sort:
            return [item for part in re.split(r"[,\s]+", sort) if part for item in normalize_sort(part) or []]
        name = sort.lstrip("+-")
        if not name or name.startswith("$"):
            raise ValidationError(f"invalid sort field {sort!r}", {"field": "sort"})
        return [(name, -1 if sort.startswith("-") else 1)]
    if isinstance(sort, FieldProxy):
        return normalize_sort(+sort)
    if isinstance(sort, Mapping):
        out = []
        for key, direction in sort.items():
            if direction not in (1, -1) or not isinstance(key, str) or key.startswith("$"):
                raise ValidationError(f"invalid sort {key!r}: {direction!r}", {"field": "sort"})
            out.append((key, int(direction)))
        return out
    if isinstance(sort, tuple) and len(sort) == 2 and isinstance(sort[0], str) and sort[1] in (1, -1):
        return [(sort[0], int(sort[1]))]
    if isinstance(sort, Sequence):
        parts: Sequence[Any] = sort
        return [item for part in parts for item in normalize_sort(part) or []]
    raise ValidationError(f"unsupported sort specification {sort!r}", {"field": "sort"})
