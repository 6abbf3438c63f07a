"""The plugin booted in isolation: config validation, embedded server, health, metrics, failures."""

from __future__ import annotations

import logging
import os
from typing import Any

import pytest
from kernel_errors import ConflictError, ServiceUnavailableError
from kernel_repository import MongoWireServer, RepositoryConfig, RepositoryManager, redact_uri
from kernel_repository._server import free_port
from kernel_repository.testing import on_wire_server, unique_database
from odmantic import AIOEngine
from repository_models import User, UserRepository, users_config

from kernel import BootError, ConfigError, Secret
from kernel.testing import boot_kernel, make_kernel

pytestmark = pytest.mark.anyio


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


@pytest.mark.parametrize(
    ("config", "message"),
    [
        ({"uri": "http://user:hunter2@db.example"}, "uri: must start with mongodb://"),
        ({"uri": "mongodb://"}, "uri: must name a host"),
        ({"uri": "mongodb://user:hunter2@"}, "uri: must name a host"),
        ({"database": "a.b"}, "database: must be a MongoDB database name"),
        ({"database": ""}, "database: must be a MongoDB database name"),
        ({"max_pool_size": 0}, "max_pool_size"),
        ({"min_pool_size": 5, "max_pool_size": 2}, "must not exceed max_pool_size"),
        ({"server_selection_timeout": 0}, "server_selection_timeout"),
        ({"pool": 3}, "pool: unknown key"),
        ({"ensure_indexes": "yes"}, "ensure_indexes"),
        ({"db_buckets": []}, "db_buckets: must list at least one bucket bound"),
        ({"db_buckets": [1.0, 0.5]}, "db_buckets: must be strictly increasing, got [1.0, 0.5]"),
    ],
)
def test_config_errors_are_clear_and_never_show_the_uri(config: dict[str, Any], message: str) -> None:
    with pytest.raises(ConfigError) as info:
        make_kernel("errors", "repository", config={"repository": config})
    assert message in str(info.value)
    assert "hunter2" not in str(info.value)


def test_config_defaults_and_masking() -> None:
    cfg = RepositoryConfig()
    assert cfg.uri.get_secret_value() == "embedded" and cfg.database == "app"
    secret = RepositoryConfig(uri=Secret("mongodb+srv://u:hunter2@cluster.example/db"))
    assert "hunter2" not in repr(secret)
    assert redact_uri("mongodb://u:hunter2@h1:1,h2:2/db?authSource=admin") == "mongodb://u:***@h1:1,h2:2/db"
    assert redact_uri("mongodb://h/db") == "mongodb://h/db"


async def test_boot_in_isolation_registers_services_and_is_healthy(mongo_uri: str) -> None:
    database = unique_database()
    config = users_config(mongo_uri, database)
    async with boot_kernel("errors", "repository", config=config) as kernel:
        manager = kernel.get(RepositoryManager)
        assert kernel.get(AIOEngine) is manager.engine
        assert manager.engine.database_name == database
        assert manager.repository(UserRepository) is manager.repository(UserRepository)
        report = await kernel.health()
        assert report.status == "ok" and [c.name for c in report.checks] == ["repository"]
        repo = manager.repository(UserRepository)
        # ensure_indexes at boot created the unique index the model declares.
        await repo.create({"name": "a", "email": "a@x.io"})
        with pytest.raises(ConflictError):
            await repo.create({"name": "b", "email": "a@x.io"})
        await manager.client.drop_database(database)


async def test_bad_repository_spec_fails_the_boot(mongo_uri: str) -> None:
    cases = (
        ("nope", "expected 'module:Class'"),
        ("repository_models:User", "not a BaseRepository"),
        ("no_such_module:X", "cannot import"),
    )
    for spec, text in cases:
        with pytest.raises(BootError) as info:
            async with boot_kernel(
                "errors", "repository", config={"repository": {"uri": mongo_uri, "repositories": [spec]}}
            ):
                pass
        assert text in str(info.value)


async def test_embedded_uri_starts_and_stops_a_private_server(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, "kernel")
    async with boot_kernel("errors", "repository", config={"repository": {"uri": "embedded"}}) as kernel:
        manager = kernel.get(RepositoryManager)
        assert manager.server is not None and manager.server.running
        pid = manager.server.pid
        assert pid is not None and pid_alive(pid)
        user = await manager.repository(UserRepository).create({"name": "e", "email": "e@x.io"})
        assert await manager.repository(UserRepository).find_by_id(user.id) == user
    assert not pid_alive(pid)
    assert "embedded wire server pid" in caplog.text


async def test_unreachable_server_fails_the_boot_without_leaking_the_password() -> None:
    uri = f"mongodb://admin:hunter2@127.0.0.1:{free_port()}/?directConnection=true"
    config = {"repository": {"uri": uri, "server_selection_timeout": 0.3, "connect_timeout": 0.3}}
    with pytest.raises(BootError) as info:
        async with boot_kernel("errors", "repository", config=config):
            pass
    message = str(info.value)
    assert "cannot reach MongoDB at mongodb://admin:***@127.0.0.1" in message and "check_on_start" in message
    assert "hunter2" not in message


@pytest.mark.skipif(not on_wire_server(), reason="stops and restarts a private server")
async def test_server_outage_maps_to_service_unavailable_and_recovers() -> None:
    with MongoWireServer() as server:
        config = {"repository": {"uri": server.uri, "server_selection_timeout": 0.5, "health_timeout": 2.0}}
        async with boot_kernel("errors", "repository", config=config) as kernel:
            manager = kernel.get(RepositoryManager)
            repo = manager.repository(UserRepository)
            user = await repo.create({"name": "o", "email": "o@x.io"})
            server.stop()
            with pytest.raises(ServiceUnavailableError) as info:
                await repo.find_by_id(user.id)
            assert info.value.status_code == 503 and "driver_error" in info.value.internal
            with pytest.raises(ServiceUnavailableError):
                await repo.create({"name": "p", "email": "p@x.io"})
            assert (await kernel.health()).status == "fail"
            server.start()
            assert await repo.find_by_id(user.id) == user
            assert (await kernel.health()).status == "ok"


async def test_query_durations_are_recorded_when_metrics_is_enabled(mongo_uri: str) -> None:
    from kernel_metrics import MetricsCollector

    database = unique_database()
    config = {"repository": {"uri": mongo_uri, "database": database}}
    async with boot_kernel("errors", "metrics", "repository", config=config) as kernel:
        repo = kernel.get(RepositoryManager).repository(UserRepository)
        user = await repo.create({"name": "m", "email": "m@x.io"})
        await repo.find_by_id(user.id)
        await repo.find_by_id(user.id)
        await repo.find_paginated()
        body, _ = kernel.get(MetricsCollector).render()
        text = body.decode()
        assert 'db_query_duration_seconds_count{collection="users",operation="find_by_id"} 2.0' in text
        assert 'db_query_duration_seconds_count{collection="users",operation="create"} 1.0' in text
        assert 'operation="find_paginated"' in text
        await kernel.get(RepositoryManager).client.drop_database(database)


async def test_without_metrics_nothing_is_recorded(manager: RepositoryManager) -> None:
    assert manager.metrics is None
    assert manager.repository(UserRepository).metrics is None
    assert User.__collection__ == "users"
