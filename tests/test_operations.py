"""The operations kit in docs/operations: dashboard structure, alert rules, and metric names that exist."""

from __future__ import annotations

import importlib.util
import json
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[1]
OPS = ROOT / "docs" / "operations"
PLUGINS = ROOT / "plugins"

# Words of PromQL that look like metric names but are not.
PROMQL_WORDS = {
    "sum",
    "min",
    "max",
    "avg",
    "count",
    "topk",
    "bottomk",
    "quantile",
    "stddev",
    "stdvar",
    "group",
    "rate",
    "irate",
    "increase",
    "delta",
    "idelta",
    "histogram_quantile",
    "label_values",
    "abs",
    "clamp_min",
    "clamp_max",
    "vector",
    "scalar",
    "time",
    "by",
    "without",
    "and",
    "or",
    "unless",
    "on",
    "ignoring",
    "group_left",
    "group_right",
    "bool",
    "offset",
    "absent",
    "avg_over_time",
    "max_over_time",
    "min_over_time",
}
# Series Prometheus itself attaches to every scrape target.
SYNTHETIC = {"up", "scrape_duration_seconds", "scrape_samples_scraped"}
HISTOGRAM_SUFFIXES = ("_bucket", "_count", "_sum")


def load_dashboard() -> dict[str, Any]:
    with (OPS / "grafana-dashboard.json").open(encoding="utf-8") as f:
        data: dict[str, Any] = json.load(f)
    return data


def dashboard_exprs(dashboard: dict[str, Any]) -> list[str]:
    return [t["expr"] for p in dashboard["panels"] for t in p.get("targets", [])]


def rule_exprs() -> list[dict[str, Any]]:
    yaml = pytest.importorskip("yaml")
    with (OPS / "alerts.yml").open(encoding="utf-8") as f:
        doc = yaml.safe_load(f)
    return [rule for group in doc["groups"] for rule in group["rules"]]


def metric_names(expr: str) -> set[str]:
    """Metric names an expression selects (label matchers, groupings and ranges removed)."""
    text = re.sub(r'"(?:[^"\\]|\\.)*"', "", expr)  # string literals ($job regexes, "5..")
    text = re.sub(r"\{[^}]*\}", "", text)  # label matchers
    text = re.sub(r"\[[^\]]*\]", "", text)  # range selectors
    text = re.sub(r"\b(?:by|without|on|ignoring)\s*\([^)]*\)", "", text)  # grouping label lists
    names = set()
    for m in re.finditer(r"(?<![\w$])([a-zA-Z_:][a-zA-Z0-9_:]*)\s*(\(?)", text):
        word, call = m.group(1), m.group(2)
        if call or word in PROMQL_WORDS:
            continue
        names.add(word)
    return names


def emitted_names() -> set[str]:
    """Every series name our plugins emit: the collector's own scrape plus names the plugins declare."""
    pytest.importorskip("kernel_metrics")
    from kernel_metrics import MetricsCollector

    collector = MetricsCollector(process_metrics=True, multiprocess_dir=None)
    body, _ = collector.render()
    names = set(re.findall(r"^# TYPE (\S+) ", body.decode(), flags=re.M))
    names |= set(re.findall(r"^([a-zA-Z_:][a-zA-Z0-9_:]*)[{ ]", body.decode(), flags=re.M))
    # Plugins declare theirs on the collector at boot (cache, eventbus, queue need a Redis);
    # the declarations are string literals in their sources.
    pattern = re.compile(r'"([a-z][a-z0-9_]*_(?:total|seconds|size|bytes|connections|backlog))"')
    for source in PLUGINS.glob("*/kernel_*/*.py"):
        names |= set(pattern.findall(source.read_text(encoding="utf-8")))
    return names


def known(name: str, emitted: set[str]) -> bool:
    if name in emitted or name in SYNTHETIC:
        return True
    base = next((name.removesuffix(s) for s in HISTOGRAM_SUFFIXES if name.endswith(s)), None)
    return base is not None and base in emitted


