"""The metrics plugin in a kernel: registration, config, the protected scrape endpoint."""

from __future__ import annotations

import logging
from typing import Any

import httpx
import pytest
from kernel_metrics import Metrics, MetricsCollector
from prometheus_client.parser import text_string_to_metric_families

from kernel import ConfigError
from kernel.testing import boot_kernel, make_kernel
from kernel.web import KernelApp

TOKEN = "s3cr3t-scrape-token-0123456789"


def client(app: Any, host: str = "127.0.0.1") -> httpx.AsyncClient:
    return httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app, client=(host, 40000)), base_url="http://kernel"
    )


@pytest.mark.anyio
async def test_collector_is_registered_by_type_and_by_name() -> None:
    async with boot_kernel("metrics") as kernel:
        collector = kernel.get(MetricsCollector)
        assert kernel.registry.get("metrics") is collector
        assert kernel.get(Metrics) is collector  # the contract other plugins resolve
        assert kernel.registry.provider_of(MetricsCollector) == "metrics"
        assert collector.registry.get_sample_value("process_resident_memory_bytes")


@pytest.mark.anyio
async def test_scrape_returns_prometheus_text_or_openmetrics() -> None:
    async with boot_kernel("metrics") as kernel:
        collector = kernel.get(Metrics)  # what a plugin declares shows in the scrape
        collector.counter("orders_placed_total", "Orders placed", ["channel"]).labels("web").inc()
        async with client(KernelApp(kernel)) as c:
            r = await c.get("/health/metrics")
            assert r.status_code == 200
            assert r.headers["content-type"].startswith("text/plain; version=0.0.4")
            assert r.headers["cache-control"] == "no-store"
            names = {f.name for f in text_string_to_metric_families(r.text)}
            assert {
                "http_requests",
                "http_request_duration_seconds",
                "http_active_connections",
                "orders_placed",
                "process_cpu_seconds",
                "process_resident_memory_bytes",
            } <= names
            om = await c.get(
                "/health/metrics", headers={"accept": "application/openmetrics-text; version=1.0.0"}
            )
            assert om.headers["content-type"].startswith("application/openmetrics-text")
            assert om.text.endswith("# EOF\n")
            head = await c.head("/health/metrics")
            assert head.status_code == 200
            assert head.content == b""


