"""Cluster and Sentinel URL forms: parsing, validation errors (never a password), hash tags and slots."""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from kernel_redis import (
    MultiHostUrl,
    RedisConfig,
    RedisConnection,
    check_url,
    hash_tag,
    key_slot,
    parse_multi_host,
    redact_url,
    topology_of,
)
from redis.asyncio.cluster import RedisCluster
from redis_messages import messages

from kernel import ConfigError, Secret
from kernel.testing import assert_no_password, make_kernel, urls_with_passwords

PROPERTY = settings(
    max_examples=200, deadline=None, database=None, suppress_health_check=[HealthCheck.too_slow]
)


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        (
            "redis+cluster://10.0.0.1:7000,10.0.0.2:7001",
            MultiHostUrl("cluster", False, (("10.0.0.1", 7000), ("10.0.0.2", 7001))),
        ),
        (
            "rediss+cluster://alice:p%40ss@node-a,[::1]:7001/0",
            MultiHostUrl("cluster", True, (("node-a", 6379), ("::1", 7001)), "alice", "p@ss"),
        ),
        (
            "redis+sentinel://:pw@s1,s2:26380/mymaster/2?sentinel_password=spw",
            MultiHostUrl(
                "sentinel",
                False,
                (("s1", 26379), ("s2", 26380)),
                None,
                "pw",
                "mymaster",
                2,
                sentinel_password="spw",
            ),
        ),
        (
            "rediss+sentinel://s1:26379/cache.primary",
            MultiHostUrl("sentinel", True, (("s1", 26379),), service="cache.primary"),
        ),
    ],
)
def test_multi_host_urls_parse(url: str, expected: MultiHostUrl) -> None:
    parsed = parse_multi_host(url)
    assert parsed == expected
    assert topology_of(url) == expected.topology
    check_url(url)
    if expected.password:
        assert expected.password not in repr(parsed)


def test_the_scheme_names_the_topology() -> None:
    assert topology_of("redis://h:6379/0") == "standalone"
    assert topology_of(Secret("unix:///s.sock")) == "standalone"
    assert topology_of("embedded") == "standalone"
    assert topology_of("rediss+cluster://h:1") == "cluster"
    assert topology_of("redis+sentinel://h/m") == "sentinel"


@pytest.mark.parametrize(
    ("url", "problem"),
    [
        ("redis+cluster://h:7000/3", "not select a database other than 0"),
        ("redis+cluster://", "name at least one host"),
        ("redis+cluster://h:7000,,h2:7001", "no empty or malformed host"),
        ("redis+cluster://h:70000", "ports in 1..65535"),
        ("redis+cluster://h:7000?sentinel_password=x", "a cluster URL takes: none"),
        ("redis+sentinel://h:26379", "name the sentinel service"),
        ("redis+sentinel://h:26379/", "name the sentinel service"),
        ("redis+sentinel://h:26379/m/x", "database number after the service"),
        ("redis+sentinel://h:26379/m/0/extra", "/<service>[/db]"),
        ("redis+sentinel://h/m?db=1", "sentinel_password, sentinel_username"),
        ("redis+cluster://:pa/ss@h:7000", "percent-encode"),
        ("redis+cluster://a:1,:pw@b:2", "give the credentials once"),
    ],
)
def test_bad_multi_host_urls_are_config_errors_naming_the_key(url: str, problem: str) -> None:
    with pytest.raises(ValueError, match="'url' must") as info:
        check_url(url)
    assert problem in str(info.value)
    with pytest.raises(ConfigError) as config_info:
        make_kernel("redis", config={"redis": {"url": url}})
    (error,) = config_info.value.errors
    assert error.startswith("plugins.redis.url: must ")
    assert problem in error


def test_an_unknown_scheme_lists_every_form() -> None:
    with pytest.raises(ValueError, match="'url' must be 'embedded' or") as info:
        check_url("redis+shard://h:1")
    assert "redis+cluster://" in str(info.value) and "rediss+sentinel://" in str(info.value)
    assert "scheme 'redis+shard'" in str(info.value)


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        ("redis+cluster://u:hunter2@h1:7000,h2:7001", "redis+cluster://u:***@h1:7000,h2:7001"),
        ("rediss+cluster://:hunter2@h1:7000,[::1]:7001", "rediss+cluster://:***@h1:7000,[::1]:7001"),
        (
            "redis+sentinel://:hunter2@s1:26379,s2/mymaster/0?sentinel_password=hunter2",
            "redis+sentinel://:***@s1:26379,s2/mymaster/0?sentinel_password=***",
        ),
        ("redis+cluster://h1:7000,u:hunter2@h2:7001", "redis+cluster://h1:***@h2:7001"),
        ("redis+cluster://h1:hunter2,h2:7001", "redis+cluster://***"),
    ],
)
def test_redact_url_masks_passwords_in_multi_host_forms(url: str, shown: str) -> None:
    assert redact_url(url) == shown


