"""What callers pass in, checked and shaped as documents: new instances, update changes, projections."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from datetime import UTC, datetime
from typing import Any, Generic, TypeVar

import pydantic
from kernel_errors import ValidationError
from odmantic import Model

from ._references import to_document_value

M = TypeVar("M", bound=Model)

AUDIT_FIELDS = ("created_at", "updated_at", "created_by", "updated_by", "schema_version")
"""Document keys the repository owns: stamped on every write, never taken from update data."""

Projection = str | Iterable[str] | Mapping[str, Any]
"""``"name email"``, ``["name", "-password"]`` or a projection mapping."""

_AUDIT = frozenset(AUDIT_FIELDS)
_MANAGED = "managed by the repository"


def now() -> datetime:
    """The current UTC time as BSON keeps it (milliseconds): the value returned equals the one read back."""
    current = datetime.now(UTC)
    return current.replace(microsecond=current.microsecond // 1000 * 1000)


def projection(select: Projection | None) -> dict[str, Any] | None:
    """The projection document for ``select`` (``"-name"`` excludes, ``"+name"``/``"name"`` includes)."""
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


class WriteInput(Generic[M]):
    """Validation of create and update data for one model; ``ValidationError`` lists the problems."""

    __slots__ = ("_adapters", "_keys", "_model", "_primary")

    def __init__(self, model: type[M]) -> None:
        self._model = model
        self._primary = model.__primary_field__
        self._keys = {name: f.key_name for name, f in model.__odm_fields__.items()}
        self._adapters: dict[str, pydantic.TypeAdapter[Any]] = {}

    def instance(self, data: M | Mapping[str, Any]) -> M:
        """``data`` as a model instance (a mapping is validated; audit fields are refused)."""
        if isinstance(data, self._model):
            return data
        name = self._model.__name__
        if not isinstance(data, Mapping):
            raise ValidationError(f"expected a {name} or a mapping, got {type(data).__name__}")
        managed = sorted(_AUDIT.intersection(data))
        if managed:
            raise ValidationError(
                f"{', '.join(managed)} are managed by the repository", errors=dict.fromkeys(managed, _MANAGED)
            )
        try:
            return self._model(**data)
        except pydantic.ValidationError as exc:
            errors = [
                {"field": ".".join(str(p) for p in err["loc"]) or "__root__", "message": err["msg"]}
                for err in exc.errors()
            ]
            raise ValidationError(f"invalid {name}", errors=errors) from None

    def changes(self, data: Mapping[str, Any] | Model) -> dict[str, Any]:
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
            problem = self._field_problem(name)
            if problem is None:
                try:
                    out[self._keys[name]] = to_document_value(self._adapter(name).validate_python(value))
                except pydantic.ValidationError as exc:
                    problem = "; ".join(e["msg"] for e in exc.errors())
            if problem is not None:
                problems[str(name)] = problem
        if problems:
            raise ValidationError(f"invalid {self._model.__name__} update", errors=problems)
        return out

    def _field_problem(self, name: str) -> str | None:
        if name in _AUDIT:
            return _MANAGED
        if name == self._primary or name not in self._keys:
            return "not an updatable field of " + self._model.__name__
        return None

    def _adapter(self, name: str) -> pydantic.TypeAdapter[Any]:
        adapter = self._adapters.get(name)
        if adapter is None:
            info = self._model.model_fields[name]
            adapter = self._adapters[name] = pydantic.TypeAdapter(info.annotation or Any)
        return adapter
