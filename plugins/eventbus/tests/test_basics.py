"""Metadata, ids, retry policy and config: the parts without I/O."""

from __future__ import annotations

import re
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import attrs
import pytest
from kernel_eventbus import EventBusConfig, EventMetadata, NonRetryableError, RetryPolicy, new_event_id
from kernel_eventbus._metadata import make_metadata, rfc3339

import kernel
from kernel.testing import make_kernel


def test_event_ids_are_unique_uuid7_and_sort_by_time() -> None:
    ids = [new_event_id(1_700_000_000_000 + i) for i in range(200)]
    assert len(set(ids)) == 200
    assert ids == sorted(ids)
    uuid7 = r"[0-9a-f]{8}-[0-9a-f]{4}-7[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}"
    assert all(re.fullmatch(uuid7, i) for i in ids)
    same_ms = {new_event_id(1_700_000_000_000) for _ in range(1000)}
    assert len(same_ms) == 1000


def test_event_ids_of_one_millisecond_share_the_time_part_and_nothing_else() -> None:
    ids = [new_event_id(1_700_000_000_000) for _ in range(1000)]
    assert {i[:14] for i in ids} == {new_event_id(1_700_000_000_000)[:14]}
    assert new_event_id(1_700_000_000_001)[:14] != ids[0][:14]
    # every position of the 74 random bits varies: 12 after the version, the variant's 2 low bits, 60 more
    for pos in [15, 16, 17, 20, 21, 22, *range(24, 36)]:
        assert len({i[pos] for i in ids}) == 16, pos
    assert {i[19] for i in ids} == set("89ab")


def test_rfc3339_is_utc_with_milliseconds() -> None:
    assert rfc3339(0) == "1970-01-01T00:00:00.000Z"
    assert rfc3339(1_764_342_245_123) == "2025-11-28T15:04:05.123Z"
    # the last millisecond's text is reused only for that millisecond
    for ms in (1_764_342_245_123, 1_764_342_245_124, 1_764_342_245_123, 1_764_342_246_123):
        expected = (
            datetime.fromtimestamp(ms // 1000, UTC).strftime("%Y-%m-%dT%H:%M:%S") + f".{ms % 1000:03d}Z"
        )
        assert rfc3339(ms) == expected


def test_metadata_round_trips() -> None:
    meta = EventMetadata("id", "user.created", "2025-01-01T00:00:00.000Z", "UserService", "t" * 32, 3, "x")
    assert EventMetadata.from_dict(meta.to_dict()) == meta
    with pytest.raises(attrs.exceptions.FrozenInstanceError):
        meta.attempt = 2  # type: ignore[misc]


def test_make_metadata_builds_the_same_frozen_metadata_as_the_constructor() -> None:
    # a distinct value per field, so a field it forgot (or one added later) shows
    values: dict[str, Any] = {a.name: f"v-{a.name}" for a in attrs.fields(EventMetadata)}
    values["attempt"] = 7
    fast = make_metadata(**values)
    built = EventMetadata(**values)
    assert type(fast) is EventMetadata
    assert fast == built and hash(fast) == hash(built) and repr(fast) == repr(built)
    assert attrs.asdict(fast) == values and fast.to_dict() == built.to_dict()
    assert make_metadata("id", "e", "ts") == EventMetadata("id", "e", "ts")  # the same defaults
    for field in values:
        with pytest.raises(attrs.exceptions.FrozenInstanceError):
            setattr(fast, field, "changed")
        with pytest.raises(attrs.exceptions.FrozenInstanceError):
            delattr(fast, field)
    assert attrs.evolve(fast, attempt=8).attempt == 8 and fast.attempt == 7


def test_with_trace_context_is_evolve_of_the_two_fields() -> None:
    values: dict[str, Any] = {a.name: f"v-{a.name}" for a in attrs.fields(EventMetadata)}
    values["attempt"] = 3
    meta = EventMetadata(**values)
    for state in ("k=v", None):
        traced = meta.with_trace_context("00-tp", state)
        assert type(traced) is EventMetadata
        assert traced == attrs.evolve(meta, traceparent="00-tp", tracestate=state)
        assert repr(traced) == repr(attrs.evolve(meta, traceparent="00-tp", tracestate=state))
    assert meta.traceparent == "v-traceparent"  # the original is unchanged


def test_default_policy_is_three_retries_after_1_2_4_seconds() -> None:
    policy = RetryPolicy()
    assert [policy.delay(n) for n in (1, 2, 3)] == [1.0, 2.0, 4.0]
    assert [policy.should_retry(RuntimeError(), a) for a in (1, 2, 3, 4)] == [True, True, True, False]
    assert RetryPolicy(base_delay=10, max_delay=15).delay(3) == 15


def test_jitter_stays_within_its_fraction() -> None:
    policy = RetryPolicy(base_delay=1.0, jitter=0.2)
    delays = [policy.delay(1) for _ in range(500)]
    assert all(0.8 <= d <= 1.2 for d in delays)
    assert max(delays) - min(delays) > 0.1


def test_non_retryable_errors() -> None:
    policy = RetryPolicy(non_retryable=(KeyError,))
    assert not policy.retryable(NonRetryableError("bad input"))
    assert not policy.retryable(KeyError("k"))
    exc = ValueError("v")
    exc.retryable = False  # type: ignore[attr-defined]
    assert not policy.retryable(exc)
    assert policy.retryable(ValueError("transient"))


def test_bad_policy_values_are_rejected() -> None:
    with pytest.raises(ValueError, match="max_retries"):
        RetryPolicy(max_retries=-1)
    with pytest.raises(ValueError, match="base_delay"):
        RetryPolicy(base_delay=-1)


def test_config_defaults_and_errors() -> None:
    cfg = EventBusConfig()
    assert cfg.adapter == "memory"
    assert cfg.retry_policy() == RetryPolicy()
    with pytest.raises(kernel.ConfigError) as info:
        make_kernel("eventbus", config={"eventbus": {"adapter": "kafka", "nope": 1}})
    text = "\n".join(info.value.errors)
    assert "plugins.eventbus.adapter" in text
    assert "plugins.eventbus.nope" in text
    with pytest.raises(kernel.ConfigError, match="max_retries"):
        make_kernel("eventbus", config={"eventbus": {"max_retries": -1}})


def test_ids_are_time_ordered_across_calls() -> None:
    a = new_event_id()
    time.sleep(0.002)
    assert new_event_id() > a


def test_public_names_are_exported_sorted() -> None:
    import kernel_eventbus

    assert list(kernel_eventbus.__all__) == sorted(kernel_eventbus.__all__)
    public = {
        n
        for n, v in vars(kernel_eventbus).items()
        if not n.startswith("_") and getattr(v, "__module__", "").startswith("kernel_eventbus.")
    }
    assert public <= set(kernel_eventbus.__all__)


def test_every_config_key_is_documented() -> None:
    doc = Path(__file__).resolve().parents[3] / "docs" / "plugins" / "eventbus.md"
    if not doc.exists():
        pytest.skip("docs are not next to this checkout")
    text = doc.read_text()
    for field in attrs.fields(EventBusConfig):
        assert f"| `{field.name}` |" in text, f"{field.name} missing from the config table"