_SCHEMES = ("redis+cluster", "rediss+cluster", "redis+sentinel", "rediss+sentinel")


@PROPERTY
@given(urls_with_passwords(_SCHEMES))
def test_no_message_ever_shows_the_password_of_a_multi_host_url(case: tuple[str, str]) -> None:
    url, password = case
    for text in messages(url):
        assert_no_password(text, password)


@PROPERTY
@given(
    st.sampled_from(["redis+sentinel", "rediss+sentinel"]),
    st.text("abcdefghijKLMNOP/#@?&=%", min_size=6, max_size=12),
)
def test_no_message_ever_shows_a_sentinel_password(scheme: str, password: str) -> None:
    for url in (
        f"{scheme}://h1:26379,h2/mymaster?sentinel_password={password}",
        f"{scheme}://:{password}@h1:26379,h2/mymaster/x?sentinel_password={password}",
    ):
        for text in messages(url):
            assert_no_password(text, password)


def test_hash_tag() -> None:
    assert hash_tag("orders") == "{orders}"
    for bad in ("", "a{b", "a}b"):
        with pytest.raises(ValueError, match="hash tag"):
            hash_tag(bad)


def test_key_slot_honours_hash_tags() -> None:
    assert key_slot("foo") == 12182  # CLUSTER KEYSLOT foo
    assert key_slot(b"{user1000}.following") == key_slot("{user1000}.followers") == key_slot("user1000")
    assert key_slot("{}x") != key_slot("{}y")  # an empty tag hashes the whole key
    assert 0 <= key_slot("anything") < 16384


@pytest.mark.anyio
async def test_cluster_client_settings_follow_the_config() -> None:
    url = "rediss+cluster://alice:pw@10.9.9.1:7000,10.9.9.2:7001"
    cfg = RedisConfig(url=Secret(url), max_connections=7, socket_timeout=1.5, client_name="api")
    conn = RedisConnection(cfg.url, cfg)  # nothing connects before the first command
    try:
        assert conn.topology == "cluster"
        client = conn.client
        assert isinstance(client, RedisCluster)
        assert [(n.host, n.port) for n in client.startup_nodes] == [("10.9.9.1", 7000), ("10.9.9.2", 7001)]
        kwargs = client.get_connection_kwargs()
        assert kwargs["username"] == "alice" and kwargs["password"] == "pw"
        assert kwargs["max_connections"] == 7
        assert kwargs["socket_timeout"] == 1.5
        assert kwargs["client_name"] == "api"
        assert kwargs["ssl_cert_reqs"] == "required"
        assert kwargs["connection_class"].__name__ == "SSLConnection"
        extra = conn.new_client(socket_timeout=None)
        assert isinstance(extra, RedisCluster)
        assert extra.get_connection_kwargs()["socket_timeout"] is None
        assert "pw" not in repr(conn)
    finally:
        await conn.aclose()


@pytest.mark.anyio
async def test_sentinel_client_settings_follow_the_config() -> None:
    url = "rediss+sentinel://:pw@10.9.9.1:26379,10.9.9.2/mymaster/3?sentinel_password=spw"
    cfg = RedisConfig(url=Secret(url), max_connections=7, pool_timeout=2.0, client_name="api")
    conn = RedisConnection(cfg.url, cfg)
    try:
        assert conn.topology == "sentinel"
        pool = conn.client.connection_pool
        assert type(pool).__name__ == "BlockingSentinelConnectionPool"
        assert pool.service_name == "mymaster"  # type: ignore[attr-defined]
        assert pool.timeout == 2.0  # type: ignore[attr-defined]
        assert pool.max_connections == 7
        assert pool.connection_class.__name__ == "SentinelManagedSSLConnection"
        kwargs = pool.connection_kwargs
        assert (kwargs["db"], kwargs["password"], kwargs["client_name"]) == (3, "pw", "api")
        sentinels = pool.sentinel_manager.sentinels  # type: ignore[attr-defined]
        addresses = [
            (s.connection_pool.connection_kwargs["host"], s.connection_pool.connection_kwargs["port"])
            for s in sentinels
        ]
        assert addresses == [("10.9.9.1", 26379), ("10.9.9.2", 26379)]
        assert sentinels[0].connection_pool.connection_kwargs["password"] == "spw"
        assert sentinels[0].connection_pool.connection_class.__name__ == "SSLConnection"
        unblocked = conn.new_client(pool_timeout=0)
        assert type(unblocked.connection_pool).__name__ == "SentinelConnectionPool"
    finally:
        await conn.aclose()
