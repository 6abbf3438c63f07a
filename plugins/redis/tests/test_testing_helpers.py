"""The test helpers' own guarantees: against ``$REDIS_URL`` a key left behind fails the session (any
topology), and ``redis_url`` runs a test once per topology named in ``$KERNEL_REDIS_TOPOLOGIES``."""

from __future__ import annotations

import os
import subprocess
import sys
import uuid
from pathlib import Path

import pytest
import redis
import redis.cluster
from kernel_redis.testing import (
    TOPOLOGIES_ENV,
    PrivateRedisCluster,
    RedisServer,
    leftover_test_keys,
    redis_cluster,  # noqa: F401 - a fixture
    redis_topologies,
)

from kernel.testing import wait_gone

CONFTEST = "from kernel_redis.testing import redis_keys_left_behind  # noqa: F401\n"
TOPOLOGY_CONFTEST = (
    "from kernel_redis.testing import redis_keys_left_behind, redis_topology, redis_url  # noqa: F401\n"
)


def run_session(
    tmp_path: Path,
    test_body: str,
    url: str | None,
    *,
    conftest: str = CONFTEST,
    topologies: str | None = None,
    args: tuple[str, ...] = ("-q",),
) -> subprocess.CompletedProcess[str]:
    (tmp_path / "conftest.py").write_text(conftest)
    (tmp_path / "test_leaves.py").write_text(test_body)
    env = {k: v for k, v in os.environ.items() if k not in ("PYTEST_ADDOPTS", "REDIS_URL", TOPOLOGIES_ENV)}
    if url is not None:
        env["REDIS_URL"] = url
    if topologies is not None:
        env[TOPOLOGIES_ENV] = topologies
    return subprocess.run(
        [sys.executable, "-m", "pytest", *args, "-p", "no:cacheprovider", str(tmp_path)],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_a_key_left_on_the_external_server_fails_it(redis_server: RedisServer, tmp_path: Path) -> None:
    key = f"kqtest-left-{uuid.uuid4().hex}"
    member = f"kqtest-member-{uuid.uuid4().hex}"
    body = (
        "import redis, os\n"
        "def test_leaves_a_key():\n"
        "    client = redis.Redis.from_url(os.environ['REDIS_URL'])\n"
        f"    client.set({key!r}, 1)\n"
        f"    client.sadd('kernel_queue:queues', {member!r})\n"
        "    client.close()\n"
    )
    client = redis.Redis.from_url(redis_server.url)
    try:
        result = run_session(tmp_path, body, redis_server.url)
        assert result.returncode != 0, result.stdout
        assert "left on $REDIS_URL" in result.stdout, result.stdout
        assert key in result.stdout and f"kernel_queue:queues member {member}" in result.stdout, result.stdout
    finally:
        client.delete(key)
        client.srem("kernel_queue:queues", member)
        client.close()
    assert not {k for k in leftover_test_keys(redis_server.url) if key in k or member in k}


def test_a_session_that_cleans_up_passes_and_old_keys_are_not_its_own(
    redis_server: RedisServer, tmp_path: Path
) -> None:
    older = f"kqtest-older-{uuid.uuid4().hex}"  # there before the session: an interrupted earlier run's
    key = f"kqtest-clean-{uuid.uuid4().hex}"
    body = (
        "import redis, os\n"
        "def test_cleans_up():\n"
        "    client = redis.Redis.from_url(os.environ['REDIS_URL'])\n"
        f"    client.set({key!r}, 1)\n"
        f"    client.delete({key!r})\n"
        "    client.close()\n"
    )
    client = redis.Redis.from_url(redis_server.url)
    try:
        client.set(older, 1)
        result = run_session(tmp_path, body, redis_server.url)
        assert result.returncode == 0, result.stdout + result.stderr
        assert "1 passed" in result.stdout
    finally:
        client.delete(older, key)
        client.close()


def test_a_key_left_on_an_external_cluster_fails_it(
    redis_cluster: PrivateRedisCluster,  # noqa: F811
    tmp_path: Path,
) -> None:
    keys = [f"kctest-left-{n}-{uuid.uuid4().hex[:8]}" for n in range(6)]  # spread over the primaries
    body = (
        "import redis.cluster\n"
        "def test_leaves_keys():\n"
        f"    client = redis.cluster.RedisCluster(host='127.0.0.1', port={redis_cluster.ports[0]})\n"
        f"    for key in {keys!r}:\n"
        "        client.set(key, 1)\n"
        "    client.close()\n"
    )
    client = redis.cluster.RedisCluster(host="127.0.0.1", port=redis_cluster.ports[0])
    try:
        result = run_session(tmp_path, body, redis_cluster.url)
        assert result.returncode != 0, result.stdout
        assert "6 Redis key(s) under the test prefixes were left" in result.stdout, result.stdout
        assert all(key in result.stdout for key in keys), result.stdout
    finally:
        for key in keys:
            client.delete(key)
        client.close()


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("", ("standalone",)),
        ("cluster", ("cluster",)),
        (" standalone , Cluster,sentinel,cluster,", ("standalone", "cluster", "sentinel")),
    ],
)
def test_the_topologies_variable_is_a_comma_list(value: str, expected: tuple[str, ...]) -> None:
    assert redis_topologies(value) == expected


