"""Value encoding: JSON by default, attrs/pydantic/dataclasses through cattrs or explicit hooks."""

from __future__ import annotations

import dataclasses
import json
import math
from collections.abc import Callable
from typing import Any, Protocol, runtime_checkable

import attrs
import cattrs
from cattrs.preconf.json import make_converter

from ._errors import UncacheableValueError

try:  # orjson: same bytes as the stdlib encoder below, 5-15x faster
    import orjson
except ImportError:  # pragma: no cover - a platform without orjson wheels
    orjson = None  # type: ignore[assignment]


# orjson reads an integer beyond the 64-bit range as a float. Such an integer has at least 19 digits in a
# row; no float either encoder writes does (17 significant digits at most, then an exponent). Mapping every
# digit to "0" and searching for 19 zeros is two C-speed passes, a fraction of the parse.
_DIGITS_TO_ZERO = bytes(48 if 48 <= i <= 57 else 46 for i in range(256))
_LONG_DIGIT_RUN = b"0" * 19
_BASIC = (str, int, bool, type(None))


@runtime_checkable
class Serializer(Protocol):
    """Turns values into bytes and back; ``as_type`` asks for a typed value (``None``: plain JSON data)."""

    def dumps(self, value: Any) -> bytes:
        """``value`` as bytes; one it cannot store raises ``TypeError`` (e.g. ``UncacheableValueError``)."""
        ...

    def loads(self, data: bytes, as_type: Any = None) -> Any:
        """The value ``data`` encodes; with ``as_type``, rebuilt as that type."""
        ...


class JsonSerializer:
    """Compact UTF-8 JSON. Never pickle: cached bytes cannot run code when read back.

    Encodes JSON types natively; attrs classes (and ``datetime``, ``UUID``, sets… inside them)
    through a cattrs JSON converter; pydantic models through ``model_dump(mode="json")``;
    dataclasses through ``asdict``; anything else through ``encode`` when given.
    ``loads(data, as_type=User)`` rebuilds the type (pydantic ``model_validate`` or cattrs).

    Values never change on the way: integers of any size round-trip exactly, and NaN or
    ±infinity (which JSON cannot hold) raise :class:`UncacheableValueError` naming where they are.

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
        self._encoder = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False, allow_nan=False,
                                         default=self._default)

    def dumps(self, value: Any) -> bytes:
        """Compact UTF-8 JSON of ``value`` (orjson when installed, the same bytes as the stdlib encoder)."""
        if orjson is not None:
            try:
                out = orjson.dumps(value, default=self._default, option=orjson.OPT_NON_STR_KEYS)
            except orjson.JSONEncodeError:
                pass  # e.g. an int beyond 64 bits: the stdlib encoder handles it or explains why not
            else:
                # orjson writes NaN and ±inf as null: only a value with a null in it can hide one
                if b"null" in out and self._has_non_finite(value):
                    raise UncacheableValueError(self._non_finite(value, "the value") or "the value",
                                                _NON_FINITE)
                return out
        try:
            return self._encoder.encode(value).encode()
        except ValueError as exc:  # NaN/inf, an int over the digit limit, a circular reference
            where = self._non_finite(value, "the value")
            if where is not None:
                raise UncacheableValueError(where, _NON_FINITE) from None
            raise UncacheableValueError("the value", str(exc)) from None

    def loads(self, data: bytes, as_type: Any = None) -> Any:
        """The JSON value of ``data``; ``as_type`` rebuilds it (``decode`` hook, pydantic, or cattrs)."""
        if isinstance(data, str):
            data = data.encode()
        if orjson is not None and (len(data) < 19 or _LONG_DIGIT_RUN not in data.translate(_DIGITS_TO_ZERO)):
            try:
                value = orjson.loads(data)
            except orjson.JSONDecodeError:
                value = json.loads(data)  # NaN / Infinity tokens written by another JSON writer
        else:
            value = json.loads(data)  # exact for integers of any size
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

    def _has_non_finite(self, value: Any) -> bool:
        """Whether ``value`` holds a NaN or infinite float (a quick scan; :meth:`_non_finite` says where)."""
        stack = [value]
        seen: set[int] = set()
        pop, push, isfinite = stack.pop, stack.extend, math.isfinite
        while stack:
            v = pop()
            t = type(v)
            if t is float:
                if not isfinite(v):
                    return True
            elif t is str or t is int or t is bool or v is None:
                continue
            elif id(v) in seen or len(seen) > 100_000:
                continue  # a circular reference, or too big to search
            else:
                seen.add(id(v))
                if isinstance(v, dict):
                    push(v.values())
                elif isinstance(v, list | tuple):
                    push(v)
                elif not isinstance(v, _BASIC):
                    try:
                        push((self._default(v),))  # the same conversion the encoders apply
                    except Exception:
                        continue
        return False

    def _non_finite(self, value: Any, where: str, seen: set[int] | None = None) -> str | None:
        """Where in ``value`` a NaN or infinite float is (as ``the value['a'][0] = nan``), or ``None``."""
        if type(value) is float:
            return None if math.isfinite(value) else f"{where} = {value!r}"
        if isinstance(value, _BASIC):
            return None
        seen = set() if seen is None else seen
        if id(value) in seen or len(seen) > 100_000:
            return None  # a circular reference (the encoder reports it), or too big to search
        seen.add(id(value))
        if isinstance(value, dict):
            items: Any = value.items()
        elif isinstance(value, list | tuple):
            items = enumerate(value)
        else:
            try:
                converted = self._default(value)  # the same conversion the encoders apply
            except Exception:
                return None
            return self._non_finite(converted, where, seen)
        for key, item in items:
            found = self._non_finite(item, f"{where}[{key!r}]", seen)
            if found is not None:
                return found
        return None


_NON_FINITE = ("JSON has no NaN or infinity, and storing it as null would change the value "
               "(store None, or a string, instead)")