@pytest.mark.anyio
async def test_bearer_token_protects_the_scrape(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    async with boot_kernel("metrics", config={"metrics": {"token": TOKEN}}) as kernel:
        async with client(KernelApp(kernel)) as c:
            missing = await c.get("/health/metrics")
            wrong = await c.get("/health/metrics", headers={"authorization": "Bearer nope"})
            right = await c.get("/health/metrics", headers={"authorization": f"Bearer {TOKEN}"})
            health = await c.get("/health")
        assert missing.status_code == wrong.status_code == 401
        assert missing.headers["www-authenticate"].startswith("Bearer")
        assert right.status_code == 200
        assert health.status_code == 200  # /health stays public
        shown = kernel.effective_config()["plugins"]["metrics"]["token"]
    for response in (missing, wrong, right, health):
        assert TOKEN not in response.text
        assert TOKEN not in str(response.headers)
    assert TOKEN not in caplog.text
    assert TOKEN not in shown


@pytest.mark.anyio
async def test_loopback_only_refuses_remote_clients() -> None:
    async with boot_kernel("metrics", config={"metrics": {"loopback_only": True}}) as kernel:
        app = KernelApp(kernel)
        async with client(app, "10.1.2.3") as remote, client(app, "::1") as local6:
            assert (await remote.get("/health/metrics")).status_code == 403
            assert (await local6.get("/health/metrics")).status_code == 200
            assert (await remote.get("/health")).status_code == 200


@pytest.mark.anyio
async def test_token_and_loopback_combine() -> None:
    config = {"metrics": {"loopback_only": True, "token": TOKEN}}
    async with boot_kernel("metrics", config=config) as kernel:
        app = KernelApp(kernel)
        auth = {"authorization": f"Bearer {TOKEN}"}
        async with client(app, "192.0.2.1") as remote, client(app) as local:
            assert (await remote.get("/health/metrics", headers=auth)).status_code == 403
            assert (await local.get("/health/metrics")).status_code == 401
            assert (await local.get("/health/metrics", headers=auth)).status_code == 200


@pytest.mark.anyio
async def test_custom_path_exclusions_and_scrape_recording() -> None:
    config = {"metrics": {"path": "/ops/metrics", "record_scrapes": True, "exclude_routes": ["/health"]}}
    async with boot_kernel("metrics", config=config) as kernel:
        collector = kernel.get(MetricsCollector)
        async with client(KernelApp(kernel)) as c:
            await c.get("/health")
            assert (await c.get("/health/metrics")).status_code == 404
            await c.get("/ops/metrics")
        get = collector.registry.get_sample_value
        assert get("http_requests_total", {"method": "GET", "route": "/health", "status": "200"}) is None
        assert get("http_requests_total", {"method": "GET", "route": "/ops/metrics", "status": "200"}) == 1


@pytest.mark.anyio
async def test_middleware_can_be_turned_off() -> None:
    async with boot_kernel("metrics", config={"metrics": {"http_middleware": False}}) as kernel:
        async with client(KernelApp(kernel)) as c:
            await c.get("/health")
        body, _ = kernel.get(MetricsCollector).render()
        assert b'route="/health"' not in body


def test_an_open_endpoint_is_a_production_error_and_a_warning_elsewhere() -> None:
    # a production rule of the metrics plugin's kernel_check hook (issue 11, item 5)
    with pytest.raises(ConfigError) as exc_info:
        make_kernel("metrics", settings={"env": "production"})
    assert exc_info.value.errors == [
        "plugins.metrics.token: the scrape endpoint /health/metrics is open to any client: set token "
        "(scrapers send 'Authorization: Bearer <token>') or loopback_only = true "
        "(not allowed when env = 'production')"
    ]
    assert make_kernel("metrics", settings={"env": "development"}).warnings == (
        "plugins.metrics.token: the scrape endpoint /health/metrics is open to any client: set token "
        "(scrapers send 'Authorization: Bearer <token>') or loopback_only = true "
        "(an error when env = 'production')",
    )
    for table in ({"token": "s3cret-token"}, {"loopback_only": True}):
        protected = make_kernel("metrics", config={"metrics": table}, settings={"env": "production"})
        assert protected.warnings == ()


@pytest.mark.parametrize(
    ("table", "expected"),
    [
        ({"path": "metrics"}, "plugins.metrics.path: must start with '/'"),
        ({"http_buckets": [1.0, 0.5]}, "plugins.metrics.http_buckets: must be strictly increasing"),
        ({"http_buckets": []}, "plugins.metrics.http_buckets: must list at least one bucket bound"),
        # The repository's histogram bounds are its own setting: [plugins.repository] db_buckets.
        ({"db_buckets": [0.1]}, "plugins.metrics.db_buckets: unknown key"),
        ({"max_routes": 0}, "plugins.metrics.max_routes: must be > 0"),
        ({"token": 5}, "plugins.metrics.token"),
        ({"tokn": "x"}, "plugins.metrics.tokn: unknown key"),
    ],
)
def test_bad_config_is_reported_with_its_key(table: dict[str, Any], expected: str) -> None:
    with pytest.raises(ConfigError) as info:
        make_kernel("metrics", config={"metrics": table})
    assert any(e.startswith(expected) for e in info.value.errors), info.value.errors


@pytest.mark.anyio
async def test_bearer_scheme_is_case_insensitive() -> None:
    async with boot_kernel("metrics", config={"metrics": {"token": TOKEN}}) as kernel:
        async with client(KernelApp(kernel)) as c:
            for scheme in ("Bearer", "bearer", "BEARER", "bEaReR"):
                r = await c.get("/health/metrics", headers={"authorization": f"{scheme} {TOKEN}"})
                assert r.status_code == 200, scheme
            wrong_case_token = await c.get(
                "/health/metrics", headers={"authorization": f"bearer {TOKEN.upper()}"}
            )
            other_scheme = await c.get("/health/metrics", headers={"authorization": f"Basic {TOKEN}"})
            no_token = await c.get("/health/metrics", headers={"authorization": "bearer"})
            glued = await c.get("/health/metrics", headers={"authorization": f"bearer{TOKEN}"})
        assert wrong_case_token.status_code == 401  # the token itself stays case-sensitive
        assert other_scheme.status_code == no_token.status_code == glued.status_code == 401
