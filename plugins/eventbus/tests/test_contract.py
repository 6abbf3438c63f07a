"""The EventBus contract, run against both adapters (memory, and Redis Streams on a real server)."""

from __future__ import annotations

import asyncio
import datetime as dt
import itertools
from typing import Any

import pytest
from kernel_eventbus import (
    DeadLetterNotFoundError,
    EventBus,
    EventDataError,
    EventMetadata,
    NonRetryableError,
    RetryPolicy,
    SubscriptionError,
)

import kernel.logging

pytestmark = pytest.mark.anyio


class Recorder:
    """A handler that records (data, metadata, trace id seen) and fails while ``failures`` says so."""

    def __init__(self, fail_times: int = 0, exc: type[Exception] = RuntimeError) -> None:
        self.calls: list[tuple[Any, EventMetadata, str | None]] = []
        self.fail_times = fail_times
        self.exc = exc

    async def __call__(self, data: Any, meta: EventMetadata) -> None:
        self.calls.append((data, meta, kernel.logging.get_trace_id()))
        if meta.attempt <= self.fail_times:
            raise self.exc(f"boom {meta.attempt}")


async def test_publish_delivers_data_and_metadata(make_bus: Any, wait: Any) -> None:
    bus: EventBus = await make_bus()
    rec = Recorder()
    bus.subscribe("user.created", rec, group="welcome")
    with kernel.logging.trace_context("a" * 32):
        meta = await bus.publish(
            "user.created", {"userId": "123", "email": "u@example.com"}, source="UserService"
        )
    assert meta.event_name == "user.created"
    assert meta.source == "UserService"
    assert meta.trace_id == "a" * 32
    assert meta.attempt == 1
    assert dt.datetime.fromisoformat(meta.timestamp).tzinfo is not None
    await wait(lambda: len(rec.calls) == 1, what="delivery")
    data, got, trace = rec.calls[0]
    assert data == {"userId": "123", "email": "u@example.com"}
    assert got == meta
    assert trace == "a" * 32, "the handler runs with the event's trace id"


async def test_trace_id_argument_wins_and_a_new_one_is_made_otherwise(make_bus: Any, wait: Any) -> None:
    bus: EventBus = await make_bus()
    rec = Recorder()
    bus.subscribe("t", rec, group="g")
    m1 = await bus.publish("t", 1, trace_id="req-42")
    m2 = await bus.publish("t", 2)
    assert m1.trace_id == "req-42"
    assert m2.trace_id and len(m2.trace_id) == 32
    await wait(lambda: len(rec.calls) == 2)
    assert {c[2] for c in rec.calls} == {"req-42", m2.trace_id}


async def test_unserializable_data_is_a_clear_error(make_bus: Any) -> None:
    bus: EventBus = await make_bus()
    with pytest.raises(EventDataError, match=r"cannot publish 'x': data is not JSON-serializable"):
        await bus.publish("x", {"when": dt.datetime.now()})
    with pytest.raises(EventDataError, match="not JSON-serializable"):
        await bus.publish("x", float("nan"))
    circular: list[Any] = []
    circular.append(circular)
    with pytest.raises(EventDataError, match="not JSON-serializable"):
        await bus.publish("x", {"loop": circular})
    with pytest.raises(EventDataError, match="non-empty string"):
        await bus.publish("", {})


async def test_event_data_over_max_payload_bytes_is_refused(make_bus: Any, wait: Any) -> None:
    from kernel_eventbus import EventBusConfig, EventTooLargeError, build_bus

    default: EventBus = await make_bus()
    assert default.max_payload_bytes == EventBusConfig().max_payload_bytes == 1_048_576
    big = "x" * (2 * 1_048_576)
    with pytest.raises(
        EventTooLargeError,
        match=r"over the limit of 1,048,576 bytes "
        r"\(plugins\.eventbus\.max_payload_bytes\)",
    ) as info:
        await default.publish("big", {"blob": big})
    assert isinstance(info.value, EventDataError)
    assert info.value.limit == 1_048_576
    assert info.value.size == len(big) + len('{"blob":""}')

    bus: EventBus = await make_bus(max_payload_bytes=100)
    got: list[Any] = []

    async def handler(data: Any, meta: EventMetadata) -> None:
        got.append(data)

    bus.subscribe("s", handler, group="gs")
    with pytest.raises(EventTooLargeError, match="is 102 bytes as JSON"):
        await bus.publish("s", "é" * 50)  # 52 characters, 102 bytes in UTF-8
    await bus.publish("s", "é" * 49)  # exactly 100 bytes
    await wait(lambda: len(got) == 1, what="the event at the limit")
    assert got == ["é" * 49], "the refused event was not stored or delivered"
    assert build_bus(EventBusConfig(max_payload_bytes=7)).max_payload_bytes == 7


