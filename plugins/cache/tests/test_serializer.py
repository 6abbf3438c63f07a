"""The JSON serializer: the fast path writes exactly what the stdlib encoder writes; values never change."""

from __future__ import annotations

import datetime as dt
import json
import math
import re
import uuid
from decimal import Decimal
from typing import Any

import pytest
from kernel_cache import JsonSerializer, UncacheableValueError

VALUES: list[Any] = [
    {"id": 1, "name": "Ada ✓ ünïcode", "tags": ["a", "b"], "ok": True, "none": None, "f": 0.1},
    [1, 2.5, -3, "x", {"nested": [[]]}],
    "plain",
    12345678901234567890123,  # beyond 64 bits
    {1: "int key", "s": 2},
    3.0,
]


@pytest.mark.parametrize("value", VALUES)
def test_fast_path_matches_the_stdlib_encoder(value: Any) -> None:
    s = JsonSerializer()
    stdlib = s._encoder.encode(value).encode()
    assert s.dumps(value) == stdlib
    assert s.loads(s.dumps(value)) == s.loads(stdlib)


NON_FINITE: list[tuple[Any, str]] = [
    (float("nan"), "the value = nan"),
    ([1.5, float("inf")], "the value[1] = inf"),
    ({"a": {"b": [None, -math.inf]}}, "the value['a']['b'][1] = -inf"),
    ({"none": None, "x": float("nan"), "big": 2**70}, "the value['x'] = nan"),  # the stdlib path
]


@pytest.mark.parametrize(("value", "where"), NON_FINITE)
def test_non_finite_floats_are_refused_never_stored_as_null(value: Any, where: str) -> None:
    # JSON has no NaN/Infinity: storing null would change the value, so it is a clear error.
    s = JsonSerializer()
    with pytest.raises(UncacheableValueError, match=re.escape(f"cannot cache {where}: JSON has no NaN")):
        s.dumps(value)
    assert issubclass(UncacheableValueError, TypeError), "set() documents a TypeError for what it refuses"
    assert issubclass(UncacheableValueError, ValueError)
    # Values written by the stdlib encoder elsewhere (NaN tokens) are still readable.
    assert math.isnan(s.loads(b"NaN"))


BIG_INTS: list[Any] = [
    2**70,
    -(2**70),
    2**63,
    2**64 - 1,
    2**64,
    -(2**63) - 1,
    10**40,
    [1, 2**100, "12345678901234567890"],
    {"id": 2**70, "none": None, "f": 1e300, "small": -5},
]


@pytest.mark.parametrize("value", BIG_INTS)
def test_integers_of_any_size_round_trip_exactly(value: Any) -> None:
    s = JsonSerializer()
    back = s.loads(s.dumps(value))
    assert back == value
    assert repr(back) == repr(value), "never a float"


@pytest.mark.anyio
async def test_exact_values_through_both_backends(cache: Any) -> None:
    ns = cache.namespace("exact")
    await ns.set("big", 2**70)
    assert await ns.get("big") == 2**70
    assert type(await ns.get("big")) is int
    await ns.set_many({"a": [2**64, -(2**63) - 1], "b": {"n": 10**30, "none": None}})
    got = await ns.get_many(["a", "b"])
    assert repr(got) == repr({"a": [2**64, -(2**63) - 1], "b": {"n": 10**30, "none": None}})
    with pytest.raises(UncacheableValueError, match=r"the value\['p'\] = nan"):
        await ns.set("nan", {"p": float("nan")})
    with pytest.raises(UncacheableValueError, match=r"the value = inf"):
        await ns.set_many({"ok": 1, "inf": float("inf")})
    assert await ns.get_many(["nan", "ok", "inf"]) == {}, "nothing of a refused batch was stored"
    # the fixture deletes every key under the test's prefix


