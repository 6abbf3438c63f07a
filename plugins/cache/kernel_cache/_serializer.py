"""Value encoding: JSON by default, attrs/pydantic/dataclasses through cattrs or explicit hooks."""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Callable
from typing import Any, Protocol, runtime_checkable

import attrs
import cattrs
from cattrs.preconf.json import make_converter

try:  # orjson: same bytes as the stdlib encoder below, 5-15x faster
    import orjson
except ImportError:  # pragma: no cover - a platform without orjson wheels
    orjson = None  # type: ignore[assignment]


@runtime_checkable
class Serializer(Protocol):
    """Turns values into bytes and back; ``as_type`` asks for a typed value (``None``: plain JSON data)."""

    def dumps(self, value: Any) -> bytes: ...

    def loads(self, data: bytes, as_type: Any = None) -> Any: ...


class JsonSerializer:
    """Compact UTF-8 JSON. Never pickle: cached bytes cannot run code when read back.

    Encodes JSON types natively; attrs classes (and ``datetime``, ``UUID``, sets… inside them)
    through a cattrs JSON converter; pydantic models through ``model_dump(mode="json")``;
    dataclasses through ``asdict``; anything else through ``encode`` when given.
    ``loads(data, as_type=User)`` rebuilds the type (pydantic ``model_validate`` or cattrs).

    >>> s = JsonSerializer()
    >>> s.loads(s.dumps({"id": 1, "tags": ["a"]}))
    {'id': 1, 'tags': ['a']}
    """

    def __init__(
        self,
        *,
        converter: cattrs.Converter | None = None,
        encode: Callable[[Any], Any] | None = None,
        decode: Callable[[Any, Any], Any] | None = None,
    ) -> None:
        self.converter = converter if converter is not None else make_converter()
        self._encode = encode
        self._decode = decode
        self._encoder = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False, default=self._default)

    def dumps(self, value: Any) -> bytes:
        if orjson is not None:
            try:
                return orjson.dumps(value, default=self._default, option=orjson.OPT_NON_STR_KEYS)
            except orjson.JSONEncodeError:
                pass  # e.g. an int beyond 64 bits: the stdlib encoder handles it or explains why not
        return self._encoder.encode(value).encode()

    def loads(self, data: bytes, as_type: Any = None) -> Any:
        if orjson is not None:
            try:
                value = orjson.loads(data)
            except orjson.JSONDecodeError:
                value = json.loads(data)  # NaN / Infinity written by the stdlib encoder
        else:
            value = json.loads(data)
        if as_type is None:
            return value
        if self._decode is not None:
            return self._decode(value, as_type)
        validate = getattr(as_type, "model_validate", None)
        if validate is not None:
            return validate(value)
        return self.converter.structure(value, as_type)

    def _default(self, obj: Any) -> Any:
        if self._encode is not None:
            return self._encode(obj)
        if attrs.has(type(obj)):
            return self.converter.unstructure(obj)
        dump = getattr(obj, "model_dump", None)
        if callable(dump):
            return dump(mode="json")
        if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
            return self.converter.unstructure(dataclasses.asdict(obj))
        if isinstance(obj, set | frozenset):
            return list(obj)
        raise TypeError(
            f"cannot cache a {type(obj).__qualname__} as JSON: cache plain data, an attrs class, a "
            "pydantic model or a dataclass, or give JsonSerializer(encode=...) a hook"
        )
