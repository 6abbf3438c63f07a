"""``RepositoryManager``: the motor client, the odmantic engine and the repositories built on them."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterable
from typing import Any, TypeVar

from motor.motor_asyncio import AsyncIOMotorClient
from odmantic import AIOEngine, Model

from kernel import redact_url
from kernel.config import import_object

from ._config import RepositoryConfig
from ._observe import QueryObserver
from ._operation import DatabaseOperation, QueryMetrics
from ._outbox import OutboxStore
from ._repository import BaseRepository
from ._server import MongoWireServer
from ._transactions import Session, run_transaction

R = TypeVar("R", bound=BaseRepository[Any])
T = TypeVar("T")


def redact_uri(uri: str) -> str:
    """``uri`` through :func:`kernel.redact_url`, without its query string (for logs)."""
    return redact_url(uri).partition("?")[0]


def import_repository(spec: str) -> type[BaseRepository[Any]]:
    """Import ``"module:Class"`` and check it is a ``BaseRepository`` subclass."""
    obj = import_object(spec, expects="Class")
    if not (isinstance(obj, type) and issubclass(obj, BaseRepository) and hasattr(obj, "model")):
        raise ValueError(f"{spec!r} is not a BaseRepository subclass with a model")
    return obj


def make_client(uri: str, config: RepositoryConfig) -> AsyncIOMotorClient[Any]:
    """A motor client with the configured pool and timeouts; datetimes come back UTC-aware."""
    return AsyncIOMotorClient(
        uri,
        minPoolSize=config.min_pool_size,
        maxPoolSize=config.max_pool_size,
        connectTimeoutMS=int(config.connect_timeout * 1000),
        serverSelectionTimeoutMS=int(config.server_selection_timeout * 1000),
        socketTimeoutMS=int(config.socket_timeout * 1000) or None,
        tz_aware=True,
        appname="milo-kernel",
    )


class RepositoryManager:
    """Registered as ``"repository"``: builds repositories, runs transactions, pings, migrates."""

    def __init__(
        self,
        client: AsyncIOMotorClient[Any],
        config: RepositoryConfig,
        *,
        metrics: QueryMetrics | None = None,
        server: MongoWireServer | None = None,
        repositories: Iterable[type[BaseRepository[Any]]] = (),
    ) -> None:
        self.client = client
        self.config = config
        self.metrics = metrics
        self.server = server
        self.engine = AIOEngine(client, database=config.database)
        self.database = self.engine.database
        self.outbox = OutboxStore(
            self.database, config.outbox_collection, metrics=metrics, done_ttl=config.outbox_done_ttl
        )
        """The transactional outbox every repository built here writes ``events=`` to."""
        self.repository_classes: list[type[BaseRepository[Any]]] = list(repositories)
        self._instances: dict[type[Any], BaseRepository[Any]] = {}

    def repository(self, cls: type[R]) -> R:
        """The (cached) instance of repository class ``cls`` bound to this database and metrics."""
        repo = self._instances.get(cls)
        if repo is None:
            repo = self._instances[cls] = cls(
                self.engine,
                metrics=self.metrics,
                transaction_attempts=self.config.transaction_attempts,
                outbox=self.outbox,
            )
            if self.observer is not None:
                repo.observer = self.observer
        return repo  # type: ignore[return-value]

    observer: QueryObserver | None = None
    """Told about every operation of the repositories built here (tracing); see :meth:`set_observer`."""

    def set_observer(self, observer: QueryObserver | None) -> None:
        """Tell ``observer`` about every operation of this manager's repositories from now on (None: stop)."""
        self.observer = observer
        for repo in self._instances.values():
            repo.observer = observer

    async def with_transaction(
        self, callback: Callable[[Session], Awaitable[T]], *, attempts: int | None = None
    ) -> T:
        """Run ``callback(session)`` in one transaction (commit, abort on error, retry transient errors)."""
        return await run_transaction(
            self.client, callback, attempts=attempts or self.config.transaction_attempts
        )

    async def ping(self) -> None:
        """One ``ping`` command; raises ``ServiceUnavailableError``/``DatabaseError``."""
        with DatabaseOperation("ping", ""):
            await self.database.command("ping")

    async def ensure_indexes(self, models: Iterable[type[Model]] | None = None) -> None:
        """Create the indexes the models declare (``Field(index=True / unique=True)``, ``model_config``)."""
        todo = list(models) if models is not None else [c.model for c in self.repository_classes]
        if not todo:
            return
        with DatabaseOperation("ensure_indexes", ",".join(m.__collection__ for m in todo)):
            await self.engine.configure_database(todo)

    def close(self) -> None:
        """Close the client and its connection pool."""
        self.client.close()