def test_explicit_hooks() -> None:
    s = JsonSerializer(encode=lambda o: {"decimal": str(o)}, decode=lambda v, t: t(v["decimal"]))
    assert s.dumps(Decimal("1.10")) == b'{"decimal":"1.10"}'
    assert s.loads(s.dumps(Decimal("1.10")), Decimal) == Decimal("1.10")
    assert s.loads(s.dumps(uuid.UUID(int=5))) == str(uuid.UUID(int=5))  # native: no hook needed


def test_datetimes_and_sets() -> None:
    s = JsonSerializer()
    when = dt.datetime(2024, 1, 2, 3, 4, 5, 600000, tzinfo=dt.UTC)
    assert s.loads(s.dumps({"at": when})) == {"at": "2024-01-02T03:04:05.600000+00:00"}
    assert sorted(s.loads(s.dumps({3, 1, 2}))) == [1, 2, 3]


def test_never_pickle() -> None:
    s = JsonSerializer()
    with pytest.raises(TypeError, match="cannot cache a Thing as JSON"):
        s.dumps(type("Thing", (), {})())
    with pytest.raises(UnicodeDecodeError):  # pickled bytes are undecodable data, never unpickled
        s.loads(b"\x80\x04\x95 pickle bytes")


def test_batch_encoding_matches_one_by_one() -> None:
    # dumps_many / loads_many (get_many and set_many use them) give exactly what dumps / loads give.
    s = JsonSerializer()
    values: list[Any] = [*VALUES, *BIG_INTS, None, {"none": None, "f": 0.5}]
    assert s.dumps_many(values) == [s.dumps(v) for v in values]
    datas = [s.dumps(v) for v in values]
    assert (
        repr(s.loads_many(datas))
        == repr([s.loads(d) for d in datas])
        == repr([s.loads(s.dumps(v)) for v in values])
    )
    with pytest.raises(UncacheableValueError, match=r"the value\['x'\] = nan"):
        s.dumps_many([1, None, {"x": float("nan")}])
    with pytest.raises(json.JSONDecodeError):  # the caller then decodes one by one
        s.loads_many([b"1", b"not json"])


def _long_digit_run(data: bytes) -> bool:
    return re.search(rb"[0-9]{19}", data) is not None


def test_long_integer_check_is_exact_at_every_alignment() -> None:
    # The check samples every 4th byte before scanning all of them: a 19-digit integer is found
    # wherever it starts, and 18 digits (an int orjson reads exactly) never send a value the slow way.
    from kernel_cache._serializer import _may_hold_long_int

    for pad in range(8):
        for number in (10**17, -(10**18) + 1, 10**18, 2**64, -(2**63) - 1, 10**30):
            data = b'{"' + b"k" * pad + b'":[1.5,"2026-12-01T22:57:00.000Z",' + str(number).encode() + b"]}"
            assert _may_hold_long_int(data) == _long_digit_run(data) == (abs(number) >= 10**18), data
        for text in (b"1234-5678-9012-3456", b"+1 555 123 4567", b"1" * 18, b"x" * pad + b"9" * 19):
            data = b'{"t":"' + b"." * pad + text + b'","f":98.5}'
            assert _may_hold_long_int(data) == _long_digit_run(data), data


@pytest.mark.parametrize("pad", range(4))
def test_long_integers_in_a_batch_decode_exactly_at_every_alignment(pad: int) -> None:
    s = JsonSerializer()
    values: list[Any] = [
        {"id": 123, "name": "x" * pad, "score": 98.5, "at": "2026-12-01T22:57:00Z"},
        {"nested": {"big": [2**64 + pad, {"neg": -(2**63) - 1 - pad}]}, "f": 1e19, "s": "9" * 25},
        [0.1, -2.5e-300, 9223372036854775807, 18446744073709551615, -9223372036854775808],
        "x" * pad + "12345678901234567890",
    ]
    datas = [s.dumps(v) for v in values]
    for batch in (datas, datas[:1], datas[2:], [datas[0], datas[3]]):
        got = s.loads_many(batch)
        assert repr(got) == repr([json.loads(d) for d in batch])
        assert repr(got) == repr([s.loads(d) for d in batch])
    assert repr(s.loads_many(datas)) == repr(values)