async def test_each_subscription_gets_its_own_copy(make_bus: Any, wait: Any) -> None:
    bus: EventBus = await make_bus()
    seen: list[Any] = []

    async def mutating(data: Any, meta: EventMetadata) -> None:
        data["touched"] = True

    async def reader(data: Any, meta: EventMetadata) -> None:
        seen.append(dict(data))

    bus.subscribe("e", mutating, group="a")
    bus.subscribe("e", reader, group="b")
    await bus.publish("e", {"v": 1})
    await wait(lambda: len(seen) == 1)
    await asyncio.sleep(0.05)
    assert seen == [{"v": 1}]


async def test_failing_subscription_is_retried_alone(make_bus: Any, wait: Any) -> None:
    bus: EventBus = await make_bus()
    ok, flaky = Recorder(), Recorder(fail_times=2)
    bus.subscribe("order.paid", ok, group="ok")
    bus.subscribe("order.paid", flaky, group="flaky")
    await bus.publish("order.paid", {"id": 7})
    await wait(lambda: len(flaky.calls) == 3, what="two retries")
    await asyncio.sleep(0.2)
    assert [c[1].attempt for c in flaky.calls] == [1, 2, 3]
    assert len(ok.calls) == 1, "a failing handler never re-runs the others"
    assert await bus.get_dead_letter_queue() == []
    assert len({c[1].event_id for c in flaky.calls}) == 1


async def test_exhausted_retries_dead_letter_with_details(make_bus: Any, wait: Any) -> None:
    bus: EventBus = await make_bus()
    rec = Recorder(fail_times=99, exc=ConnectionError)
    bus.subscribe("mail.send", rec, group="mailer", max_retries=2)
    meta = await bus.publish("mail.send", {"to": "x"}, source="svc")
    await wait(lambda: len(rec.calls) == 3)
    for _ in range(200):
        dlq = await bus.get_dead_letter_queue()
        if dlq:
            break
        await asyncio.sleep(0.01)
    assert len(dlq) == 1
    entry = dlq[0]
    assert entry.event_id == meta.event_id
    assert entry.event_name == "mail.send"
    assert entry.data == {"to": "x"}
    assert entry.subscription == "mailer"
    assert entry.attempts == 3
    assert entry.metadata.source == "svc"
    assert entry.error == {"type": "ConnectionError", "message": "boom 3"}
    assert "ConnectionError: boom 3" in entry.traceback
    assert entry.first_failure_at <= entry.last_failure_at
    assert await bus.dead_letter_count() == 1
    assert len(rec.calls) == 3


async def test_non_retryable_goes_straight_to_the_dlq(make_bus: Any, wait: Any) -> None:
    bus: EventBus = await make_bus()

    async def strict(data: Any, meta: EventMetadata) -> None:
        raise NonRetryableError("invalid payload")

    calls: list[int] = []

    async def counting(data: Any, meta: EventMetadata) -> None:
        calls.append(meta.attempt)
        await strict(data, meta)

    bus.subscribe("bad", counting, group="strict")
    await bus.publish("bad", {})
    for _ in range(300):
        if await bus.dead_letter_count():
            break
        await asyncio.sleep(0.01)
    (entry,) = await bus.get_dead_letter_queue()
    assert entry.attempts == 1
    assert calls == [1]
    assert entry.error_type == "kernel_eventbus._errors.NonRetryableError"


async def _dead(bus: EventBus, n: int) -> None:
    for _ in range(500):
        if await bus.dead_letter_count() >= n:
            return
        await asyncio.sleep(0.01)
    raise AssertionError(f"DLQ never reached {n}")


async def test_replay_redelivers_to_the_failed_subscription_only(make_bus: Any, wait: Any) -> None:
    bus: EventBus = await make_bus()
    broken = {"on": True}
    good, fixed = Recorder(), []

    async def flaky(data: Any, meta: EventMetadata) -> None:
        if broken["on"]:
            raise RuntimeError("dependency down")
        fixed.append(meta)

    bus.subscribe("invoice", good, group="good")
    bus.subscribe("invoice", flaky, group="flaky", max_retries=0)
    meta = await bus.publish("invoice", {"n": 1})
    await _dead(bus, 1)
    broken["on"] = False
    assert await bus.replay_from_dlq(meta.event_id) == 1
    await wait(lambda: len(fixed) == 1)
    assert fixed[0].event_id == meta.event_id
    assert fixed[0].attempt == 1
    assert fixed[0].replayed_at is not None
    assert await bus.dead_letter_count() == 0
    await asyncio.sleep(0.1)
    assert len(good.calls) == 1
    with pytest.raises(DeadLetterNotFoundError, match=meta.event_id):
        await bus.replay_from_dlq(meta.event_id)


