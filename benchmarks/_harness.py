"""Interleaved, median-based comparison of our layer against the raw library.

Every case prints one line::

    bench <suite>.<case> ours=<µs/op> raw=<µs/op> ratio=<ours/raw> iqr=<q1>..<q3> [target=<t> <verdict>]

- ``ours`` / ``raw``: the **median** over the rounds of each side's µs per operation. Rounds
  alternate which side goes first (ours, raw / raw, ours / ...).
- ``ratio``: a cost, the **ratio of the two medians** (median ours / median raw): 1.00 is as
  fast as raw, lower is better.
- ``iqr``: the interquartile range (25th..75th percentile) of the **per-round ratios** (ours / raw
  of the same round): how much the ratio moved during the run. On a loaded machine it is wide.
- ``target``: the ratio the case must not exceed, when it has one. The verdict is ``met`` when
  the whole IQR is at or below it, ``missed`` when the whole IQR is above it, and
  ``straddles`` when the IQR contains it: this run cannot tell.

Redis suites also print the best the machine does with the same work, raw, on its own line::

    ceiling <suite>.<case> raw=<µs/op> iqr=<q1>..<q3>

In instruction mode (``python -m benchmarks --instructions``, see :mod:`benchmarks._instructions`)
the same ``compare`` / ``acompare`` / ``acompare_batches`` calls do not time anything: each side
runs once under callgrind and the line reads
``bench <suite>.<case> ours=<Ir/op> raw=<Ir/op> ratio=<..> unit=instructions``.
"""

from __future__ import annotations

import inspect
import math
import statistics
import threading
import time
from collections.abc import Awaitable, Callable, Sequence
from contextlib import AbstractContextManager
from types import TracebackType
from typing import TYPE_CHECKING, Any, Generic, TypeVar

import attrs

QUICK = False
"""Set by the runner; suites read it through :func:`rounds`."""
PROFILE: dict[str, Any] = {
    "id": 123,
    "name": "Ada Lovelace",
    "email": "ada@example.com",
    "roles": ["admin", "dev"],
    "active": True,
    "score": 98.5,
}
"""A small user record: the value the cache and serializer suites store and encode."""


if TYPE_CHECKING:  # its one implementation, named rather than restated as a protocol
    from ._instructions import Callgrind as Counter

COUNTER: Counter | None = None
"""Set by the instruction-mode child process (:mod:`benchmarks._instructions`): in instruction
mode it runs one side of a case between markers instead of timing it."""


def counting() -> bool:
    """True in an instruction-mode child: nothing is timed, suites should skip I/O-bound work."""
    return COUNTER is not None


def quartiles(values: Sequence[float]) -> tuple[float, float]:
    """25th and 75th percentiles (inclusive method); one value is its own range."""
    if not values:
        return math.nan, math.nan
    if len(values) == 1:
        return values[0], values[0]
    q = statistics.quantiles(values, n=4, method="inclusive")
    return q[0], q[2]


def verdict(low: float, high: float, target: float) -> str:
    """``met`` / ``straddles`` / ``missed``: where the range ``low..high`` lies against ``target``."""
    if high <= target:
        return "met"
    if low > target:
        return "missed"
    return "straddles"