def test_metric_name_extraction() -> None:
    expr = (
        "histogram_quantile(0.99, sum by (route, le) "
        '(rate(http_request_duration_seconds_bucket{job=~"$job", status=~"5.."}[5m]))) > 1 and up == 0'
    )
    assert metric_names(expr) == {"http_request_duration_seconds_bucket", "up"}


def test_dashboard_structure() -> None:
    dash = load_dashboard()
    assert dash["schemaVersion"] >= 36
    assert [i["name"] for i in dash["__inputs"]] == ["DS_PROMETHEUS"]
    ids = [p["id"] for p in dash["panels"]]
    assert len(ids) == len(set(ids)), "panel ids must be unique"
    graphs = [p for p in dash["panels"] if p["type"] != "row"]
    assert len(graphs) >= 10
    for panel in graphs:
        assert panel["targets"], f"panel {panel['title']!r} has no queries"
        assert panel["datasource"]["uid"] == "${DS_PROMETHEUS}"
        for target in panel["targets"]:
            assert target["datasource"]["uid"] == "${DS_PROMETHEUS}"
            assert target["expr"].strip()
        refs = [t["refId"] for t in panel["targets"]]
        assert len(refs) == len(set(refs))
    titles = " ".join(p["title"].lower() for p in graphs)
    for topic in (
        "request rate",
        "latency",
        "error",
        "event rate",
        "dead-letter",
        "hit rate",
        "job",
        "query latency",
        "cpu",
        "memory",
    ):
        assert topic in titles, f"no panel about {topic}"


def test_dashboard_metrics_are_emitted() -> None:
    emitted = emitted_names()
    referenced = {n for e in dashboard_exprs(load_dashboard()) for n in metric_names(e)}
    must = {"http_requests_total", "eventbus_dlq_size", "queue_jobs_total", "process_cpu_seconds_total"}
    assert must <= referenced
    unknown = sorted(n for n in referenced if not known(n, emitted))
    assert not unknown, f"dashboard uses metrics no plugin emits: {unknown}"


def test_alert_rules_shape_and_metrics() -> None:
    rules = rule_exprs()
    emitted = emitted_names()
    names = {r["alert"] for r in rules}
    assert {
        "KernelEventDeadLetterQueueNotEmpty",
        "KernelJobFailureRateHigh",
        "KernelCacheHitRateLow",
        "KernelHttp5xxRatioHigh",
        "KernelHttpLatencyP99High",
        "KernelTargetDown",
        "KernelOutboxRelayLagHigh",
        "KernelOutboxBacklogHigh",
    } <= names
    for rule in rules:
        assert rule.get("for"), f"{rule['alert']} has no 'for'"
        assert rule["labels"]["severity"] in {"critical", "warning", "info"}
        assert {"summary", "description", "runbook_url"} <= set(rule["annotations"])
        unknown = sorted(n for n in metric_names(rule["expr"]) if not known(n, emitted))
        assert not unknown, f"{rule['alert']} uses metrics no plugin emits: {unknown}"


def test_prometheus_config_loads_the_rules() -> None:
    yaml = pytest.importorskip("yaml")
    config = yaml.safe_load((OPS / "prometheus.yml").read_text(encoding="utf-8"))
    assert "alerts.yml" in config["rule_files"]
    job = config["scrape_configs"][0]
    assert job["metrics_path"] == "/health/metrics"
    assert job["scrape_interval"] == "15s"


