"""Cost of the collector's recording API vs the raw prometheus-client call it stands for.

Raw baselines are what a caller would write without the collector: ``metric.labels(...).inc()``
/ ``.observe()`` on a metric in a private ``CollectorRegistry``.
"""

from __future__ import annotations

from kernel_metrics import DEFAULT_HTTP_BUCKETS, MetricsCollector
from kernel_repository import DEFAULT_DB_BUCKETS
from prometheus_client import CollectorRegistry, Counter, Histogram

from ._harness import compare, rounds

SUITE = "metrics_record"


def run(quick: bool) -> None:
    ops = rounds(20_000, 8_000)
    n = rounds(15, 5)
    ours = MetricsCollector(process_metrics=False, multiprocess_dir=None)
    # What the event bus and the repository declare and record through (series budget included).
    ours_events = ours.bounded(ours.counter("eventbus_events_total", "x", ["event", "status"]))
    ours_db = ours.bounded(
        ours.histogram(
            "db_query_duration_seconds", "x", ["operation", "collection"], buckets=DEFAULT_DB_BUCKETS
        )
    )
    raw = CollectorRegistry()
    events = Counter("eventbus_events", "x", ["event", "status"], registry=raw)
    db = Histogram(
        "db_query_duration_seconds",
        "x",
        ["operation", "collection"],
        registry=raw,
        buckets=DEFAULT_DB_BUCKETS,
    )
    requests = Counter("http_requests", "x", ["method", "route", "status"], registry=raw)
    duration = Histogram(
        "http_request_duration_seconds",
        "x",
        ["method", "route", "status"],
        registry=raw,
        buckets=DEFAULT_HTTP_BUCKETS,
    )
    custom_ours = ours.counter("jobs_done_total", "x", ["queue"])
    custom_raw = Counter("jobs_done", "x", ["queue"], registry=raw)

    def raw_http() -> None:
        requests.labels("GET", "/users/{id}", "200").inc()
        duration.labels("GET", "/users/{id}", "200").observe(0.012)

    compare(
        SUITE,
        "record_event",
        lambda: ours_events.labels("user.created", "success").inc(),
        lambda: events.labels("user.created", "success").inc(),
        ops=ops,
        rounds_=n,
    )
    compare(
        SUITE,
        "record_db_query",
        lambda: ours_db.labels("findOne", "users").observe(0.004),
        lambda: db.labels("findOne", "users").observe(0.004),
        ops=ops,
        rounds_=n,
    )
    compare(
        SUITE,
        "observe_http",
        lambda: ours.observe_http("GET", "/users/{id}", 200, 0.012),
        raw_http,
        ops=ops,
        rounds_=n,
    )
    # The floor: a labelled child resolved once and kept by the caller (what our cache does inside).
    bound = events.labels("user.created", "success")
    compare(
        SUITE,
        "record_event_vs_bound_child",
        lambda: ours_events.labels("user.created", "success").inc(),
        bound.inc,
        ops=ops,
        rounds_=n,
    )
    # Declared metrics are plain prometheus-client objects: there is no layer to cost.
    compare(
        SUITE,
        "declared_counter",
        lambda: custom_ours.labels("mail").inc(),
        lambda: custom_raw.labels("mail").inc(),
        ops=ops,
        rounds_=n,
    )


cpu_bound = run
