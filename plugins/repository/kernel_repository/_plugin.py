"""The ``repository`` plugin: MongoDB client + odmantic engine for the kernel's lifetime, ``kernel repo``."""

from __future__ import annotations

import argparse
import sys
from collections.abc import AsyncIterator
from importlib import metadata
from typing import TYPE_CHECKING, Any

from kernel import CheckIssue, Command, HealthCheck, Kernel, Plugin, PluginContext, hookimpl
from kernel.console import ProgressBar

from ._config import EMBEDDED, RepositoryConfig

if TYPE_CHECKING:  # odmantic, motor, pymongo: imported by the lifespan and run functions, not by check
    from ._manager import RepositoryManager
    from ._repository import BaseRepository
    from ._server import MongoWireServer


class RepositoryPlugin(Plugin):
    """odmantic repositories over MongoDB (or the embedded wire-protocol server)."""

    name = "repository"
    version = metadata.version("milo-kernel-repository")  # one source: the distribution's pyproject.toml
    # The error classes come from the kernel_errors library (a package dependency): the errors
    # *plugin* (problem+json middleware) renders them when a host enables it, but is not required.
    optional = ("metrics",)
    config_class = RepositoryConfig
    provides = ("repository", "repository.engine", "RepositoryManager", "AIOEngine")
    description = "MongoDB repositories (odmantic): CRUD, pagination, transactions, audit, schema versions"

    @hookimpl
    def kernel_check(self, ctx: PluginContext[RepositoryConfig], enabled: frozenset[str]) -> list[CheckIssue]:
        """Production rules: ``uri = "embedded"`` is not MongoDB; the outbox needs transactions."""
        uri = ctx.config.uri.get_secret_value()
        if uri == EMBEDDED:
            return [
                CheckIssue.production(
                    "uri",
                    'uri = "embedded" runs a private MongoDB wire server per process (not MongoDB: no '
                    "replication, other processes never see its data); point uri at a MongoDB deployment",
                )
            ]
        if "outbox" in enabled and ctx.settings.env == "production" and not _names_replica_set(uri):
            # Only a connection can tell a standalone mongod from a replica-set member; the outbox
            # plugin probes one transaction at boot and fails the boot on a standalone server.
            return [
                CheckIssue.warning(
                    "uri",
                    "the outbox needs MongoDB transactions (a replica set or sharded cluster), and uri "
                    "names no replicaSet= and is not mongodb+srv://, so this check cannot tell; a "
                    "standalone mongod fails the boot (the outbox plugin tries one transaction)",
                )
            ]
        return []

    @hookimpl
    async def kernel_lifespan(self, ctx: PluginContext[RepositoryConfig]) -> AsyncIterator[None]:
        """Start the embedded server if asked, connect, check, create indexes; register the manager."""
        from odmantic import AIOEngine

        from ._manager import RepositoryManager, import_repository, make_client, redact_uri
        from ._operation import find_query_metrics

        cfg = ctx.config
        classes = [import_repository(spec) for spec in cfg.repositories]
        server: MongoWireServer | None = None
        uri = cfg.uri.get_secret_value()
        if uri == EMBEDDED:
            server = await start_embedded(cfg)
            uri = server.uri
        try:
            manager = RepositoryManager(
                make_client(uri, cfg),
                cfg,
                metrics=find_query_metrics(ctx.registry, cfg.db_buckets),
                server=server,
                repositories=classes,
            )
            try:
                if cfg.check_on_start:
                    await _check_reachable(manager, uri)
                if cfg.ensure_indexes:
                    await manager.ensure_indexes()
                ctx.provide(manager, name="repository")
                ctx.provide(manager.engine, name="repository.engine", types=AIOEngine)
                ctx.log.info(
                    "repository: database %r at %s%s",
                    cfg.database,
                    redact_uri(uri),
                    f" (embedded wire server pid {server.pid})" if server else "",
                )
                yield
            finally:
                manager.close()
        finally:
            if server is not None:
                await server.aclose()

    @hookimpl
    def kernel_health_checks(self, ctx: PluginContext[RepositoryConfig]) -> list[HealthCheck]:
        """One critical check: the server answers ``ping`` within ``health_timeout``."""

        async def ping() -> bool:
            from ._manager import RepositoryManager  # loaded by the lifespan already: no import cost here

            manager = ctx.registry.get(RepositoryManager)
            await manager.ping()
            return True

        return [HealthCheck("repository", ping, critical=True, timeout=ctx.config.health_timeout)]

    @hookimpl
    def kernel_cli_commands(self) -> list[Command]:
        """``kernel repo migrate``."""
        return [
            Command(
                "repo",
                "repository maintenance: migrate documents to the current schema version",
                run_repo,
                add_repo_arguments,
            )
        ]


