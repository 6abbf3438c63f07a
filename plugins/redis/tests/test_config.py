"""URL validation, secrets, and the client settings derived from the config."""

from __future__ import annotations

import pytest
from kernel_redis import RedisConfig, RedisConnection, check_url, redact_url

import kernel
from kernel import ConfigError, Secret
from kernel.testing import make_kernel


@pytest.mark.parametrize(
    ("url", "problem"),
    [
        ("http://localhost:6379", "scheme 'http'"),
        ("localhost:6379", "no scheme (write redis:// before the host)"),
        ("//localhost", "no scheme"),
        ("redis://", "must name a host"),
        ("redis://localhost:99999", "out of range"),
        ("redis://localhost:6379/abc", "database number"),
        ("unix://", "socket path"),
    ],
)
def test_bad_urls_are_config_errors_naming_the_key(url: str, problem: str) -> None:
    with pytest.raises(ConfigError) as info:
        make_kernel("redis", config={"redis": {"url": url}})
    (error,) = info.value.errors
    assert error.startswith("plugins.redis.url: must ")
    assert problem in error


def test_error_messages_never_show_the_password() -> None:
    with pytest.raises(ConfigError) as info:
        make_kernel("redis", config={"redis": {"url": "http://:hunter2@localhost:6379"}})
    assert "hunter2" not in str(info.value)
    assert "***" in str(info.value)


@pytest.mark.parametrize(
    "url",
    [
        "embedded",
        "redis://localhost",
        "redis://:pw@10.0.0.1:6380/2",
        "rediss://user:pw@redis.example.com:6380/0",
        "unix:///run/redis.sock",
        "unix://:pw@/run/redis.sock?db=3",
    ],
)
def test_good_urls(url: str) -> None:
    check_url(url)
    kernel = make_kernel("redis", config={"redis": {"url": url}})
    assert kernel.plugin("redis").ctx.config.url == Secret(url)


def test_url_is_a_secret_and_masked_in_effective_config() -> None:
    kernel = make_kernel("redis", config={"redis": {"url": "redis://:hunter2@localhost:6379/0"}})
    cfg = kernel.plugin("redis").ctx.config
    assert isinstance(cfg.url, Secret)
    assert "hunter2" not in repr(cfg)
    assert "hunter2" not in str(kernel.effective_config())


def test_url_from_environment_override() -> None:
    kernel = make_kernel(
        "redis",
        environ={
            "KERNEL__PLUGINS__REDIS__URL": "redis://cache.internal:6380/1",
            "KERNEL__PLUGINS__REDIS__EMBEDDED__UNIX_SOCKET": "true",
        },
    )
    cfg = kernel.plugin("redis").ctx.config
    assert cfg.url.get_secret_value() == "redis://cache.internal:6380/1"
    assert cfg.embedded.unix_socket is True


def test_unknown_and_mistyped_keys_are_rejected() -> None:
    with pytest.raises(ConfigError) as info:
        make_kernel(
            "redis",
            config={"redis": {"max_conections": 5, "socket_timeout": "fast", "embedded": {"port": -1}}},
        )
    text = "\n".join(info.value.errors)
    assert "plugins.redis.max_conections: unknown key" in text
    assert "plugins.redis.socket_timeout" in text
    assert "plugins.redis.embedded.port" in text


def test_redact_url_is_the_kernels() -> None:
    """The plugin re-exports the kernel's one redaction rule (its cases: tests/test_redaction.py)."""
    assert redact_url is kernel.redact_url


@pytest.mark.anyio
async def test_client_settings_follow_the_config() -> None:
    cfg = RedisConfig(
        url=Secret("rediss://:pw@example.com:6380/3"),
        max_connections=7,
        socket_timeout=1.5,
        ssl_cert_reqs="none",
        client_name="api",
    )
    conn = RedisConnection(cfg.url, cfg)
    try:
        kwargs = conn.client_kwargs()
        assert kwargs["decode_responses"] is False
        assert kwargs["max_connections"] == 7
        assert kwargs["socket_timeout"] == 1.5
        assert kwargs["ssl_cert_reqs"] == "none"
        pool_kwargs = conn.client.connection_pool.connection_kwargs
        assert pool_kwargs["host"] == "example.com"
        assert pool_kwargs["port"] == 6380
        assert pool_kwargs["db"] == 3
        assert pool_kwargs["password"] == "pw"
        assert pool_kwargs["client_name"] == "api"
        assert conn.client.connection_pool.connection_class.__name__ == "SSLConnection"
        extra = conn.new_client(socket_timeout=None)
        assert extra.connection_pool.connection_kwargs["socket_timeout"] is None
        assert "pw" not in repr(conn)
    finally:
        await conn.aclose()
