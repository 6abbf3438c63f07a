"""Multiprocess mode: several processes write to PROMETHEUS_MULTIPROC_DIR; one scrape sums them all."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest
from kernel_metrics import MULTIPROC_ENV, MetricsCollector, MultiprocessSetupError
from prometheus_client.parser import text_string_to_metric_families

WORKER = """
import sys
from kernel_metrics import MetricsCollector
m = MetricsCollector()
assert m.multiprocess
events = m.bounded(m.counter("eventbus_events_total", "Events", ["event", "status"]))
for _ in range(int(sys.argv[1])):
    events.labels("order.placed", "success").inc()
m.bounded(m.histogram("db_query_duration_seconds", "Queries", ["operation", "collection"])).labels(
    "find", "orders").observe(0.02)
m.counter("jobs_done_total", "Jobs done", ["queue"]).labels("mail").inc(int(sys.argv[1]))
"""


def total(text: str, name: str, **labels: str) -> float:
    return sum(
        s.value
        for f in text_string_to_metric_families(text)
        for s in f.samples
        if s.name == name and all(s.labels.get(k) == v for k, v in labels.items())
    )


def test_two_processes_are_summed_in_one_scrape(tmp_path: Path) -> None:
    env = {**os.environ, MULTIPROC_ENV: str(tmp_path)}
    procs = [subprocess.Popen([sys.executable, "-c", WORKER, str(n)], env=env) for n in (1234, 4321)]
    assert [p.wait(60) for p in procs] == [0, 0]
    pids = {re.sub(r"\D", "", f.stem.rsplit("_", 1)[-1]) for f in tmp_path.glob("*.db")}
    assert len(pids) == 2

    body, _ = MetricsCollector(multiprocess_dir=str(tmp_path)).render()
    text = body.decode()
    assert total(text, "eventbus_events_total", event="order.placed", status="success") == 1234 + 4321
    assert total(text, "jobs_done_total", queue="mail") == 1234 + 4321
    assert total(text, "db_query_duration_seconds_count", operation="find") == 2


def test_multiproc_dir_must_exist(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(MULTIPROC_ENV, str(tmp_path / "missing"))
    with pytest.raises(MultiprocessSetupError, match="not an existing directory"):
        MetricsCollector()


def test_multiproc_dir_set_after_import_is_refused(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # prometheus_client was imported by this test process without the variable.
    monkeypatch.setenv(MULTIPROC_ENV, str(tmp_path))
    with pytest.raises(MultiprocessSetupError, match="set after prometheus_client was imported"):
        MetricsCollector()


@pytest.mark.slow
def test_two_uvicorn_workers_report_the_sum_of_their_requests(
    serve: Callable[..., Any], tmp_path: Path
) -> None:
    mp_dir = tmp_path / "prom"
    mp_dir.mkdir()
    served = serve(
        '[kernel]\nplugins = ["metrics"]\n',
        "--workers",
        "2",
        "--no-access-log",
        env={MULTIPROC_ENV: str(mp_dir)},
    )
    n = 120
    for _ in range(n):
        # A new connection per request lets either worker accept it.
        assert httpx.get(served.url + "/health", headers={"connection": "close"}).status_code == 200
    worker_pids = {f.stem.rsplit("_", 1)[-1] for f in mp_dir.glob("counter_*.db")}
    assert len(worker_pids) >= 2, sorted(p.name for p in mp_dir.iterdir())
    scrape = httpx.get(served.url + "/health/metrics").text
    # + 1 for the fixture's readiness probe.
    assert total(scrape, "http_requests_total", route="/health", status="200") == n + 1
    assert total(scrape, "http_active_connections") == 1  # only the scrape itself is in flight
    assert served.stop() == 0
