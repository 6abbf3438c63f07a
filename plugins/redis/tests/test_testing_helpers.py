"""The test helpers' own guarantee: against ``$REDIS_URL`` a key left behind fails the session."""

from __future__ import annotations

import os
import subprocess
import sys
import uuid
from pathlib import Path

import redis
from kernel_redis.testing import RedisServer, leftover_test_keys

CONFTEST = "from kernel_redis.testing import redis_keys_left_behind  # noqa: F401\n"


def run_session(tmp_path: Path, test_body: str, url: str) -> subprocess.CompletedProcess[str]:
    (tmp_path / "conftest.py").write_text(CONFTEST)
    (tmp_path / "test_leaves.py").write_text(test_body)
    env = {k: v for k, v in os.environ.items() if k != "PYTEST_ADDOPTS"}
    env["REDIS_URL"] = url
    return subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", str(tmp_path)],
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