@attrs.frozen
class Result:
    """One case: medians of both sides, the per-round ratios and the target, if any."""

    suite: str
    case: str
    ours_us: float
    raw_us: float
    ratios: tuple[float, ...] = ()
    target: float | None = None
    unit: str = "us"
    """``us`` (µs per operation) or ``instructions`` (callgrind Ir per operation)."""
    limit_us: float | None = None
    """An absolute target instead of a ratio: *ours* (its IQR over the rounds) must stay within it (µs)."""
    ours_iqr: tuple[float, float] | None = None
    """Interquartile range of *ours* per round (µs), for ``limit_us``."""

    @property
    def ratio(self) -> float:
        """Cost: the ratio of the medians (ours / raw)."""
        return self.ours_us / self.raw_us if self.raw_us else float("inf")

    @property
    def iqr(self) -> tuple[float, float]:
        """Interquartile range of the per-round ratios (the ratio itself for a count)."""
        return quartiles(self.ratios) if self.ratios else (self.ratio, self.ratio)

    @property
    def verdict(self) -> str | None:
        """Against the target: ``met``, ``straddles`` or ``missed``; None without a target."""
        if self.limit_us is not None:
            return verdict(*(self.ours_iqr or (self.ours_us, self.ours_us)), self.limit_us)
        return None if self.target is None else verdict(*self.iqr, self.target)

    @property
    def target_text(self) -> str:
        """The target and the verdict for a page (``≤ 1.10 met``, ``≤ 0.40 s met``), or ``""``."""
        if self.limit_us is not None:
            return f"≤ {self.limit_us / 1e6:.2f} s {self.verdict}"
        return f"≤ {self.target:.2f} {self.verdict}" if self.target is not None else ""

    def line(self) -> str:
        head = f"bench {self.suite}.{self.case} "
        if self.unit == "instructions":
            text = (
                f"{head}ours={self.ours_us:.0f} raw={self.raw_us:.0f} ratio={self.ratio:.3f} "
                "unit=instructions"
            )
        else:
            low, high = self.iqr
            text = (
                f"{head}ours={self.ours_us:.2f} raw={self.raw_us:.2f} ratio={self.ratio:.2f} "
                f"iqr={low:.2f}..{high:.2f}"
            )
        if self.target is not None:
            text += f" target={self.target:.2f} {self.verdict}"
        if self.limit_us is not None:
            text += f" limit={self.limit_us / 1e6:.2f}s {self.verdict}"
        return text


@attrs.frozen
class Ceiling:
    """The raw best case of a suite's work (e.g. pipelined), µs per operation."""

    suite: str
    case: str
    raw_us: float
    spread: tuple[float, float]

    def line(self) -> str:
        low, high = self.spread
        return (
            f"ceiling {self.suite}.{self.case} raw={self.raw_us:.2f} iqr={low:.2f}..{high:.2f} "
            f"({1e6 / self.raw_us:,.0f}/s)"
        )


RESULTS: list[Result] = []
CEILINGS: list[Ceiling] = []
SERVERS: dict[str, str] = {}
"""Suite -> what it ran against (e.g. ``redis-server 7.0.15, parser hiredis``), for the page."""


def rounds(full: int, quick: int) -> int:
    """How many rounds to run in the current mode."""
    return quick if QUICK else full


T = TypeVar("T")


class Early(Generic[T]):
    """A context manager (a private server or cluster) entered ahead of use in quick mode.

    ``with Early(cm) as value:`` enters ``cm`` and exits it after the block, as ``with cm`` does.
    In quick mode the constructor already starts a thread that enters ``cm``, so a server's
    start-up (mostly waiting: a cluster forming) overlaps the suite's work before the block, which
    then only waits for the start to finish. The thread holds ``cm`` until the block ends and exits
    it itself (the servers' processes die with the thread that started them: ``PR_SET_PDEATHSIG``),
    while the suite goes on; :meth:`close` waits for that. In full mode ``cm`` is entered at the
    block and exited after it, as before. Call :meth:`close` in a ``finally``: it also ends ``cm``
    if the block never ran.
    """

    def __init__(self, cm: AbstractContextManager[T]) -> None:
        self._cm = cm
        self._value: T | None = None
        self._error: BaseException | None = None
        self._exit_error: BaseException | None = None
        self._entered_here = False
        self._ready = threading.Event()
        self._release = threading.Event()
        self._thread: threading.Thread | None = None
        if QUICK:
            self._thread = threading.Thread(target=self._hold, name="bench-early-start", daemon=True)
            self._thread.start()

    def _hold(self) -> None:
        try:
            self._value = self._cm.__enter__()
        except BaseException as exc:  # raised again by __enter__, in the suite's thread
            self._error = exc
            return
        finally:
            self._ready.set()
        self._release.wait()
        try:
            self._cm.__exit__(None, None, None)
        except BaseException as exc:  # raised again by close()
            self._exit_error = exc

    def __enter__(self) -> T:
        if self._thread is None:
            self._entered_here = True
            return self._cm.__enter__()
        self._ready.wait()
        if self._error is not None:
            raise self._error
        return self._value  # type: ignore[return-value]

    def __exit__(
        self, kind: type[BaseException] | None, error: BaseException | None, tb: TracebackType | None
    ) -> None:
        if self._entered_here:
            self._entered_here = False
            self._cm.__exit__(kind, error, tb)
        else:
            self._release.set()  # the thread exits cm; close() waits for it

    def close(self) -> None:
        """End ``cm`` if the block did not, and wait until it is exited (quick mode: by its thread)."""
        self.__exit__(None, None, None)
        if self._thread is not None:
            self._thread.join()
            self._thread = None
            if self._exit_error is not None:
                raise self._exit_error