async def test_replay_all_with_progress_and_filters(make_bus: Any, wait: Any) -> None:
    bus: EventBus = await make_bus()
    broken = {"on": True}
    handled: list[str] = []

    async def handler(data: Any, meta: EventMetadata) -> None:
        if broken["on"]:
            raise RuntimeError("down")
        handled.append(meta.event_name)

    bus.subscribe("a", handler, group="ga", max_retries=0)
    bus.subscribe("b", handler, group="gb", max_retries=0)
    for i in range(5):
        await bus.publish("a", i)
    for i in range(3):
        await bus.publish("b", i)
    await _dead(bus, 8)
    assert len(await bus.get_dead_letter_queue(event="a")) == 5
    assert len(await bus.get_dead_letter_queue(limit=2)) == 2
    assert await bus.get_dead_letter_queue(limit=0) == []
    broken["on"] = False
    progress: list[tuple[int, int]] = []
    assert await bus.replay_all(event="b", progress=lambda d, t: progress.append((d, t))) == 3
    assert progress[-1] == (3, 3)
    await wait(lambda: len(handled) == 3)
    assert await bus.dead_letter_count() == 5
    assert await bus.replay_all() == 5
    await wait(lambda: len(handled) == 8)
    assert sorted(handled) == ["a"] * 5 + ["b"] * 3


async def test_clear_and_delete(make_bus: Any) -> None:
    bus: EventBus = await make_bus()

    async def fail(data: Any, meta: EventMetadata) -> None:
        raise NonRetryableError("no")

    bus.subscribe("c", fail, group="gc")
    metas = [await bus.publish("c", i) for i in range(4)]
    await _dead(bus, 4)
    assert [e.data for e in await bus.get_dead_letter(metas[1].event_id)] == [1]
    assert await bus.delete_dead_letter(metas[0].event_id) == 1
    assert await bus.clear_dead_letter_queue() == 3
    assert await bus.get_dead_letter_queue() == []
    with pytest.raises(DeadLetterNotFoundError):
        await bus.get_dead_letter(metas[1].event_id)


async def test_idempotent_helper_skips_a_handled_event(make_bus: Any, wait: Any) -> None:
    bus: EventBus = await make_bus()
    effects: list[str] = []

    async def send_welcome(data: Any, meta: EventMetadata) -> None:
        effects.append(meta.event_id)

    wrapped = bus.idempotent(send_welcome)
    meta = EventMetadata("evt-1", "user.created", "2025-01-01T00:00:00.000Z")
    await wrapped({}, meta)
    await wrapped({}, meta)  # a redelivery of the same event
    await wrapped({}, EventMetadata("evt-2", "user.created", "2025-01-01T00:00:00.000Z"))
    assert effects == ["evt-1", "evt-2"]
    assert wrapped.__qualname__ == send_welcome.__qualname__


async def test_unsubscribe_and_subscription_errors(make_bus: Any, wait: Any) -> None:
    bus: EventBus = await make_bus()
    rec = Recorder()
    sub = bus.subscribe("u", rec, group="gu")
    with pytest.raises(SubscriptionError, match="already exists"):
        bus.subscribe("u", rec, group="gu")
    with pytest.raises(SubscriptionError, match="stable subscription name"):
        bus.subscribe("u", lambda d, m: None)
    with pytest.raises(SubscriptionError, match="async callable"):
        bus.subscribe("u", "nope", group="x")  # type: ignore[arg-type]
    await bus.publish("u", 1)
    await wait(lambda: len(rec.calls) == 1)
    assert bus.unsubscribe(sub)
    assert not bus.unsubscribe(sub)
    await bus.publish("u", 2)
    await asyncio.sleep(0.3)
    assert len(rec.calls) == 1


async def test_default_group_name_is_event_and_handler(make_bus: Any) -> None:
    bus: EventBus = await make_bus()
    sub = bus.subscribe("user.created", Recorder.__call__.__get__(Recorder()))
    assert sub.name.startswith("user.created:")
    assert sub.name.endswith("test_contract.Recorder.__call__")


async def test_per_subscription_backoff_spacing(make_bus: Any, wait: Any) -> None:
    bus: EventBus = await make_bus()
    times: list[float] = []

    async def failing(data: Any, meta: EventMetadata) -> None:
        times.append(asyncio.get_running_loop().time())
        raise RuntimeError("x")

    bus.subscribe("s", failing, group="gs", backoff=RetryPolicy(max_retries=3, base_delay=0.1))
    await bus.publish("s", 0)
    await _dead(bus, 1)
    gaps = [b - a for a, b in itertools.pairwise(times)]
    assert len(times) == 4
    # Lower bounds exact (the backoff); the upper ones allow a loaded 2-core CI machine's delays.
    for gap, want in zip(gaps, (0.1, 0.2, 0.4), strict=True):
        assert want - 0.01 <= gap <= want + 1.0, gaps
