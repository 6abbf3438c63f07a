"""MetricsCollector: the recording API, get-or-create declarations, isolation, bounded series, exposition."""

from __future__ import annotations

import threading

import pytest
from kernel_metrics import DEFAULT_HTTP_BUCKETS, OVERFLOW, LabelBudget, MetricConflictError, MetricsCollector
from kernel_metrics._http_series import Series
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.parser import text_string_to_metric_families


def value(c: MetricsCollector, name: str, **labels: str) -> float | None:
    return c.registry.get_sample_value(name, labels)


@pytest.fixture
def collector() -> MetricsCollector:
    return MetricsCollector(process_metrics=False)


def events(collector: MetricsCollector) -> LabelBudget[Counter]:
    """A labelled counter declared the way a plugin declares one (the event bus's)."""
    return collector.bounded(
        collector.counter("eventbus_events_total", "Events handled by the event bus", ["event", "status"])
    )


def test_the_collector_declares_no_metric_of_another_plugin(collector: MetricsCollector) -> None:
    body = collector.render()[0].decode()
    assert "eventbus_" not in body and "db_query" not in body


def test_a_bounded_counter_counts_by_label_set(collector: MetricsCollector) -> None:
    counted = events(collector)
    counted.labels("user.created", "success").inc()
    counted.labels("user.created", "success").inc()
    counted.labels("user.created", "failure").inc()
    counted.labels("order.placed", "success").inc()
    assert value(collector, "eventbus_events_total", event="user.created", status="success") == 2
    assert value(collector, "eventbus_events_total", event="user.created", status="failure") == 1
    assert value(collector, "eventbus_events_total", event="order.placed", status="success") == 1


def test_a_bounded_histogram_observes_durations(collector: MetricsCollector) -> None:
    queries = collector.bounded(
        collector.histogram(
            "db_query_duration_seconds",
            "Database query duration in seconds",
            ["operation", "collection"],
            buckets=(0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1.0, 5.0),
        )
    )
    queries.labels("findOne", "users").observe(0.05)
    queries.labels("findOne", "users").observe(0.002)
    labels = {"operation": "findOne", "collection": "users"}
    assert value(collector, "db_query_duration_seconds_count", **labels) == 2
    assert value(collector, "db_query_duration_seconds_sum", **labels) == pytest.approx(0.052)
    assert value(collector, "db_query_duration_seconds_bucket", le="0.005", **labels) == 1


def test_observe_http_counts_and_times(collector: MetricsCollector) -> None:
    collector.observe_http("GET", "/users/{id}", 200, 0.01)
    collector.observe_http("GET", "/users/{id}", 200, 0.3)
    collector.observe_http("BREW", "/users/{id}", 405, 0.001)
    labels = {"method": "GET", "route": "/users/{id}", "status": "200"}
    assert value(collector, "http_requests_total", **labels) == 2
    assert value(collector, "http_request_duration_seconds_count", **labels) == 2
    assert value(collector, "http_request_duration_seconds_sum", **labels) == pytest.approx(0.31)
    # Arbitrary methods don't create label values: they all count as OTHER.
    assert value(collector, "http_requests_total", method="OTHER", route="/users/{id}", status="405") == 1


def test_an_http_observer_records_what_observe_http_does() -> None:
    collector = MetricsCollector(process_metrics=False, multiprocess_dir=None, max_series=2)
    observe = collector.http_observer("GET", "/users/{id}", 200)
    observe(0.01)
    collector.observe_http("GET", "/users/{id}", 200, 0.3)
    labels = {"method": "GET", "route": "/users/{id}", "status": "200"}
    assert value(collector, "http_requests_total", **labels) == 2
    assert value(collector, "http_request_duration_seconds_sum", **labels) == pytest.approx(0.31)
    collector.http_observer("BREW", "/users/{id}", 405)(0.001)
    assert value(collector, "http_requests_total", method="OTHER", route="/users/{id}", status="405") == 1
    for i in range(3):  # the budget (2 label sets) is spent: the rest share the overflow series
        collector.http_observer("GET", f"/r{i}", 200)(0.0)
    assert value(collector, "http_requests_total", method="GET", route=OVERFLOW, status="200") == 3


