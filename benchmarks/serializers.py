"""Serializers: the cache's ``JsonSerializer`` vs the library calls it wraps.

Raw baselines are what a caller would write without the layer: ``orjson.dumps`` /
``orjson.loads`` of the same value, and for typed reads ``orjson.loads`` then a cattrs JSON
converter's ``structure`` into the same attrs class. Ours adds the NaN/infinity and big-integer
checks and the typed-read dispatch. CPU-bound: instruction mode counts every case.
"""

from __future__ import annotations

from typing import Any

import attrs
import orjson
from cattrs.preconf.json import make_converter
from kernel_cache import JsonSerializer

from ._harness import PROFILE, compare, rounds

SUITE = "serializers"
VALUE = PROFILE


@attrs.define
class User:
    id: int
    name: str
    email: str
    roles: list[str]
    active: bool
    score: float


def run(quick: bool) -> None:
    ours = JsonSerializer()
    converter = make_converter()
    data = orjson.dumps(VALUE)
    ops, n = 20_000, rounds(15, 5)

    def raw_typed() -> Any:
        return converter.structure(orjson.loads(data), User)

    compare(SUITE, "cache_dumps", lambda: ours.dumps(VALUE), lambda: orjson.dumps(VALUE), ops=ops, rounds_=n)
    compare(SUITE, "cache_loads", lambda: ours.loads(data), lambda: orjson.loads(data), ops=ops, rounds_=n)
    compare(SUITE, "cache_loads_typed", lambda: ours.loads(data, User), raw_typed, ops=ops // 4, rounds_=n)


cpu_bound = run
