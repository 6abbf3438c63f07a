"""[plugins.otel] and the OTEL_* variables: precedence, bad values, and what stays unloaded when off."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Sequence

import pytest
from kernel_otel import OtelConfig, OtelSettingError, Tracing, resolve
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export import SpanExportResult

from kernel import ConfigError, Secret
from kernel.testing import boot_kernel, make_kernel


def test_defaults_without_table_keys_or_variables() -> None:
    settings = resolve(OtelConfig(), {})
    assert settings.service_name == "milo-kernel"
    assert settings.exporter == "otlp"
    assert settings.endpoint == "http://localhost:4318/v1/traces"
    assert settings.sampler == "parentbased_always_on"
    assert (settings.ratio, settings.timeout, settings.headers, settings.disabled) == (1.0, 10.0, {}, False)


def test_variables_fill_keys_the_table_leaves_unset() -> None:
    env = {
        "OTEL_SERVICE_NAME": "billing",
        "OTEL_TRACES_EXPORTER": "console",
        "OTEL_EXPORTER_OTLP_ENDPOINT": "http://collector:4318/",
        "OTEL_EXPORTER_OTLP_HEADERS": "api-key=s%3Dcret, X-Team = core",
        "OTEL_EXPORTER_OTLP_TIMEOUT": "2500",
        "OTEL_TRACES_SAMPLER": "parentbased_traceidratio",
        "OTEL_TRACES_SAMPLER_ARG": "0.25",
    }
    settings = resolve(OtelConfig(), env)
    assert settings.service_name == "billing"
    assert settings.exporter == "console"
    assert settings.endpoint == "http://collector:4318/v1/traces"
    assert settings.headers == {"api-key": "s=cret", "x-team": "core"}
    assert settings.timeout == 2.5
    assert (settings.sampler, settings.ratio) == ("parentbased_traceidratio", 0.25)


def test_service_name_from_resource_attributes_when_no_other_names_it() -> None:
    env = {"OTEL_RESOURCE_ATTRIBUTES": "deployment.environment=prod,service.name=billing%20api"}
    assert resolve(OtelConfig(), env).service_name == "billing api"
    assert resolve(OtelConfig(), {**env, "OTEL_SERVICE_NAME": "web"}).service_name == "web"


def test_table_keys_win_over_variables() -> None:
    config = OtelConfig(
        service_name="web",
        exporter="none",
        endpoint="https://otlp.example.com",
        headers={"Authorization": Secret("Bearer t")},
        sampler="traceidratio",
        ratio=0.5,
        timeout=1.0,
    )
    env = {
        "OTEL_SERVICE_NAME": "other",
        "OTEL_TRACES_EXPORTER": "otlp",
        "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": "http://x:1/v1/traces",
        "OTEL_EXPORTER_OTLP_HEADERS": "a=b",
        "OTEL_TRACES_SAMPLER": "always_off",
        "OTEL_TRACES_SAMPLER_ARG": "0.1",
    }
    settings = resolve(config, env)
    assert settings.service_name == "web" and settings.exporter == "none"
    assert settings.endpoint == "https://otlp.example.com/v1/traces"
    assert settings.headers == {"authorization": "Bearer t"}
    assert (settings.sampler, settings.ratio, settings.timeout) == ("traceidratio", 0.5, 1.0)


def test_traces_endpoint_variable_is_used_as_is_and_a_path_in_the_key_too() -> None:
    env = {
        "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": "http://c:4318/custom",
        "OTEL_EXPORTER_OTLP_ENDPOINT": "http://d",
    }
    assert resolve(OtelConfig(), env).endpoint == "http://c:4318/custom"
    assert resolve(OtelConfig(endpoint="http://c:4318/custom"), {}).endpoint == "http://c:4318/custom"


@pytest.mark.parametrize(
    ("variable", "value", "named"),
    [
        ("OTEL_TRACES_EXPORTER", "zipkin", "OTEL_TRACES_EXPORTER='zipkin'"),
        ("OTEL_EXPORTER_OTLP_PROTOCOL", "grpc", "OTEL_EXPORTER_OTLP_PROTOCOL='grpc'"),
        ("OTEL_TRACES_SAMPLER", "sometimes", "OTEL_TRACES_SAMPLER='sometimes'"),
        ("OTEL_TRACES_SAMPLER_ARG", "2", "OTEL_TRACES_SAMPLER_ARG='2'"),
        ("OTEL_EXPORTER_OTLP_TIMEOUT", "soon", "OTEL_EXPORTER_OTLP_TIMEOUT='soon'"),
        ("OTEL_EXPORTER_OTLP_HEADERS", "novalue", "'novalue' is not key=value"),
    ],
)
def test_bad_variable_is_a_typed_error_naming_it(variable: str, value: str, named: str) -> None:
    with pytest.raises(OtelSettingError, match=named):
        resolve(OtelConfig(), {variable: value})


def test_bad_variable_fails_the_config_check(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OTEL_TRACES_SAMPLER", "sometimes")
    with pytest.raises(ConfigError, match=r"plugins\.otel.*OTEL_TRACES_SAMPLER='sometimes'"):
        make_kernel("otel")  # the plugins' kernel_check runs when the kernel is configured


@pytest.mark.parametrize(
    ("table", "message"),
    [
        ({"exporter": "jaeger"}, "plugins.otel.exporter"),
        ({"protocol": "grpc"}, "plugins.otel.protocol"),
        ({"ratio": 1.5}, "plugins.otel.ratio"),
        ({"endpoint": "collector:4318"}, "plugins.otel.endpoint"),
    ],
)
def test_bad_table_key_is_a_config_error_naming_the_key(table: dict[str, object], message: str) -> None:
    with pytest.raises(ConfigError, match=message.replace(".", r"\.")):
        make_kernel("otel", config={"otel": table})


def test_headers_are_secrets_in_the_validated_config() -> None:
    kernel = make_kernel("otel", config={"otel": {"headers": {"api-key": "hunter2"}}})
    config = kernel.plugin("otel").ctx.config
    assert isinstance(config.headers["api-key"], Secret)
    assert "hunter2" not in repr(config) and "hunter2" not in str(kernel.effective_config())
    assert resolve(config, {}).headers == {"api-key": "hunter2"}


@pytest.mark.anyio
async def test_sdk_disabled_variable_boots_without_tracing(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OTEL_SDK_DISABLED", "true")
    async with boot_kernel("otel") as kernel:
        assert kernel.registry.find(Tracing) is None
        assert kernel.middleware() == []


@pytest.mark.anyio
async def test_teardown_flushes_the_batch_processor() -> None:
    """Spans still queued in the BatchSpanProcessor are exported at shutdown (console exporter here)."""
    async with boot_kernel("otel", config={"otel": {"exporter": "console"}}) as kernel:
        tracing = kernel.registry.get(Tracing)
        exported: list[str] = []

        def export(spans: Sequence[ReadableSpan]) -> SpanExportResult:
            exported.extend(s.name for s in spans)
            return SpanExportResult.SUCCESS

        assert tracing.exporter is not None
        tracing.exporter.export = export  # type: ignore[method-assign]
        tracing.tracer.start_span("left-in-the-queue").end()
    assert exported == ["left-in-the-queue"]


_PROBE = """
import json, sys, asyncio
from kernel.testing import boot_kernel
from kernel.web import KernelApp

