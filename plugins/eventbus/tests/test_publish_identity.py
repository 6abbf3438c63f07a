"""publish(event_id=, occurred_at=): an event recorded earlier keeps its identity through both adapters."""

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest
from kernel_eventbus import EventBus, EventDataError, EventMetadata

pytestmark = pytest.mark.anyio


async def test_given_identity_reaches_the_handler(make_bus: Any, wait: Any) -> None:
    bus: EventBus = await make_bus()
    seen: list[EventMetadata] = []

    async def handler(data: Any, meta: EventMetadata) -> None:
        seen.append(meta)

    bus.subscribe("user.created", handler, group="identity")
    when = dt.datetime(2026, 3, 4, 5, 6, 7, 891234, tzinfo=dt.timezone(dt.timedelta(hours=2)))
    meta = await bus.publish(
        "user.created", {"n": 1}, event_id="outbox-evt-1", occurred_at=when, trace_id="c" * 32, source="users"
    )
    assert meta.event_id == "outbox-evt-1"
    assert meta.timestamp == "2026-03-04T03:06:07.891Z"  # UTC, to the millisecond
    only_time = await bus.publish("user.created", {"n": 2}, occurred_at=when)
    assert only_time.timestamp == meta.timestamp and only_time.event_id != meta.event_id
    only_id = await bus.publish("user.created", {"n": 3}, event_id="outbox-evt-3")
    assert only_id.event_id == "outbox-evt-3"
    await wait(lambda: len(seen) == 3, what="three deliveries")
    by_id = {m.event_id: m for m in seen}
    assert by_id.keys() == {"outbox-evt-1", only_time.event_id, "outbox-evt-3"}
    assert by_id["outbox-evt-1"] == meta  # the handler sees the same metadata
    assert all(m.trace_id for m in seen)


@pytest.mark.parametrize(
    ("keywords", "problem"),
    [
        ({"event_id": ""}, "event_id"),
        ({"event_id": "a\tb"}, "event_id"),
        ({"event_id": 7}, "event_id"),
        ({"occurred_at": dt.datetime(2026, 1, 1)}, "occurred_at"),  # naive
        ({"occurred_at": "2026-01-01T00:00:00Z"}, "occurred_at"),
    ],
)
async def test_bad_identity_is_a_typed_error(make_bus: Any, keywords: dict[str, Any], problem: str) -> None:
    bus: EventBus = await make_bus()
    with pytest.raises(EventDataError, match=problem):
        await bus.publish("user.created", {}, **keywords)