def emit(
    suite: str,
    case: str,
    ours: Sequence[float],
    raw: Sequence[float],
    *,
    target: float | None = None,
    limit_us: float | None = None,
) -> Result:
    """Record and print one case from paired rounds (``ours[i]`` and ``raw[i]`` ran in round ``i``).

    For suites that time rounds themselves; both sequences are µs per operation. ``limit_us``: an
    absolute target on *ours* (e.g. a CLI command's seconds), judged on the IQR of its rounds.
    """
    if len(ours) != len(raw) or not ours:
        raise ValueError(f"{suite}.{case}: need paired rounds, got {len(ours)} ours and {len(raw)} raw")
    ratios = tuple(o / r if r else float("inf") for o, r in zip(ours, raw, strict=True))
    result = Result(
        suite,
        case,
        statistics.median(ours),
        statistics.median(raw),
        ratios,
        target,
        limit_us=limit_us,
        ours_iqr=quartiles(ours) if limit_us is not None else None,
    )
    RESULTS.append(result)
    print(result.line(), flush=True)
    return result


def emit_counts(suite: str, case: str, ours: float, raw: float, *, target: float | None = None) -> Result:
    """Record and print one instruction-count case (Ir per operation of each side)."""
    result = Result(suite, case, ours, raw, target=target, unit="instructions")
    RESULTS.append(result)
    print(result.line(), flush=True)
    return result


def ceiling(suite: str, case: str, raw: Sequence[float]) -> Ceiling:
    """Record and print the raw ceiling of a suite's work (µs per operation per round; median shown)."""
    result = Ceiling(suite, case, statistics.median(raw), quartiles(raw))
    CEILINGS.append(result)
    print(result.line(), flush=True)
    return result


def server(suite: str, description: str) -> None:
    """Record and print what a suite ran against (a ``#`` comment line)."""
    SERVERS[suite] = description
    print(f"# {suite}: {description}", flush=True)


def resp_parser() -> str:
    """The RESP parser redis-py picks in this environment, by its own rule (``HIREDIS_AVAILABLE``)."""
    try:
        from redis.utils import HIREDIS_AVAILABLE
    except ImportError:
        return "none (redis-py not installed)"
    if not HIREDIS_AVAILABLE:
        return "python (hiredis not importable)"
    import hiredis

    return f"hiredis {getattr(hiredis, '__version__', '?')}"


async def redis_server(suite: str, client: Any) -> str:
    """Print and record the Redis server version and the parser class ``client``'s connections use."""
    from redis.asyncio.connection import DefaultParser

    info = await client.info("server")
    parser_class = client.connection_pool.connection_kwargs.get("parser_class", DefaultParser)
    parser = "hiredis" if "hiredis" in parser_class.__name__.lower() else "python"
    description = f"redis-server {info.get('redis_version', '?')}, parser {parser}"
    server(suite, description)
    return description


