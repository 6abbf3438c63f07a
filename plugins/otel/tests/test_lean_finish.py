"""``LeanSpan.finish``: rename, set the closing attributes and end in one step, as the three calls do."""

from __future__ import annotations

from typing import Any

import pytest
from kernel_otel._lean import LeanSpan
from opentelemetry import trace
from opentelemetry.sdk.trace import SpanLimits

from .test_lean import _both


def _closing(
    name: str | None, attributes: dict[str, Any], *, start: dict[str, Any], twice: bool = False
) -> Any:
    def work(tracer: trace.Tracer) -> None:
        span = tracer.start_span("GET", attributes=start)
        for _ in range(2 if twice else 1):
            if isinstance(span, LeanSpan):
                span.finish(name, attributes)
            else:  # what finish stands for
                if name is not None:
                    span.update_name(name)
                span.set_attributes(attributes)
                span.end()

    return work


@pytest.mark.parametrize(
    ("name", "attributes", "start"),
    [
        ("GET /users/{id}", {"http.route": "/users/{id}", "http.response.status_code": 200}, {"a": "b"}),
        (None, {"http.response.status_code": 404}, {}),
        ("GET /x", {"a": "again", "http.route": "/x"}, {"a": "first"}),  # a key set before: moved to the end
        ("GET /x", {}, {}),
    ],
)
def test_finish_equals_rename_set_attributes_end(
    name: str | None, attributes: dict[str, Any], start: dict[str, Any]
) -> None:
    expected, lean = _both(_closing(name, attributes, start=start))
    assert lean == expected


def test_finish_keeps_the_span_limits() -> None:
    limits = SpanLimits(max_span_attributes=2, max_span_attribute_length=3)
    work = _closing("GET /long", {"b": "xxxxxx", "c": 1}, start={"a": "y"})
    expected, lean = _both(work, span_limits=limits)
    assert lean == expected
    assert lean[0]["attributes"] == [("b", "xxx"), ("c", 1)]


def test_finish_on_an_ended_span_changes_nothing_and_warns(caplog: pytest.LogCaptureFixture) -> None:
    expected, lean = _both(_closing("GET /later", {"late": 1}, start={}, twice=True))
    assert lean == expected
    assert lean[0]["name"] == "GET /later" and lean[0]["attributes"] == [("late", 1)]
    assert sum("ended span" in r.getMessage() for r in caplog.records) >= 2  # both tracers warned
