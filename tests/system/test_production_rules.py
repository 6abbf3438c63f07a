"""``kernel check`` and ``kernel serve`` apply the first-party plugins' ``kernel_check`` rules.

Issue 11, items 4 and 5: configs that cannot boot, and production rules.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from kernel import ConfigError
from kernel.testing import make_kernel

SECTIONS = """
import attrs
from kernel import Secret, recommended

@attrs.define(frozen=True)
class App:
    name: str = "app"
    session_secret: Secret | None = recommended(reason="sessions are unsigned without it")

SECTIONS = {"app": App}
"""

EVERYTHING = """
[kernel]
plugins = ["errors", "metrics", "redis", "repository", "eventbus", "cache", "queue"]
env = "{env}"
host_sections = "h1_rules_sections:SECTIONS"

[plugins.errors]
expose_context = true

[plugins.cache]
backend = "redis"
"""

RULES = [
    "app.session_secret: required when env = 'production' (sessions are unsigned without it)",
    "plugins.errors.expose_context: expose_context = true shows internal error context (collections, ids, "
    "queries) to every client",
    "plugins.metrics.token: the scrape endpoint /health/metrics is open to any client: set token (scrapers "
    "send 'Authorization: Bearer <token>') or loopback_only = true",
    'plugins.redis.url: url = "embedded" runs a private redis-server per process: other processes (workers) '
    "never see its data, and it is lost when the process ends; point url at a shared server",
    'plugins.repository.uri: uri = "embedded" runs a private MongoDB wire server per process (not MongoDB: '
    "no replication, other processes never see its data); point uri at a MongoDB deployment",
    'plugins.eventbus.adapter: adapter = "memory" delivers only inside one process, and the queue plugin '
    'runs jobs in `kernel worker` processes: their events never reach this one; use adapter = "redis"',
]


@pytest.fixture
def env(tmp_path: Path) -> dict[str, str]:
    (tmp_path / "h1_rules_sections.py").write_text(SECTIONS)
    environ = {k: v for k, v in os.environ.items() if not k.startswith("KERNEL")}
    environ["PYTHONPATH"] = os.pathsep.join(filter(None, [str(tmp_path), environ.get("PYTHONPATH")]))
    return environ


def kernel(args: list[str], env: dict[str, str], cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "kernel", *args], env=env, cwd=cwd, capture_output=True, text=True, timeout=120
    )


def errors(stderr: str) -> list[str]:
    return [line.removeprefix("error: ") for line in stderr.splitlines() if line.startswith("error: ")]


def test_production_rules_are_errors_in_production_listed_together(
    env: dict[str, str], tmp_path: Path
) -> None:
    config = tmp_path / "kernel.toml"
    config.write_text(EVERYTHING.format(env="production"))
    result = kernel(["--config", str(config), "check"], env, tmp_path)
    assert result.returncode == 2, result.stderr
    assert "config OK" not in result.stdout
    expected = [RULES[0], *(f"{rule} (not allowed when env = 'production')" for rule in RULES[1:])]
    assert sorted(errors(result.stderr)) == sorted(expected)


def test_production_rules_are_warnings_in_development(env: dict[str, str], tmp_path: Path) -> None:
    config = tmp_path / "kernel.toml"
    config.write_text(EVERYTHING.format(env="development"))
    result = kernel(["--config", str(config), "check"], env, tmp_path)
    assert result.returncode == 0, result.stderr
    assert "config OK" in result.stdout
    warnings = [
        line.removeprefix("warning: ") for line in result.stderr.splitlines() if line.startswith("warning: ")
    ]
    assert f"{RULES[1]} (an error when env = 'production')" in warnings
    assert f"{RULES[3]} (an error when env = 'production')" in warnings
    assert len(warnings) == len(RULES)


def test_check_fails_for_redis_backends_without_the_redis_plugin(env: dict[str, str], tmp_path: Path) -> None:
    config = tmp_path / "kernel.toml"
    config.write_text(
        '[kernel]\nplugins = ["eventbus", "cache"]\n\n[plugins.eventbus]\nadapter = "redis"\n\n'
        '[plugins.cache]\nbackend = "redis"\n'
    )
    result = kernel(["--config", str(config), "check"], env, tmp_path)
    assert result.returncode == 2, result.stderr
    found = errors(result.stderr)
    assert len(found) == 2, found
    assert found[0].startswith('plugins.eventbus.adapter: adapter = "redis" needs the redis plugin')
    assert found[1].startswith("plugins.cache.backend: backend = 'redis' needs the redis plugin")
    # enabling redis is the fix the message names
    config.write_text(config.read_text().replace('["eventbus", "cache"]', '["redis", "eventbus", "cache"]'))
    result = kernel(["--config", str(config), "check"], env, tmp_path)
    assert result.returncode == 0, result.stderr


def test_serve_with_workers_refuses_the_memory_bus_in_production(env: dict[str, str], tmp_path: Path) -> None:
    config = tmp_path / "kernel.toml"
    config.write_text('[kernel]\nplugins = ["eventbus"]\nenv = "production"\n')
    assert kernel(["--config", str(config), "check"], env, tmp_path).returncode == 0  # one process: fine
    result = kernel(["--config", str(config), "serve", "--workers", "2", "--port", "0"], env, tmp_path)
    assert result.returncode == 2, result.stderr
    assert errors(result.stderr) == [
        'plugins.eventbus.adapter: adapter = "memory" delivers only inside one process, '
        "but 2 server processes share this config: events published in one never reach the others; "
        'use adapter = "redis" '
        "(not allowed when env = 'production')"
    ]


def test_the_memory_bus_rule_sees_the_process_count_and_the_queue() -> None:
    assert make_kernel("eventbus", settings={"env": "production"}, processes=1).warnings == ()
    with pytest.raises(ConfigError) as exc_info:
        make_kernel("eventbus", settings={"env": "production"}, processes=4)
    [error] = exc_info.value.errors
    assert "but 4 server processes share this config" in error
    [warning] = make_kernel("eventbus", settings={"env": "development"}, processes=4).warnings
    assert warning.endswith("(an error when env = 'production')")
    queue = make_kernel(
        "redis",
        "eventbus",
        "queue",
        settings={"env": "development"},
        config={"redis": {"url": "redis://127.0.0.1:6379/0"}},
    )
    assert [w for w in queue.warnings if w.startswith("plugins.eventbus")] == [
        'plugins.eventbus.adapter: adapter = "memory" delivers only inside one process, and the queue plugin '
        'runs jobs in `kernel worker` processes: their events never reach this one; use adapter = "redis" '
        "(an error when env = 'production')"
    ]


def test_a_redis_client_given_by_the_host_satisfies_the_cache_check() -> None:
    make_kernel("cache", config={"cache": {"backend": "redis"}}, overrides={"redis": object()})