@pytest.mark.skipif(shutil.which("promtool") is None, reason="promtool not on PATH")
def test_promtool_checks_rules_and_dashboard_queries(tmp_path: Path) -> None:
    result = subprocess.run(
        ["promtool", "check", "rules", str(OPS / "alerts.yml")], capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stdout + result.stderr
    # Dashboard queries, with Grafana's range variable filled in, must parse as rule expressions too.
    exprs = [e.replace("$__rate_interval", "5m") for e in dashboard_exprs(load_dashboard())]
    lines = ["groups:", "  - name: dashboard", "    rules:"]
    for i, expr in enumerate(exprs):
        lines += [f"      - record: dashboard:query{i}", f"        expr: {json.dumps(expr)}"]
    rules = tmp_path / "dashboard-rules.yml"
    rules.write_text("\n".join(lines) + "\n", encoding="utf-8")
    result = subprocess.run(
        ["promtool", "check", "rules", str(rules)], capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.anyio
@pytest.mark.parametrize("anyio_backend", ["asyncio"])  # redis-py, SAQ: asyncio-only libraries
async def test_referenced_metrics_appear_in_a_real_scrape() -> None:
    """Boot the plugins on embedded servers, exercise them; every referenced series is in the scrape."""
    for module in (
        "kernel_metrics",
        "kernel_redis",
        "kernel_eventbus",
        "kernel_cache",
        "kernel_queue",
        "kernel_repository",
        "kernel_outbox",
    ):
        pytest.importorskip(module)
    import anyio
    from kernel_cache import CacheManager
    from kernel_eventbus import EventBus
    from kernel_metrics import MetricsCollector
    from kernel_queue import QueueManager
    from kernel_repository import OutboxEvent, RepositoryManager

    from kernel.testing import boot_kernel

    config = {
        "redis": {"url": "embedded"},
        # small enough that the outbox entry below is rejected: the relay counts a publish error
        "eventbus": {"adapter": "redis", "max_payload_bytes": 1000},
        "cache": {"backend": "redis"},
        "queue": {"poll_interval": 0.05, "schedule_interval": 0.05},
        "repository": {"uri": "embedded"},  # declares db_query_duration_seconds (each plugin its own metrics)
        "outbox": {"poll_interval": 0.05, "status_interval": 0.1},
    }
    plugins = ("metrics", "redis", "eventbus", "cache", "queue", "repository", "outbox")
    async with boot_kernel(*plugins, config=config) as k:
        await k.get(RepositoryManager).outbox.add([OutboxEvent("ops.too.large", "x" * 2000)], session=None)
        bus, cache, queue = k.get(EventBus), k.get(CacheManager), k.get(QueueManager)
        handled = anyio.Event()

        async def on_signup(data: Any, meta: Any) -> None:
            handled.set()

        bus.subscribe("user.created", on_signup, group="ops-test")
        await bus.publish("user.created", {"id": 1})
        await cache.namespace("user").get_or_set("1", lambda: {"id": 1})
        await cache.namespace("user").get("1")
        done = anyio.Event()

        async def process(job: Any) -> str:
            done.set()
            return "sent"

        await queue.create_worker("notifications", process)
        await queue.add_job("notifications", "send", {"to": "ada"})
        with anyio.fail_after(10):
            await handled.wait()
            await done.wait()
            # The job's "completed" hook runs right after the processor returns; the relay rejects
            # the oversized outbox entry within its poll interval.
            for _ in range(500):
                scrape = k.get(MetricsCollector).render()[0]
                if b'event="completed"' in scrape and b"outbox_publish_errors_total{" in scrape:
                    break
                await anyio.sleep(0.02)
        body = k.get(MetricsCollector).render()[0].decode()

    scraped = set(re.findall(r"^# TYPE (\S+) ", body, flags=re.M))
    scraped |= set(re.findall(r"^([a-zA-Z_:][a-zA-Z0-9_:]*)[{ ]", body, flags=re.M))
    referenced = {n for e in dashboard_exprs(load_dashboard()) for n in metric_names(e)}
    if importlib.util.find_spec("yaml") is not None:  # without PyYAML only the dashboard is compared
        referenced |= {n for rule in rule_exprs() for n in metric_names(rule["expr"])}
    # A histogram family with no observation yet has no _bucket samples; its TYPE line proves it exists.
    histograms = set(re.findall(r"^# TYPE (\S+) histogram$", body, flags=re.M))

    def present(name: str) -> bool:
        return name in scraped or any(name == h + s for h in histograms for s in HISTOGRAM_SUFFIXES)

    missing = sorted(n for n in referenced if n not in SYNTHETIC and not present(n))
    assert not missing, f"referenced but absent from a real scrape: {missing}"
