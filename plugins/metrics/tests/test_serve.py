"""``kernel serve`` with the metrics plugin over real HTTP in a real uvicorn process."""

from __future__ import annotations

import shutil
import signal
import socket
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest
from prometheus_client.openmetrics.parser import text_string_to_metric_families as openmetrics_families
from prometheus_client.parser import text_string_to_metric_families

TOKEN = "tok-9f8e7d6c5b4a39281706"
CONFIG = f"""
[kernel]
plugins = ["metrics"]

[plugins.metrics]
token = "{TOKEN}"
"""
AUTH = {"authorization": f"Bearer {TOKEN}"}


def samples(text: str, name: str) -> dict[tuple[tuple[str, str], ...], float]:
    out = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            if s.name == name:
                out[tuple(sorted(s.labels.items()))] = s.value
    return out


def test_real_server_serves_health_and_a_parseable_scrape(serve: Callable[..., Any], tmp_path: Path) -> None:
    served = serve(CONFIG)
    with httpx.Client(base_url=served.url) as c:
        health = c.get("/health")
        assert health.status_code == 200
        assert health.json()["status"] == "ok"
        for i in range(300):
            assert c.get(f"/wp-admin/{i}.php").status_code == 404
        denied = c.get("/health/metrics")
        scrape = c.get("/health/metrics", headers=AUTH)
        om = c.get("/health/metrics", headers={**AUTH, "accept": "application/openmetrics-text"})
    assert denied.status_code == 401
    assert scrape.status_code == 200
    requests = samples(scrape.text, "http_requests_total")
    # The ready-probe of the fixture hit /health once before the test did.
    assert requests == {
        (("method", "GET"), ("route", "/health"), ("status", "200")): 2,
        (("method", "GET"), ("route", "<unmatched>"), ("status", "404")): 300,
    }
    assert samples(scrape.text, "process_resident_memory_bytes")
    assert samples(om.text, "http_requests_total") == requests
    # The strict OpenMetrics parser rejects anything malformed (and requires the # EOF line).
    om_families = {f.name for f in openmetrics_families(om.text)}
    assert {"http_requests", "http_request_duration_seconds", "process_cpu_seconds"} <= om_families
    assert om.headers["content-type"].startswith("application/openmetrics-text")

    assert served.stop() == 0
    for text in (served.log, health.text, denied.text, str(denied.headers)):
        assert TOKEN not in text


def test_promtool_accepts_the_scrape_when_installed(serve: Callable[..., Any]) -> None:
    promtool = shutil.which("promtool")
    if promtool is None:
        pytest.skip("promtool is not on PATH")
    served = serve(CONFIG)
    with httpx.Client(base_url=served.url, headers=AUTH) as c:
        c.get("/nope")
        body = c.get("/health/metrics").content
    # promtool lints the Prometheus text format (OpenMetrics is checked by the strict parser above).
    assert b"http_requests_total" in body
    check = subprocess.run([promtool, "check", "metrics"], input=body, capture_output=True)
    assert check.returncode == 0, check.stderr.decode()


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_signal_runs_the_teardown_and_exits_zero(serve: Callable[..., Any], sig: int) -> None:
    served = serve('[kernel]\nplugins = ["metrics"]\n')
    assert httpx.get(served.url + "/health").status_code == 200
    assert served.stop(sig) == 0
    log = served.log
    assert "kernel serve: shutting down" in log
    assert "kernel stopped" in log
    assert log.index("kernel serve: shutting down") < log.index("kernel stopped")


def test_invalid_config_fails_fast_with_every_error(tmp_path: Path) -> None:
    config = tmp_path / "kernel.toml"
    config.write_text('[kernel]\nplugins = ["metrics"]\n[plugins.metrics]\npath = "x"\n[bogus]\n')
    result = subprocess.run(
        [sys.executable, "-m", "kernel", "--config", str(config), "serve", "--port", "1"],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert result.returncode == 2
    assert "plugins.metrics.path: must start with '/'" in result.stderr
    assert "bogus: unknown section" in result.stderr


def test_port_in_use_exits_1_after_tearing_the_kernel_down(tmp_path: Path) -> None:
    config = tmp_path / "kernel.toml"
    config.write_text('[kernel]\nplugins = ["metrics"]\n')
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = subprocess.run(
            [sys.executable, "-m", "kernel", "--config", str(config), "serve", "--port", str(port)],
            capture_output=True,
            text=True,
            timeout=60,
        )
    assert result.returncode == 1
    assert "kernel stopped" in result.stderr
