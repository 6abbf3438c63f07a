"""milo-kernel repository plugin: odmantic ``BaseRepository`` over MongoDB (motor)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from kernel import lazy_exports

if TYPE_CHECKING:  # what type checkers and IDEs read
    from ._config import DEFAULT_DB_BUCKETS as DEFAULT_DB_BUCKETS
    from ._config import EMBEDDED as EMBEDDED
    from ._config import RepositoryConfig as RepositoryConfig
    from ._documents import AUDIT_FIELDS as AUDIT_FIELDS
    from ._errors import map_error as map_error
    from ._filters import FORBIDDEN_OPERATORS as FORBIDDEN_OPERATORS
    from ._filters import normalize_sort as normalize_sort
    from ._filters import prepare_filter as prepare_filter
    from ._filters import user_filter as user_filter
    from ._manager import RepositoryManager as RepositoryManager
    from ._manager import import_repository as import_repository
    from ._manager import redact_uri as redact_uri
    from ._observe import QueryObserver as QueryObserver
    from ._observe import TracePropagation as TracePropagation
    from ._operation import QueryMetrics as QueryMetrics
    from ._outbox import EntryStatus as EntryStatus
    from ._outbox import Events as Events
    from ._outbox import OutboxEntry as OutboxEntry
    from ._outbox import OutboxEntryNotFoundError as OutboxEntryNotFoundError
    from ._outbox import OutboxEvent as OutboxEvent
    from ._outbox import OutboxStatus as OutboxStatus
    from ._outbox import OutboxStore as OutboxStore
    from ._outbox import TransactionsUnsupportedError as TransactionsUnsupportedError
    from ._pages import CursorPage as CursorPage
    from ._pages import Page as Page
    from ._pages import Pagination as Pagination
    from ._plugin import RepositoryPlugin as RepositoryPlugin
    from ._repository import BaseRepository as BaseRepository
    from ._schema import MigrationReport as MigrationReport
    from ._server import MongoServerError as MongoServerError
    from ._server import MongoWireServer as MongoWireServer
    from ._server import wire_server_available as wire_server_available
    from ._transactions import run_transaction as run_transaction
else:  # PEP 562: a submodule is imported on first use of one of its names
    _EXPORTS = {  # submodule -> the public names it defines
        "._config": ["DEFAULT_DB_BUCKETS", "EMBEDDED", "RepositoryConfig"],
        "._documents": ["AUDIT_FIELDS"],
        "._errors": ["map_error"],
        "._filters": ["FORBIDDEN_OPERATORS", "normalize_sort", "prepare_filter", "user_filter"],
        "._manager": ["RepositoryManager", "import_repository", "redact_uri"],
        "._observe": ["QueryObserver", "TracePropagation"],
        "._operation": ["QueryMetrics"],
        "._outbox": [
            "EntryStatus",
            "Events",
            "OutboxEntry",
            "OutboxEntryNotFoundError",
            "OutboxEvent",
            "OutboxStatus",
            "OutboxStore",
            "TransactionsUnsupportedError",
        ],
        "._pages": ["CursorPage", "Page", "Pagination"],
        "._plugin": ["RepositoryPlugin"],
        "._repository": ["BaseRepository"],
        "._schema": ["MigrationReport"],
        "._server": ["MongoServerError", "MongoWireServer", "wire_server_available"],
        "._transactions": ["run_transaction"],
    }
    __getattr__, __dir__, __all__ = lazy_exports(__name__, _EXPORTS)
