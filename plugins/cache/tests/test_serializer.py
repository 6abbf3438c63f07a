"""The JSON serializer: the fast path writes exactly what the stdlib encoder writes; edge values."""

from __future__ import annotations

import datetime as dt
import math
import uuid
from decimal import Decimal
from typing import Any

import pytest
from kernel_cache import JsonSerializer

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


def test_non_finite_floats_become_null() -> None:
    # JSON has no NaN/Infinity: they are stored as null (documented).
    s = JsonSerializer()
    assert s.loads(s.dumps([float("nan"), float("inf"), 1.5])) == [None, None, 1.5]
    # Values written by the stdlib encoder elsewhere (NaN tokens) are still readable.
    assert math.isnan(s.loads(b"NaN"))


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
