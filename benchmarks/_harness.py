"""Interleaved, median-based comparison of our layer against the raw library.

Every case prints one line::

    bench <suite>.<case> ours=<µs/op> raw=<µs/op> ratio=<ours/raw>

The ratio is always a cost: 1.00 is as fast as raw, lower is better.
"""

from __future__ import annotations

import inspect
import statistics
import time
from collections.abc import Awaitable, Callable
from typing import Any

import attrs

QUICK = False
"""Set by the runner; suites read it through :func:`rounds`."""


@attrs.frozen
class Result:
    suite: str
    case: str
    ours_us: float
    raw_us: float

    @property
    def ratio(self) -> float:
        return self.ours_us / self.raw_us if self.raw_us else float("inf")

    def line(self) -> str:
        return (f"bench {self.suite}.{self.case} ours={self.ours_us:.2f} "
                f"raw={self.raw_us:.2f} ratio={self.ratio:.2f}")


RESULTS: list[Result] = []


def rounds(full: int, quick: int) -> int:
    """How many rounds to run in the current mode."""
    return quick if QUICK else full


def emit(suite: str, case: str, ours_us: float, raw_us: float) -> Result:
    """Record and print one result line (for suites that time things themselves)."""
    result = Result(suite, case, ours_us, raw_us)
    RESULTS.append(result)
    print(result.line(), flush=True)
    return result


def _per_op(fn: Callable[[], Any], n: int) -> float:
    t0 = time.perf_counter()
    for _ in range(n):
        fn()
    return (time.perf_counter() - t0) / n * 1e6


async def _aper_op(fn: Callable[[], Awaitable[Any]], n: int) -> float:
    t0 = time.perf_counter()
    for _ in range(n):
        await fn()
    return (time.perf_counter() - t0) / n * 1e6


def compare(suite: str, case: str, ours: Callable[[], Any], raw: Callable[[], Any], *,
            ops: int, rounds_: int, warmup: int = 1) -> Result:
    """Time sync callables: ``rounds_`` interleaved rounds of ``ops`` calls each, medians."""
    for _ in range(warmup):
        _per_op(ours, ops)
        _per_op(raw, ops)
    o: list[float] = []
    r: list[float] = []
    for i in range(rounds_):
        if i % 2:
            r.append(_per_op(raw, ops))
            o.append(_per_op(ours, ops))
        else:
            o.append(_per_op(ours, ops))
            r.append(_per_op(raw, ops))
    return emit(suite, case, statistics.median(o), statistics.median(r))


async def acompare(suite: str, case: str, ours: Callable[[], Awaitable[Any]],
                   raw: Callable[[], Awaitable[Any]], *, ops: int, rounds_: int,
                   warmup: int = 1) -> Result:
    """Like :func:`compare` for async callables (awaited one after another)."""
    for _ in range(warmup):
        await _aper_op(ours, ops)
        await _aper_op(raw, ops)
    o: list[float] = []
    r: list[float] = []
    for i in range(rounds_):
        if i % 2:
            r.append(await _aper_op(raw, ops))
            o.append(await _aper_op(ours, ops))
        else:
            o.append(await _aper_op(ours, ops))
            r.append(await _aper_op(raw, ops))
    return emit(suite, case, statistics.median(o), statistics.median(r))


async def acompare_batches(suite: str, case: str, ours: Callable[[], Awaitable[int]],
                           raw: Callable[[], Awaitable[int]], *, rounds_: int,
                           warmup: int = 1) -> Result:
    """For throughput cases: each call processes a batch and returns how many ops it did."""
    async def per_op(fn: Callable[[], Awaitable[int]]) -> float:
        t0 = time.perf_counter()
        n = await fn()
        return (time.perf_counter() - t0) / max(n, 1) * 1e6

    for _ in range(warmup):
        await per_op(ours)
        await per_op(raw)
    o: list[float] = []
    r: list[float] = []
    for i in range(rounds_):
        first, second = (raw, ours) if i % 2 else (ours, raw)
        a = await per_op(first)
        b = await per_op(second)
        if i % 2:
            r.append(a)
            o.append(b)
        else:
            o.append(a)
            r.append(b)
    return emit(suite, case, statistics.median(o), statistics.median(r))


def is_async(fn: Callable[..., Any]) -> bool:
    return inspect.iscoroutinefunction(fn)
