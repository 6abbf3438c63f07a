"""The ``[plugins.otel]`` table and how it combines with the standard ``OTEL_*`` variables.

Nothing here imports ``opentelemetry``: the plugin class and its config load for every
``kernel`` command, the SDK only when the plugin is enabled and the kernel boots.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Literal, get_args
from urllib.parse import unquote, urlsplit

import attrs

from kernel import Secret

Exporter = Literal["otlp", "console", "none", "memory"]
Protocol = Literal["http/protobuf"]
SamplerName = Literal[
    "always_on",
    "always_off",
    "traceidratio",
    "parentbased_always_on",
    "parentbased_always_off",
    "parentbased_traceidratio",
]

DEFAULT_ENDPOINT = "http://localhost:4318"
TRACES_PATH = "/v1/traces"


class OtelSettingError(ValueError):
    """An ``OTEL_*`` variable (or the key it stands for) has a value the plugin cannot use."""


def _ratio(_inst: object, attribute: attrs.Attribute[float | None], value: float | None) -> None:
    if value is not None and not 0.0 <= value <= 1.0:
        raise ValueError(f"'{attribute.name}' must be between 0 and 1, got {value!r}")


def _endpoint(_inst: object, attribute: attrs.Attribute[str | None], value: str | None) -> None:
    if value is not None and not value.startswith(("http://", "https://")):
        raise ValueError(f"'{attribute.name}' must be an http:// or https:// URL, got {value!r}")


@attrs.define(frozen=True)
class OtelConfig:
    """The ``[plugins.otel]`` table. A key left unset falls back to its ``OTEL_*`` variable."""

    service_name: str | None = None
    """``service.name`` of every span (``OTEL_SERVICE_NAME``, else ``service.name`` in
    ``OTEL_RESOURCE_ATTRIBUTES``; default ``milo-kernel``)."""
    exporter: Exporter | None = None
    """``otlp`` (default), ``console`` (stdout), ``none`` or ``memory`` (tests); ``OTEL_TRACES_EXPORTER``."""
    endpoint: str | None = attrs.field(default=None, validator=_endpoint)
    """OTLP/HTTP collector URL; ``/v1/traces`` is appended unless the URL has a path of its own
    (``OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`` as is, else ``OTEL_EXPORTER_OTLP_ENDPOINT`` + ``/v1/traces``;
    default ``http://localhost:4318/v1/traces``)."""
    protocol: Protocol | None = None
    """Only ``http/protobuf`` (``OTEL_EXPORTER_OTLP_TRACES_PROTOCOL``, ``OTEL_EXPORTER_OTLP_PROTOCOL``)."""
    headers: dict[str, Secret] = attrs.field(factory=dict)
    """Headers sent with every export, e.g. an API key (``OTEL_EXPORTER_OTLP_TRACES_HEADERS``,
    ``OTEL_EXPORTER_OTLP_HEADERS``: ``key=value,key2=value2``, URL-encoded)."""
    timeout: float | None = None
    """Seconds one export may take (``OTEL_EXPORTER_OTLP_TIMEOUT`` in milliseconds; default 10)."""
    sampler: SamplerName | None = None
    """Head sampler (``OTEL_TRACES_SAMPLER``; default ``parentbased_always_on``)."""
    ratio: float | None = attrs.field(default=None, validator=_ratio)
    """Fraction sampled by the ``*traceidratio`` samplers (``OTEL_TRACES_SAMPLER_ARG``; default 1.0)."""
    set_global: bool = False
    """Also make this the process-wide ``opentelemetry.trace`` provider (once per process), so that
    third-party instrumentations export through it. Off: the plugin keeps a provider of its own."""
    cache_spans: bool = False
    """A CLIENT span per cache backend call (inside a traced request, handler or job). Off by
    default: a span costs more than a cache hit (see the docs' cost section)."""
    redis_spans: bool = False
    """A CLIENT span per Redis command or pipeline of the redis plugin's clients (inside a traced
    request, handler or job). Off by default: a span costs more than the command's client side."""
    middleware_order: int = 15
    """Position among kernel middleware: between metrics (10) and errors (20), so that the errors
    plugin's problem+json and log lines carry the span's trace id."""


@attrs.frozen
class Settings:
    """The effective settings: the table's keys, else the ``OTEL_*`` variables, else defaults."""

    service_name: str
    exporter: Exporter
    endpoint: str
    headers: dict[str, str]
    timeout: float
    sampler: SamplerName
    ratio: float
    disabled: bool


def _choice(value: str, allowed: tuple[str, ...], variable: str) -> str:
    lowered = value.strip().lower()
    if lowered not in allowed:
        raise OtelSettingError(f"{variable}={value!r}: expected one of {', '.join(allowed)}")
    return lowered


def parse_headers(text: str, variable: str) -> dict[str, str]:
    """``key=value,key2=value2`` (URL-encoded, W3C baggage-like) as the OTLP header variables write them."""
    headers: dict[str, str] = {}
    for item in text.split(","):
        if not item.strip():
            continue
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise OtelSettingError(f"{variable}: {item.strip()!r} is not key=value")
        headers[unquote(key.strip()).lower()] = unquote(value.strip())
    return headers


def traces_url(base: str) -> str:
    """``base`` with ``/v1/traces`` appended when it has no path of its own."""
    path = urlsplit(base).path
    return base if path not in ("", "/") else base.rstrip("/") + TRACES_PATH


def _endpoint_setting(config: OtelConfig, env: Mapping[str, str]) -> str:
    if config.endpoint is not None:
        return traces_url(config.endpoint)
    if env.get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"):
        return env["OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"]
    return env.get("OTEL_EXPORTER_OTLP_ENDPOINT", DEFAULT_ENDPOINT).rstrip("/") + TRACES_PATH


def _protocol_check(config: OtelConfig, env: Mapping[str, str]) -> None:
    if config.protocol is not None:
        return
    for variable in ("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL", "OTEL_EXPORTER_OTLP_PROTOCOL"):
        if env.get(variable):
            _choice(env[variable], get_args(Protocol), variable)
            return


def _timeout_setting(config: OtelConfig, env: Mapping[str, str]) -> float:
    if config.timeout is not None:
        return config.timeout
    for variable in ("OTEL_EXPORTER_OTLP_TRACES_TIMEOUT", "OTEL_EXPORTER_OTLP_TIMEOUT"):
        if env.get(variable):
            try:
                return float(env[variable]) / 1000.0
            except ValueError:
                raise OtelSettingError(f"{variable}={env[variable]!r}: expected milliseconds") from None
    return 10.0


def _ratio_setting(config: OtelConfig, env: Mapping[str, str]) -> float:
    if config.ratio is not None:
        return config.ratio
    text = env.get("OTEL_TRACES_SAMPLER_ARG")
    if not text:
        return 1.0
    try:
        ratio = float(text)
    except ValueError:
        ratio = -1.0
    if not 0.0 <= ratio <= 1.0:
        raise OtelSettingError(f"OTEL_TRACES_SAMPLER_ARG={text!r}: expected a number between 0 and 1")
    return ratio


def _headers_setting(config: OtelConfig, env: Mapping[str, str]) -> dict[str, str]:
    if config.headers:
        return {k.lower(): v.get_secret_value() for k, v in config.headers.items()}
    for variable in ("OTEL_EXPORTER_OTLP_TRACES_HEADERS", "OTEL_EXPORTER_OTLP_HEADERS"):
        if env.get(variable):
            return parse_headers(env[variable], variable)
    return {}


def _resource_service_name(env: Mapping[str, str]) -> str | None:
    """``service.name`` in ``OTEL_RESOURCE_ATTRIBUTES`` (``key=value,...``), if there."""
    for item in env.get("OTEL_RESOURCE_ATTRIBUTES", "").split(","):
        key, _, value = item.partition("=")
        if key.strip() == "service.name" and value.strip():
            return unquote(value.strip())
    return None


def resolve(config: OtelConfig, env: Mapping[str, str]) -> Settings:
    """The effective settings of ``config`` with ``env`` (the process environment) filling unset keys.

    Raises :class:`OtelSettingError` naming the variable with a bad value.
    """
    _protocol_check(config, env)
    exporter = config.exporter
    if exporter is None and env.get("OTEL_TRACES_EXPORTER"):
        # the variable may list several; the first one is used
        first = env["OTEL_TRACES_EXPORTER"].split(",")[0]
        exporter = _choice(first, ("otlp", "console", "none"), "OTEL_TRACES_EXPORTER")  # type: ignore[assignment]
    sampler = config.sampler
    if sampler is None and env.get("OTEL_TRACES_SAMPLER"):
        sampler = _choice(env["OTEL_TRACES_SAMPLER"], get_args(SamplerName), "OTEL_TRACES_SAMPLER")  # type: ignore[assignment]
    return Settings(
        service_name=config.service_name
        or env.get("OTEL_SERVICE_NAME")
        or _resource_service_name(env)
        or "milo-kernel",
        exporter=exporter or "otlp",
        endpoint=_endpoint_setting(config, env),
        headers=_headers_setting(config, env),
        timeout=_timeout_setting(config, env),
        sampler=sampler or "parentbased_always_on",
        ratio=_ratio_setting(config, env),
        disabled=env.get("OTEL_SDK_DISABLED", "").strip().lower() == "true",
    )