def _names_replica_set(uri: str) -> bool:
    """Whether ``uri`` itself says it reaches a replica set (``mongodb+srv://`` or ``replicaSet=``)."""
    return uri.startswith("mongodb+srv://") or "replicaset=" in uri.partition("?")[2].lower()


async def _check_reachable(manager: RepositoryManager, uri: str) -> None:
    from ._manager import redact_uri

    try:
        await manager.ping()
    except Exception as exc:
        cause = exc.__cause__ or exc
        raise ConnectionError(
            f"cannot reach MongoDB at {redact_uri(uri)}: {type(cause).__name__}: {cause} "
            "(set [plugins.repository] check_on_start = false to boot anyway)"
        ) from exc


async def start_embedded(cfg: RepositoryConfig) -> MongoWireServer:
    """Start the private wire-protocol server and wait until it answers ``ping``."""
    from ._server import MongoWireServer

    server = MongoWireServer(data_dir=cfg.embedded_data_dir, startup_timeout=cfg.embedded_startup_timeout)
    return await server.start_from_loop()


# ---------------------------------------------------------------------- kernel repo migrate


def add_repo_arguments(parser: argparse.ArgumentParser) -> None:
    """The ``kernel repo`` subcommands and their arguments."""
    sub = parser.add_subparsers(dest="repo_command", metavar="SUBCOMMAND", required=True)
    p = sub.add_parser("migrate", help="upgrade stored documents to each repository's schema_version")
    p.add_argument(
        "repositories",
        nargs="*",
        metavar="REPOSITORY",
        help="'module:Class' or a class name from [plugins.repository] repositories (default: all of them)",
    )
    p.add_argument("--batch-size", type=int, default=500, help="documents per bulk write (default 500)")


def _select(manager: RepositoryManager, names: list[str]) -> list[type[BaseRepository[Any]]]:
    from ._manager import import_repository

    known = {cls.__name__: cls for cls in manager.repository_classes}
    if not names:
        return list(manager.repository_classes)
    out = []
    for name in names:
        if ":" in name:
            out.append(import_repository(name))
        elif name in known:
            out.append(known[name])
        else:
            raise ValueError(
                f"unknown repository {name!r}: use 'module:Class' or one of "
                f"{', '.join(sorted(known)) or '(none configured in [plugins.repository] repositories)'}"
            )
    return out


async def run_repo(args: argparse.Namespace, kernel: Kernel) -> int:
    """``kernel repo migrate``: migrate the named (or all configured) repositories; the exit status."""
    from ._manager import RepositoryManager

    manager = kernel.get(RepositoryManager)
    if args.batch_size < 1:
        print(f"error: --batch-size must be >= 1, got {args.batch_size}", file=sys.stderr)
        return 2
    try:
        classes = _select(manager, list(args.repositories))
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    if not classes:
        print(
            "nothing to migrate: name repositories or list them in [plugins.repository] repositories",
            file=sys.stderr,
        )
        return 2
    for cls in classes:
        repo = manager.repository(cls)
        label = f"{cls.__name__} ({repo.collection_name}) -> v{repo.schema_version}"
        report = await repo.migrate(batch_size=args.batch_size, progress=ProgressBar(f"{label}:", sys.stdout))
        print(
            f"{cls.__name__}: scanned {report.scanned}, upgraded {report.upgraded}, "
            f"skipped {report.skipped} (changed concurrently)"
        )
    return 0
