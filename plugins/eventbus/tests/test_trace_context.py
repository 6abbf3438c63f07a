"""W3C trace context in event metadata: ``traceparent`` and ``tracestate`` travel through publish,
retries, the DLQ and its replay (both adapters; Redis on a real server), and entries without them parse."""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from typing import Any

import attrs
import pytest
from kernel_eventbus import EventBus, EventMetadata, RetryPolicy, Subscription
from kernel_eventbus._redis import RedisEventBus, _decode_event
from kernel_redis import AnyRedis

from kernel.testing import wait_until

pytestmark = pytest.mark.anyio

TRACEPARENT = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
TRACESTATE = "milo=t61rcWkgMzE,congo=ucfJifl5GOE"
ONE_RETRY = RetryPolicy(max_retries=1, base_delay=0.0)
BusFactory = Callable[..., Awaitable[EventBus]]
"""The ``make_bus`` fixture (conftest): started buses of each adapter."""


class _Attempt:
    def failed(self, error: BaseException, retry: bool) -> None:
        """Nothing to record: the test watches the metadata."""


class Stamping:
    """An observer that stamps a fixed W3C trace context on every published event (as a tracer would)
    and records the metadata of every handler attempt."""

    def __init__(self, tracestate: str | None = TRACESTATE, traceparent: str = TRACEPARENT) -> None:
        self.tracestate = tracestate
        self.traceparent = traceparent
        self.handled: list[EventMetadata] = []

    def publishing(self, meta: EventMetadata) -> tuple[EventMetadata, Callable[[BaseException | None], None]]:
        stamped = attrs.evolve(meta, traceparent=self.traceparent, tracestate=self.tracestate)
        return stamped, lambda error: None

    @contextmanager
    def handling(self, subscription: Subscription, meta: EventMetadata) -> Iterator[_Attempt]:
        self.handled.append(meta)
        yield _Attempt()


async def test_tracestate_survives_retries_the_dlq_and_replay(make_bus: BusFactory) -> None:
    bus = await make_bus(policy=ONE_RETRY)
    observer = Stamping()
    bus.set_observer(observer)
    fail = [True]

    async def handler(data: Any, meta: EventMetadata) -> None:
        if fail[0]:
            raise RuntimeError(f"attempt {meta.attempt}")

    bus.subscribe("order.paid", handler, group="billing")
    meta = await bus.publish("order.paid", {"order": 1})
    assert (meta.traceparent, meta.tracestate) == (TRACEPARENT, TRACESTATE)
    await wait_until(lambda: len(observer.handled) == 2, what="the first attempt and its retry")
    entries: list[Any] = []

    async def dead_lettered() -> bool:
        entries[:] = await bus.get_dead_letter_queue()
        return bool(entries)

    await wait_until(dead_lettered, what="the event was dead-lettered")
    (entry,) = entries
    assert (entry.metadata.traceparent, entry.metadata.tracestate) == (TRACEPARENT, TRACESTATE)
    fail[0] = False
    assert await bus.replay_from_dlq(meta.event_id) == 1
    await wait_until(lambda: len(observer.handled) == 3, what="the replayed delivery")
    replayed = [(m.attempt, m.replayed_at is not None) for m in observer.handled]
    assert replayed == [(1, False), (2, False), (1, True)]
    assert {(m.traceparent, m.tracestate) for m in observer.handled} == {(TRACEPARENT, TRACESTATE)}


async def test_without_tracestate_only_the_traceparent_travels(make_bus: BusFactory) -> None:
    bus = await make_bus(policy=ONE_RETRY)
    observer = Stamping(tracestate=None)
    bus.set_observer(observer)

    async def fails(data: Any, meta: EventMetadata) -> None:
        raise RuntimeError("no")

    bus.subscribe("order.paid", fails, group="billing")
    await bus.publish("order.paid", {"order": 1})
    await wait_until(lambda: len(observer.handled) == 2, what="the first attempt and its retry")
    assert {(m.traceparent, m.tracestate) for m in observer.handled} == {(TRACEPARENT, None)}


async def test_redis_entry_carries_tracestate_in_a_field_of_its_own(client: AnyRedis, prefix: str) -> None:
    bus = RedisEventBus(client, prefix=prefix, read_block=0.2)
    bus.set_observer(Stamping())
    await bus.publish("user.created", {"id": "1"})
    bus.set_observer(Stamping(tracestate=None))
    await bus.publish("user.created", {"id": "2"})
    bus.set_observer(None)
    await bus.publish("user.created", {"id": "3"})
    entries = await client.xrange(bus.stream_key("user.created"))
    assert [sorted(fields) for _id, fields in entries] == [[b"e", b"tp", b"tst"], [b"e", b"tp"], [b"e"]]
    assert entries[0][1][b"tst"] == TRACESTATE.encode()
    decoded = [_decode_event(fields, "user.created") for _id, fields in entries]
    assert [(d, m.traceparent, m.tracestate) for d, m in decoded] == [
        ({"id": "1"}, TRACEPARENT, TRACESTATE),
        ({"id": "2"}, TRACEPARENT, None),  # an entry of an earlier publisher (no tracestate) still parses
        ({"id": "3"}, None, None),
    ]


async def test_redis_entry_traceparent_is_stored_as_the_clients_encoder_makes_it(
    client: AnyRedis, prefix: str
) -> None:
    """An ASCII traceparent goes out as bytes (no per-argument encoding), any other through the client's
    encoder: the stored field is the same either way, and reads back as published."""
    bus = RedisEventBus(client, prefix=prefix, read_block=0.2)
    texts = [TRACEPARENT, "00-traceparent-\u00e9t\u00e9-01"]  # the second: not ASCII (another observer's)
    for text in texts:
        bus.set_observer(Stamping(tracestate=None, traceparent=text))
        await bus.publish("user.created", {"id": text})
    entries = await client.xrange(bus.stream_key("user.created"))
    encoder = client.get_encoder()
    assert [fields[b"tp"] for _id, fields in entries] == [encoder.encode(text) for text in texts]
    assert entries[0][1][b"tp"] == TRACEPARENT.encode("ascii")
    decoded = [_decode_event(fields, "user.created")[1] for _id, fields in entries]
    assert decoded[0].traceparent == TRACEPARENT
    assert decoded[1].traceparent == "00-traceparent-\ufffd\ufffdt\ufffd\ufffd-01"  # read as ASCII, replaced


def test_metadata_dict_has_tracestate_only_when_set() -> None:
    meta = EventMetadata("id", "e", "2026-01-01T00:00:00.000Z", traceparent=TRACEPARENT)
    assert "tracestate" not in meta.to_dict()
    traced = attrs.evolve(meta, tracestate=TRACESTATE)
    assert traced.to_dict()["tracestate"] == TRACESTATE
    assert EventMetadata.from_dict(json.loads(json.dumps(traced.to_dict()))) == traced
    assert EventMetadata.from_dict(meta.to_dict()).tracestate is None  # a dead letter written before it