def test_declared_metrics_are_get_or_create(collector: MetricsCollector) -> None:
    a = collector.counter("signups_total", "Accounts created", ["plan"])
    b = collector.counter("signups", "other help text is ignored", ["plan"])
    assert a is b
    assert isinstance(a, Counter)
    g = collector.gauge("queue_depth", "Jobs waiting", ["queue"])
    assert isinstance(g, Gauge)
    assert collector.gauge("queue_depth", "Jobs waiting", ["queue"]) is g
    h = collector.histogram("job_seconds", "Job duration", buckets=[0.1, 1])
    assert isinstance(h, Histogram)
    assert collector.histogram("job_seconds", "Job duration", buckets=[0.1, 1.0]) is h
    a.labels("free").inc(3)
    assert value(collector, "signups_total", plan="free") == 3


def test_redeclaring_with_other_labels_names_both(collector: MetricsCollector) -> None:
    collector.counter("signups_total", "Accounts created", ["plan"])
    with pytest.raises(MetricConflictError) as info:
        collector.counter("signups_total", "Accounts created", ["plan", "region"])
    message = str(info.value)
    assert "'signups'" in message
    assert "['plan']" in message
    assert "['plan', 'region']" in message


def test_redeclaring_with_another_type_or_buckets_fails(collector: MetricsCollector) -> None:
    collector.histogram("job_seconds", "Job duration", buckets=[0.1, 1])
    with pytest.raises(MetricConflictError, match="histogram"):
        collector.gauge("job_seconds", "Job duration")
    with pytest.raises(MetricConflictError, match=r"buckets \[0.1, 1.0\]"):
        collector.histogram("job_seconds", "Job duration", buckets=[0.5, 5])


def test_clash_with_another_metrics_series_is_a_conflict(collector: MetricsCollector) -> None:
    # http_request_duration_seconds already exposes http_request_duration_seconds_count.
    with pytest.raises(MetricConflictError, match="another metric"):
        collector.counter("http_request_duration_seconds_count", "clash")


def test_label_names_as_a_string_are_rejected(collector: MetricsCollector) -> None:
    with pytest.raises(TypeError, match="not a string"):
        collector.counter("things_total", "Things", "kind")  # type: ignore[arg-type]


def test_two_collectors_in_one_process_do_not_collide() -> None:
    first = MetricsCollector()
    second = MetricsCollector()
    events(first).labels("a", "success").inc()
    second.counter("only_in_second_total", "x").inc()
    assert value(first, "eventbus_events_total", event="a", status="success") == 1
    assert value(second, "eventbus_events_total", event="a", status="success") is None
    assert value(first, "only_in_second_total") is None
    # Both carry process metrics without a duplicate-registration error.
    assert value(first, "process_resident_memory_bytes")
    assert value(second, "process_cpu_seconds_total") is not None


def test_series_beyond_the_budget_collapse_into_one(caplog: pytest.LogCaptureFixture) -> None:
    collector = MetricsCollector(process_metrics=False, max_series=5)
    counted = events(collector)
    for i in range(50):
        counted.labels(f"event-{i}", "success").inc()
    for i in range(50):
        collector.observe_http("GET", f"/r{i}", 200, 0.0)
    body, _ = collector.render()
    families = {f.name: f for f in text_string_to_metric_families(body.decode())}
    assert len(families["eventbus_events"].samples) == 6  # 5 label sets + the overflow one
    assert value(collector, "eventbus_events_total", event=OVERFLOW, status=OVERFLOW) == 45
    assert value(collector, "http_requests_total", method="GET", route=OVERFLOW, status="200") == 45
    assert "reached 5 label sets" in caplog.text


def test_render_prometheus_text_and_openmetrics(collector: MetricsCollector) -> None:
    events(collector).labels("x", "success").inc()
    text, ctype = collector.render(None)
    assert ctype.startswith("text/plain")
    assert b"eventbus_events_total" in text
    om, octype = collector.render("application/openmetrics-text; version=1.0.0")
    assert octype.startswith("application/openmetrics-text")
    assert om.rstrip().endswith(b"# EOF")


