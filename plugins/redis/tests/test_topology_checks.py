"""``kernel check``: settings that cannot work with the URL's topology, and ``check_redis_url`` for other
plugins' own ``url``."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest
from kernel_redis import check_redis_url
from redis_messages import kernel_check

from kernel import ConfigError, Secret
from kernel.testing import make_kernel

CLUSTER = "redis+cluster://:hunter2@10.0.0.1:7000,10.0.0.2:7000"
SENTINEL = "redis+sentinel://10.0.0.1:26379/mymaster"


@pytest.mark.parametrize("url", [CLUSTER, SENTINEL])
def test_an_embedded_table_with_a_cluster_or_sentinel_url_is_refused(url: str) -> None:
    with pytest.raises(ConfigError) as info:
        make_kernel("redis", config={"redis": {"url": url, "embedded": {"port": 7000}}})
    (error,) = info.value.errors
    assert error.startswith('plugins.redis.embedded: applies only to url = "embedded"')
    assert "hunter2" not in error


def test_a_cluster_database_other_than_0_is_refused_with_the_key_path() -> None:
    with pytest.raises(ConfigError) as info:
        make_kernel("redis", config={"redis": {"url": CLUSTER + "/2"}})
    (error,) = info.value.errors
    assert error.startswith("plugins.redis.url: must not select a database other than 0")
    assert "hunter2" not in error and "***" in error


def test_pool_timeout_on_a_cluster_is_a_warning(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING):
        make_kernel("redis", config={"redis": {"url": CLUSTER, "pool_timeout": 1.0}})
    assert "plugins.redis.pool_timeout: is not used on a cluster" in caplog.text


def test_defaults_with_a_cluster_url_are_fine() -> None:
    make_kernel("redis", config={"redis": {"url": CLUSTER}})
    make_kernel("redis", config={"redis": {"url": SENTINEL, "pool_timeout": 1.0}})


@pytest.mark.parametrize(
    ("url", "problem"),
    [
        ("redis+cluster://h:7000/1", "must not select a database other than 0"),
        ("redis+sentinel://h:26379", "must name the sentinel service"),
        ("http://h", "must be 'embedded' or a redis://"),
        ("embedded", "must be a Redis URL; 'embedded' is the redis plugin's own server only"),
    ],
)
def test_check_redis_url_for_another_plugins_url(url: str, problem: str) -> None:
    (issue,) = check_redis_url(Secret(url), key="url")
    assert issue.key == "url"
    assert issue.severity == "error"
    assert issue.message.startswith(problem)


def test_check_redis_url_accepts_every_form() -> None:
    for url in ("redis://h:6379/2", "unix:///s.sock", CLUSTER, SENTINEL + "/3", "rediss+cluster://h:1"):
        assert check_redis_url(url) == []
    assert check_redis_url(None) == []
    assert check_redis_url("embedded", embedded=True) == []


def test_kernel_check_names_the_key(tmp_path: Path) -> None:
    config = tmp_path / "kernel.toml"
    config.write_text(
        f'[kernel]\nplugins = ["redis"]\n\n[plugins.redis]\nurl = "{CLUSTER}"\n\n'
        "[plugins.redis.embedded]\nappendonly = true\n"
    )
    code, output = kernel_check(config)
    assert code == 2, output
    assert "plugins.redis.embedded: applies only to url" in output
    assert "hunter2" not in output
