"""The kernel's probes next to the scrape endpoint: open like ``/health``, recorded by their template."""

from __future__ import annotations

import signal
import time
from collections.abc import Callable
from typing import Any

import httpx
import pytest
from kernel_metrics import MetricsCollector

from kernel.health import begin_drain, end_drain
from kernel.testing import boot_kernel
from kernel.web import KernelApp

TOKEN = "probe-scrape-token-0123456789"
PROBES = ("/health/live", "/health/ready", "/health/startup")


def client(app: Any) -> httpx.AsyncClient:
    return httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app, client=("10.0.0.7", 40000)), base_url="http://kernel"
    )


@pytest.mark.anyio
async def test_probes_stay_open_while_the_scrape_needs_its_token_and_are_recorded_by_template() -> None:
    async with boot_kernel("metrics", config={"metrics": {"token": TOKEN}}) as kernel:
        collector = kernel.get(MetricsCollector)
        async with client(KernelApp(kernel)) as c:
            answers = {path: (await c.get(path)).status_code for path in PROBES}
            denied = (await c.get("/health/metrics")).status_code
            begin_drain()
            try:
                draining = await c.get("/health/ready")
            finally:
                end_drain()
    assert answers == dict.fromkeys(PROBES, 200)  # no token needed, as for /health
    assert denied == 401
    assert (draining.status_code, draining.json()) == (503, {"status": "draining"})
    get = collector.registry.get_sample_value
    for path in PROBES:
        assert get("http_requests_total", {"method": "GET", "route": path, "status": "200"}) == 1
    assert get("http_requests_total", {"method": "GET", "route": "/health/ready", "status": "503"}) == 1


@pytest.mark.anyio
async def test_probes_can_be_left_out_of_the_http_metrics() -> None:
    config = {"metrics": {"exclude_routes": list(PROBES)}}
    async with boot_kernel("metrics", config=config) as kernel:
        collector = kernel.get(MetricsCollector)
        async with client(KernelApp(kernel)) as c:
            for path in PROBES:
                assert (await c.get(path)).status_code == 200
            await c.get("/health")
    get = collector.registry.get_sample_value
    for path in PROBES:
        assert get("http_requests_total", {"method": "GET", "route": path, "status": "200"}) is None
    assert get("http_requests_total", {"method": "GET", "route": "/health", "status": "200"}) == 1


def test_served_readiness_flips_at_sigterm_while_liveness_and_the_scrape_still_answer(
    serve: Callable[..., Any],
) -> None:
    config = f'[kernel]\nplugins = ["metrics"]\ndrain_delay = 3\n\n[plugins.metrics]\ntoken = "{TOKEN}"\n'
    served = serve(config)
    auth = {"authorization": f"Bearer {TOKEN}"}
    with httpx.Client(base_url=served.url) as c:
        assert c.get("/health/ready").status_code == 200
        served.proc.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + 30
        while (ready := c.get("/health/ready")).status_code != 503:  # polls the served process's state
            assert time.monotonic() < deadline, served.log
            time.sleep(0.02)  # the poll interval, not a wait for the behaviour
        live = c.get("/health/live")
        scrape = c.get("/health/metrics", headers=auth)
    assert ready.json() == {"status": "draining"}
    assert live.status_code == 200
    assert scrape.status_code == 200
    assert 'http_requests_total{method="GET",route="/health/ready",status="503"}' in scrape.text
    assert served.proc.wait(30) == 0, served.log
    assert "SIGTERM: /health/ready answers 503; serving 3s more" in served.log