def test_http_metrics_match_prometheus_client_exactly(collector: MetricsCollector) -> None:
    # The HTTP series are exported by our own collector (no per-request locks): same numbers as
    # prometheus-client's Counter and Histogram given the same observations, bucket edges included.
    reference = CollectorRegistry()
    labels = ["method", "route", "status"]
    ref_count = Counter("http_requests", "x", labels, registry=reference)
    ref_hist = Histogram(
        "http_request_duration_seconds", "x", labels, registry=reference, buckets=DEFAULT_HTTP_BUCKETS
    )
    observations = [0.0, 0.005, 0.0051, 0.01, 0.3, 2.5, 9.99, 10.0, 10.01, 1e6]
    for i, seconds in enumerate(observations):
        key = ("GET" if i % 2 else "POST", "/r/{id}", 200 if i % 3 else 404)
        collector.observe_http(*key, seconds)
        ref_count.labels(key[0], key[1], str(key[2])).inc()
        ref_hist.labels(key[0], key[1], str(key[2])).observe(seconds)

    def numbers(registry: CollectorRegistry) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
        return {
            (s.name, tuple(sorted(s.labels.items()))): s.value
            for family in registry.collect()
            for s in family.samples
            if s.name.startswith("http_request") and not s.name.endswith("_created")
        }

    ours = numbers(collector.registry)
    assert ours == numbers(reference)
    assert len(ours) == 4 * (1 + 12 + 2)  # 4 label sets: _total; 11 buckets + Inf; _count, _sum


def test_series_buckets_values_at_and_around_the_first_bound_as_bisect_does() -> None:
    # the first bucket is found by one comparison, the others by bisection: same buckets either way
    series = Series((0.005, 0.01), threading.Lock())
    for seconds in (-1.0, 0.0, 0.005, 0.0050001, 0.01, 0.0100001, 5.0):
        series.observe(seconds)
    assert series.buckets == [3, 2, 2]  # le 0.005, le 0.01, +Inf
    assert series.sum == pytest.approx(-1.0 + 0.005 + 0.0050001 + 0.01 + 0.0100001 + 5.0)
    unbounded = Series((), threading.Lock())  # only +Inf
    unbounded.observe(0.0)
    assert unbounded.buckets == [1]


def test_builtin_http_metrics_cannot_be_redeclared(collector: MetricsCollector) -> None:
    with pytest.raises(MetricConflictError, match="built-in metric of the collector"):
        collector.counter("http_requests_total", "x", ["method", "route", "status"])
    with pytest.raises(MetricConflictError, match="built-in"):
        collector.histogram("http_request_duration_seconds", "x")


def test_a_plugins_own_metric_gets_the_series_budget(caplog: pytest.LogCaptureFixture) -> None:
    collector = MetricsCollector(process_metrics=False, max_series=3)
    jobs = collector.counter("jobs_total", "Jobs run", ["queue"])
    budget = collector.bounded(jobs)
    assert collector.bounded(jobs) is budget  # one budget per metric, however often asked
    for i in range(10):
        budget.labels(f"q{i}").inc()
    assert [value(collector, "jobs_total", queue=f"q{i}") for i in range(4)] == [1.0, 1.0, 1.0, None]
    assert value(collector, "jobs_total", queue=OVERFLOW) == 7
    assert caplog.text.count("metric jobs_total reached 3 label sets") == 1


def test_buckets_configured_for_a_name_win_over_the_declared_ones() -> None:
    collector = MetricsCollector(process_metrics=False, buckets={"query_seconds": [0.5, 2.0]})
    first = collector.histogram("query_seconds", "Queries", ["op"], buckets=(0.1, 1.0))
    assert collector.histogram("query_seconds", "Queries", ["op"], buckets=(0.3,)) is first
    first.labels("find").observe(1.0)
    assert value(collector, "query_seconds_bucket", op="find", le="0.5") == 0
    assert value(collector, "query_seconds_bucket", op="find", le="2.0") == 1
    collector.histogram("other_seconds", "x", buckets=(0.1,))
    with pytest.raises(MetricConflictError):  # other histograms keep the strict check
        collector.histogram("other_seconds", "x", buckets=(0.2,))


def test_the_collector_satisfies_the_metrics_contract(collector: MetricsCollector) -> None:
    from kernel_metrics import Metrics

    assert isinstance(collector, Metrics)