def _placeholder(suite: str, case: str, target: float | None) -> Result:
    # instruction mode: the parent process prints the real line; suites only need a Result back
    return Result(suite, case, 1.0, 1.0, target=target)


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


def _turns(warmup: int, rounds_: int) -> list[tuple[int, bool]]:
    """The runs of a comparison in order: the side (0 ours, 1 raw) and whether its time counts.

    ``warmup`` uncounted rounds (ours, raw), then ``rounds_`` counted rounds; which side goes
    first alternates (ours, raw / raw, ours / ...).
    """
    turns = [(0, False), (1, False)] * warmup
    for i in range(rounds_):
        first = i % 2
        turns += [(first, True), (1 - first, True)]
    return turns


def _emit_turns(
    suite: str, case: str, turns: list[tuple[int, bool]], elapsed: list[float], target: float | None
) -> Result:
    """:func:`emit` the per-op times ``elapsed`` of the ``turns`` run in order, without the warm-up's."""
    times: tuple[list[float], list[float]] = ([], [])
    for (side, counted), us in zip(turns, elapsed, strict=True):
        if counted:
            times[side].append(us)
    return emit(suite, case, *times, target=target)


def compare(
    suite: str,
    case: str,
    ours: Callable[[], Any],
    raw: Callable[[], Any],
    *,
    ops: int,
    rounds_: int,
    warmup: int = 1,
    target: float | None = None,
) -> Result:
    """Time sync callables: ``rounds_`` interleaved rounds of ``ops`` calls each, medians."""
    if COUNTER is not None:
        COUNTER.sync(suite, case, "ours", ours, ops, target)
        COUNTER.sync(suite, case, "raw", raw, ops, target)
        return _placeholder(suite, case, target)
    turns = _turns(warmup, rounds_)
    return _emit_turns(suite, case, turns, [_per_op((ours, raw)[side], ops) for side, _ in turns], target)


async def acompare(
    suite: str,
    case: str,
    ours: Callable[[], Awaitable[Any]],
    raw: Callable[[], Awaitable[Any]],
    *,
    ops: int,
    rounds_: int,
    warmup: int = 1,
    target: float | None = None,
) -> Result:
    """Like :func:`compare` for async callables (awaited one after another)."""
    if COUNTER is not None:
        await COUNTER.asynchronous(suite, case, "ours", ours, ops, target, batches=False)
        await COUNTER.asynchronous(suite, case, "raw", raw, ops, target, batches=False)
        return _placeholder(suite, case, target)
    turns = _turns(warmup, rounds_)
    elapsed = [await _aper_op((ours, raw)[side], ops) for side, _ in turns]
    return _emit_turns(suite, case, turns, elapsed, target)


async def acompare_batches(
    suite: str,
    case: str,
    ours: Callable[[], Awaitable[int]],
    raw: Callable[[], Awaitable[int]],
    *,
    rounds_: int,
    calls: int = 1,
    warmup: int = 1,
    target: float | None = None,
) -> Result:
    """For throughput cases: each call processes a batch and returns how many ops it did.

    A round makes ``calls`` calls of a side; µs per op = the round's time / the ops it did.
    """

    async def per_op(fn: Callable[[], Awaitable[int]]) -> float:
        n = 0
        t0 = time.perf_counter()
        for _ in range(calls):
            n += await fn()
        return (time.perf_counter() - t0) / max(n, 1) * 1e6

    if COUNTER is not None:
        await COUNTER.asynchronous(suite, case, "ours", ours, calls, target, batches=True)
        await COUNTER.asynchronous(suite, case, "raw", raw, calls, target, batches=True)
        return _placeholder(suite, case, target)
    turns = _turns(warmup, rounds_)
    return _emit_turns(suite, case, turns, [await per_op((ours, raw)[side]) for side, _ in turns], target)


def is_async(fn: Callable[..., Any]) -> bool:
    return inspect.iscoroutinefunction(fn)