def test_an_unknown_topology_is_named_with_the_variable(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match=r"\$KERNEL_REDIS_TOPOLOGIES: unknown Redis topology 'clustr'"):
        redis_topologies("standalone,clustr")
    result = run_session(tmp_path, "def test_x():\n    pass\n", None, topologies="clustr")
    assert result.returncode != 0
    assert "unknown Redis topology 'clustr'" in result.stdout + result.stderr, result.stdout + result.stderr


TOPOLOGY_TESTS = """\
import pathlib
from kernel_redis.testing import leftover_test_keys, shared_topology

LOG = pathlib.Path(__file__).with_name("urls.log")
PIDS = pathlib.Path(__file__).with_name("pids.log")


def test_first(redis_url, redis_topology, request):
    with LOG.open("a") as log:
        log.write(f"{redis_topology} {redis_url}\\n")
    assert leftover_test_keys(redis_url) == set()  # every topology answers
    started = shared_topology(redis_topology, request.config)
    pids = [started.pid] if redis_topology == "standalone" else started.pids
    with PIDS.open("a") as log:
        log.write(" ".join(map(str, pids)) + " ")


def test_second(redis_url, redis_topology):
    with LOG.open("a") as log:
        log.write(f"{redis_topology} {redis_url}\\n")
"""


def test_redis_url_runs_each_test_once_per_topology_started_once(tmp_path: Path) -> None:
    result = run_session(
        tmp_path,
        TOPOLOGY_TESTS,
        None,
        conftest=TOPOLOGY_CONFTEST,
        topologies="standalone,cluster,sentinel",
        args=("-v",),
    )
    assert result.returncode == 0, result.stdout + result.stderr
    for topology in ("standalone", "cluster", "sentinel"):
        for test in ("test_first", "test_second"):
            assert f"test_leaves.py::{test}[{topology}] PASSED" in result.stdout, result.stdout
    seen = [line.split() for line in (tmp_path / "urls.log").read_text().splitlines()]
    urls = {topology: {url for name, url in seen if name == topology} for topology, _ in seen}
    assert sorted(urls) == ["cluster", "sentinel", "standalone"]
    assert all(len(found) == 1 for found in urls.values()), urls  # one server/cluster/group per session
    assert urls["cluster"].pop().startswith("redis+cluster://127.0.0.1:")
    assert urls["sentinel"].pop().endswith("/kernel-test")
    pids = [int(pid) for pid in (tmp_path / "pids.log").read_text().split()]
    assert len(pids) == 1 + 6 + 5  # a server, a cluster, a sentinel group
    assert all(wait_gone(pid) for pid in pids), "a server outlived the pytest session"


def test_without_the_variable_redis_url_is_standalone_and_ids_are_unchanged(tmp_path: Path) -> None:
    result = run_session(tmp_path, TOPOLOGY_TESTS, None, conftest=TOPOLOGY_CONFTEST, args=("-v",))
    assert result.returncode == 0, result.stdout + result.stderr
    assert "test_leaves.py::test_first PASSED" in result.stdout, result.stdout
    assert {line.split()[0] for line in (tmp_path / "urls.log").read_text().splitlines()} == {"standalone"}