async def main():
    async with boot_kernel(*sys.argv[1:]) as kernel:
        app = KernelApp(kernel)
        app.routes  # builds the middleware stack
    print(json.dumps(sorted(m for m in sys.modules if m.split(".")[0] == "opentelemetry")))

asyncio.run(main())
"""


def _otel_modules(*plugins: str) -> list[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("OTEL_")}
    out = subprocess.run(
        [sys.executable, "-c", _PROBE, *plugins], capture_output=True, text=True, check=True, env=env
    )
    return list(json.loads(out.stdout.strip().splitlines()[-1]))


def test_nothing_imports_opentelemetry_when_the_plugin_is_not_enabled() -> None:
    # installed (entry points discovered) but not enabled: the SDK and API stay unloaded
    assert _otel_modules("errors", "eventbus", "metrics") == []
    assert "opentelemetry.sdk.trace" in _otel_modules("otel", "errors")  # the probe does see them


def test_memory_exporter_is_refused_in_production() -> None:
    with pytest.raises(ConfigError, match=r'plugins\.otel\.exporter: exporter = "memory"'):
        make_kernel("otel", config={"otel": {"exporter": "memory"}}, settings={"env": "production"})
    make_kernel("otel", config={"otel": {"exporter": "memory"}})  # fine in tests
