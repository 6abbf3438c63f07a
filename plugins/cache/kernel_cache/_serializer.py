"""Value encoding: JSON by default, attrs/pydantic/dataclasses through cattrs or explicit hooks."""

from __future__ import annotations

import contextlib
import dataclasses
import json
import math
from collections.abc import Callable, Iterable, Sequence
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
# digit to "0" and searching for 19 zeros is two C-speed passes (``find``: cheaper than ``in``, which goes
# through the buffer protocol); the mapping costs ~9 instructions a byte. _may_hold_long_int() maps only
# every 4th byte first: 19 digits in a row hold at least 4 of them, so 4 zeros in a row there.
_DIGITS_TO_ZERO = bytes(48 if 48 <= i <= 57 else 46 for i in range(256))
_LONG_DIGIT_RUN = b"0" * 19
_STRIDE = 4
_SAMPLED_RUN = b"0" * (len(_LONG_DIGIT_RUN) // _STRIDE)


def _may_hold_long_int(data: bytes) -> bool:
    """Whether ``data`` has 19 ASCII digits in a row (orjson would read such an integer as a float).

    Exact: a quarter of the bytes first (every 4th byte: any 19 consecutive positions hold 4 multiples
    of 4, so a run of 19 digits leaves 4 digits in a row there); all of them only when that sample has
    4 digits in a row (never from an ISO timestamp; from about 1 UUID or phone number in 3).
    """
    if len(data) < 19 or data[::_STRIDE].translate(_DIGITS_TO_ZERO).find(_SAMPLED_RUN) < 0:
        return False
    return data.translate(_DIGITS_TO_ZERO).find(_LONG_DIGIT_RUN) >= 0


_BASIC = (str, int, bool, type(None))
_SCALARS = frozenset(_BASIC)
_MAX_DEPTH = 1000  # deeper than orjson (254) or the stdlib encoder (the recursion limit) ever writes


@runtime_checkable
class Serializer(Protocol):
    """Turns values into bytes and back; ``as_type`` asks for a typed value (``None``: plain JSON data).

    Optional: ``dumps_many(values) -> list[bytes]`` and ``loads_many(datas, as_type) -> list`` (as
    :class:`JsonSerializer` has), which ``set_many`` / ``get_many`` then call once per batch.
    """

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
        # as_type -> its pydantic ``model_validate`` (None: cattrs); a failed getattr costs on every read
        self._validators: dict[Any, Callable[[Any], Any] | None] = {}
        self._encoder = json.JSONEncoder(
            separators=(",", ":"), ensure_ascii=False, allow_nan=False, default=self._default
        )

    def dumps(self, value: Any) -> bytes:
        """Compact UTF-8 JSON of ``value`` (orjson when installed, the same bytes as the stdlib encoder)."""
        if orjson is not None:
            try:  # the common case inline: plain data with string keys
                out: bytes | None = orjson.dumps(value, default=self._default)
            except orjson.JSONEncodeError:
                out = self._orjson_dumps(value)
            if out is not None:
                # orjson writes NaN and ±inf as null: only a value with a null in it can hide one
                if out.find(b"null") >= 0 and self._has_non_finite(value):
                    raise UncacheableValueError(
                        self._non_finite(value, "the value") or "the value", _NON_FINITE
                    )
                return out
        return self._stdlib_dumps(value)

    def dumps_many(self, values: Iterable[Any]) -> list[bytes]:
        """:meth:`dumps` of each of ``values``, in order (one scan for NaN/inf hiding behind ``null``)."""
        if orjson is None:
            return [self.dumps(v) for v in values]
        values = list(values)
        dumps, default = orjson.dumps, self._default
        try:
            outs = [dumps(v, default=default) for v in values]
        except orjson.JSONEncodeError:
            return [self.dumps(v) for v in values]  # a rare value: each as dumps decides
        if b"\n".join(outs).find(b"null") >= 0:
            for value, out in zip(values, outs, strict=True):
                if out.find(b"null") >= 0 and self._has_non_finite(value):
                    raise UncacheableValueError(
                        self._non_finite(value, "the value") or "the value", _NON_FINITE
                    )
        return outs

    def _orjson_dumps(self, value: Any) -> bytes | None:
        """orjson's bytes of ``value`` (NaN/inf unchecked); ``None``: only the stdlib encoder writes it."""
        try:
            return orjson.dumps(value, default=self._default)
        except orjson.JSONEncodeError:
            pass  # a dict key that is not a string (the option below costs on every call), or worse
        try:
            return orjson.dumps(value, default=self._default, option=orjson.OPT_NON_STR_KEYS)
        except orjson.JSONEncodeError:
            return None  # e.g. an int beyond 64 bits: the stdlib encoder handles it or explains why not

    def _stdlib_dumps(self, value: Any) -> bytes:
        try:
            return self._encoder.encode(value).encode()
        except ValueError as exc:  # NaN/inf, an int over the digit limit, a circular reference
            where = self._non_finite(value, "the value")
            if where is not None:
                raise UncacheableValueError(where, _NON_FINITE) from None
            raise UncacheableValueError("the value", str(exc)) from None

    def loads(self, data: bytes, as_type: Any = None) -> Any:
        """The JSON value of ``data``; ``as_type`` rebuilds it (``decode`` hook, pydantic, or cattrs)."""
        if type(data) is not bytes and isinstance(data, str):
            data = data.encode()
        if orjson is not None and not _may_hold_long_int(data):
            try:
                value = orjson.loads(data)
            except orjson.JSONDecodeError:
                value = json.loads(data)  # NaN / Infinity tokens written by another JSON writer
        else:
            value = json.loads(data)  # exact for integers of any size
        if as_type is None:
            return value
        return self._typed(value, as_type)

    def loads_many(self, datas: Sequence[bytes], as_type: Any = None) -> list[Any]:
        """:meth:`loads` of each of ``datas``, in order; raises at the first that cannot be read.

        One scan of all the bytes for long digit runs instead of one per value. A caller that
        wants the readable ones despite a bad one decodes one by one after the error.
        """
        if orjson is None:
            return [self.loads(d, as_type) for d in datas]
        joined = b"\n".join(datas)  # a str among them: TypeError, the caller goes one by one
        if _may_hold_long_int(joined):
            return [self.loads(d, as_type) for d in datas]
        parse = orjson.loads
        if as_type is None:
            return list(map(parse, datas))  # no bytecode per value (a comprehension runs ~8)
        typed = self._typed
        return [typed(parse(d), as_type) for d in datas]

    def _typed(self, value: Any, as_type: Any) -> Any:
        """JSON data ``value`` rebuilt as ``as_type``."""
        if self._decode is not None:
            return self._decode(value, as_type)
        try:
            validate = self._validators[as_type]
        except (KeyError, TypeError):  # first use of this type, or an unhashable one
            validate = getattr(as_type, "model_validate", None)
            if len(self._validators) < 1024:  # types come from code: a handful, never unbounded
                with contextlib.suppress(TypeError):
                    self._validators[as_type] = validate
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

    def _has_non_finite(self, value: Any, depth: int = 0) -> bool:
        """Whether ``value`` holds a NaN or infinite float (a quick scan; :meth:`_non_finite` says where).

        Called once an encoder has written ``value``, so it holds no circular reference. Plain
        items are skipped inline; only containers and other objects cost a call.
        """
        t = type(value)
        if t is dict:
            items: Any = value.values()
        elif t is list or t is tuple:
            items = value
        else:
            return self._other_non_finite(value, depth)
        depth += 1
        for v in items:
            tv = type(v)
            if tv in _SCALARS:
                continue
            if tv is float:
                if v - v != 0.0:  # NaN - NaN and inf - inf are NaN; any finite float gives 0.0
                    return True
            elif self._has_non_finite(v, depth):
                return True
        return False

    def _other_non_finite(self, value: Any, depth: int) -> bool:
        """:meth:`_has_non_finite` of anything but a plain dict, list or tuple."""
        if type(value) in _SCALARS:
            return False
        if isinstance(value, float):
            return not math.isfinite(value)
        if depth > _MAX_DEPTH or isinstance(value, _BASIC):
            return False  # an int or str subclass, or too deep to search
        if isinstance(value, dict):
            return any(self._has_non_finite(v, depth + 1) for v in value.values())
        if isinstance(value, list | tuple):
            return any(self._has_non_finite(v, depth + 1) for v in value)
        try:
            converted = self._default(value)  # the same conversion the encoders apply
        except Exception:
            return False
        return self._has_non_finite(converted, depth + 1)

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


_NON_FINITE = (
    "JSON has no NaN or infinity, and storing it as null would change the value "
    "(store None, or a string, instead)"
)
