"""The dead-letter store protocol: the memory and Redis implementations keep, find and drop alike."""

from __future__ import annotations

import pytest
from kernel_eventbus import DeadLetterEntry, DeadLetterStore, EventMetadata
from kernel_eventbus._dlq import MemoryDeadLetterStore
from kernel_eventbus._redis_dlq import RedisDeadLetterStore
from kernel_redis import AnyRedis

pytestmark = pytest.mark.anyio


def _entry(event_id: str, subscription: str, event: str = "order.created") -> DeadLetterEntry:
    return DeadLetterEntry(
        metadata=EventMetadata(event_id, event, "2026-01-01T00:00:00.000Z", attempt=2),
        data={"id": event_id},
        subscription=subscription,
        attempts=2,
        first_failure_at="2026-01-01T00:00:01.000Z",
        last_failure_at="2026-01-01T00:00:02.000Z",
        error_type="ValueError",
        error_message="bad",
        traceback="Traceback ...",
    )


@pytest.fixture(params=["memory", "redis"])
def store(request: pytest.FixtureRequest, prefix: str, client: AnyRedis) -> DeadLetterStore:
    """Each implementation; ``client`` removes the keys under ``prefix`` after the test."""
    return MemoryDeadLetterStore() if request.param == "memory" else RedisDeadLetterStore(client, prefix)


async def test_both_stores_keep_find_and_drop_alike(store: DeadLetterStore) -> None:
    assert await store.add(_entry("e1", "billing")) == 1
    assert await store.add(_entry("e1", "mail")) == 2
    assert await store.add(_entry("e2", "billing", event="user.created")) == 3
    assert await store.add(_entry("e1", "billing")) == 3  # the same key replaces, and is the newest now

    assert [e.key for e in await store.newest(10)] == ["e1|billing", "e2|billing", "e1|mail"]
    assert [e.key for e in await store.newest(1)] == ["e1|billing"]
    assert [e.key for e in await store.newest(10, "order.created")] == ["e1|billing", "e1|mail"]
    assert await store.count() == 3

    found = await store.find("e1")
    assert sorted(e.subscription for e in found) == ["billing", "mail"]
    assert found[0] == _entry("e1", found[0].subscription)  # read back whole (traceback included)
    assert await store.find("e") == []  # an id is matched whole, not as a prefix

    assert await store.delete("e1") == 2
    assert await store.delete("e1") == 0
    assert await store.count() == 1
    assert await store.clear() == 1
    assert await store.count() == 0
    assert await store.newest(10) == []
