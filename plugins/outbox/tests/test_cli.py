"""``kernel outbox status|replay|purge`` in a subprocess, on this test's database and bus."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import anyio
import pytest
from kernel_outbox import OutboxRelay
from kernel_repository import OutboxEvent, RepositoryManager
from outbox_models import Boot, add_entries

pytestmark = pytest.mark.anyio


def write_config(path: Path, redis_url: str, mongo_uri: str, database: str, prefix: str) -> Path:
    config = path / "kernel.toml"
    config.write_text(
        '[kernel]\nplugins = ["redis", "eventbus", "repository", "outbox"]\n\n'
        f'[plugins.redis]\nurl = "{redis_url}"\n\n'
        f'[plugins.eventbus]\nadapter = "redis"\nprefix = "{prefix}"\n\n'
        f'[plugins.repository]\nuri = "{mongo_uri}"\ndatabase = "{database}"\n\n'
        "[plugins.outbox]\nrelay = false\n"
    )
    return config


async def kernel_cli(config: Path, *args: str) -> subprocess.CompletedProcess[str]:
    def run() -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "kernel", "-c", str(config), "outbox", *args],
            capture_output=True,
            text=True,
            timeout=120,
        )

    return await anyio.to_thread.run_sync(run)


async def test_status_replay_purge(
    boot: Boot, tmp_path: Path, redis_url: str, mongo_uri: str, database: str, prefix: str
) -> None:
    config = write_config(tmp_path, redis_url, mongo_uri, database, prefix)
    async with boot(relay=False) as kernel:
        store = kernel.get(RepositoryManager).outbox
        await add_entries(store, [OutboxEvent("cli.test", {"n": n}, event_id=f"cli-{n}") for n in range(2)])
        assert await kernel.get(OutboxRelay).run_once() == 2
        await add_entries(store, [OutboxEvent("cli.test", {"n": 2}, event_id="cli-2")])

        result = await kernel_cli(config, "status", "--json")
        assert result.returncode == 0, result.stderr
        shown = json.loads(result.stdout)
        assert (shown["backlog"], shown["done"], shown["failed"], shown["in_flight"]) == (1, 2, 0, 0)
        assert shown["lag_seconds"] >= 0 and shown["collection"] == "outbox"
        result = await kernel_cli(config, "status")
        assert (
            "backlog:        1 (in flight 0, retrying 0)" in result.stdout
            and "done:           2" in result.stdout
        )

        result = await kernel_cli(config, "replay", "cli-0")
        assert result.returncode == 0, result.stderr
        assert result.stdout.strip() == "replayed cli-0 (cli.test): pending again (was done)"
        entry = await store.get("cli-0")
        assert entry is not None and entry.status == "pending"

        result = await kernel_cli(config, "replay", "no-such-event")
        assert result.returncode == 1 and "no outbox entry has event id 'no-such-event'" in result.stderr

        result = await kernel_cli(config, "purge", "--done-older-than", "1h")
        assert (result.returncode, result.stdout.strip()) == (
            0,
            "purged 0 done entries published more than 1h ago",
        )
        result = await kernel_cli(config, "purge", "--done-older-than", "0")
        assert result.stdout.strip() == "purged 1 done entries published more than 0s ago"
        assert await store.get("cli-1") is None and (await store.status()).backlog == 2

        result = await kernel_cli(config, "purge", "--done-older-than", "soon")
        assert result.returncode == 2 and "not a duration: 'soon'" in result.stderr
        result = await kernel_cli(config, "purge")
        assert result.returncode == 2 and "--done-older-than" in result.stderr
