"""``producer_context``: the producer's span context read from an event as the W3C propagator reads it."""

from __future__ import annotations

import pytest
from kernel_eventbus._metadata import make_metadata
from kernel_otel._eventbus import producer_context
from opentelemetry import trace
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

TRACE = "4bf92f3577b34da6a3ce929d0e0e4736"
SPAN = "00f067aa0ba902b7"

TRACEPARENTS = [
    f"00-{TRACE}-{SPAN}-01",  # what the bus's publishers write
    f"00-{TRACE}-{SPAN}-00",
    f"00-{TRACE}-{SPAN}-03",
    f"00-{TRACE}-{SPAN}-ff",
    f"00-{TRACE.upper()}-{SPAN}-01",  # not lowercase: no context
    f"00-{'0' * 32}-{SPAN}-01",  # all-zero ids: no context
    f"00-{TRACE}-{'0' * 16}-01",
    f"01-{TRACE}-{SPAN}-01",  # a later version
    f"01-{TRACE}-{SPAN}-01-extra",  # a later version may carry more fields
    f"00-{TRACE}-{SPAN}-01-extra",  # version 00 may not
    f"ff-{TRACE}-{SPAN}-01",  # version ff is invalid
    f" \t00-{TRACE}-{SPAN}-01 ",  # spaces around it
    f"00-{TRACE}-{SPAN}-01\n",
    f"00-{TRACE}-{SPAN}-1",
    f"00-{TRACE}-{SPAN[:-1]}-01",
    f"00_{TRACE}_{SPAN}_01",
    "",
    "garbage",
]


@pytest.mark.parametrize("tracestate", [None, "k=v,other=w", "not a state"])
@pytest.mark.parametrize("traceparent", TRACEPARENTS)
def test_the_producer_context_is_the_propagators(traceparent: str, tracestate: str | None) -> None:
    meta = make_metadata(
        "e-1", "user.created", "2026-01-01T00:00:00.000Z", None, TRACE, 1, None, traceparent, tracestate
    )
    carrier = {"traceparent": traceparent}
    if tracestate is not None:
        carrier["tracestate"] = tracestate
    want = trace.get_current_span(TraceContextTextMapPropagator().extract(carrier)).get_span_context()
    got = producer_context(meta)
    assert got == want
    assert type(got) is type(want)
    assert (got.is_valid, got.is_remote, got.trace_flags, got.trace_state) == (
        want.is_valid,
        want.is_remote,
        want.trace_flags,
        want.trace_state,
    )
    assert got.trace_flags.sampled == want.trace_flags.sampled


def test_an_event_published_by_the_bus_is_read_without_the_propagator() -> None:
    from unittest.mock import patch

    meta = make_metadata(
        "e-1", "user.created", "2026-01-01T00:00:00.000Z", None, TRACE, 1, None, f"00-{TRACE}-{SPAN}-01"
    )
    with patch("kernel_otel._eventbus.extract", side_effect=AssertionError("the propagator was asked")):
        context = producer_context(meta)
    assert (format(context.trace_id, "032x"), format(context.span_id, "016x")) == (TRACE, SPAN)
    assert context.is_remote and context.is_valid and context.trace_flags.sampled
