"""milo-kernel repository plugin: odmantic ``BaseRepository`` over MongoDB (motor)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from kernel import lazy_exports

if TYPE_CHECKING:
    from ._config import EMBEDDED, RepositoryConfig
    from ._documents import AUDIT_FIELDS
    from ._errors import map_error
    from ._filters import FORBIDDEN_OPERATORS, normalize_sort, prepare_filter, user_filter
    from ._manager import RepositoryManager, import_repository, redact_uri
    from ._operation import QueryMetrics
    from ._outbox import (
        EntryStatus,
        Events,
        OutboxEntry,
        OutboxEntryNotFoundError,
        OutboxEvent,
        OutboxStatus,
        OutboxStore,
        TransactionsUnsupportedError,
    )
    from ._pages import CursorPage, Page, Pagination
    from ._plugin import RepositoryPlugin
    from ._repository import BaseRepository
    from ._schema import MigrationReport
    from ._server import MongoServerError, MongoWireServer, wire_server_available
    from ._transactions import run_transaction

_EXPORTS = {
    "AUDIT_FIELDS": "._documents",
    "BaseRepository": "._repository",
    "CursorPage": "._pages",
    "EMBEDDED": "._config",
    "FORBIDDEN_OPERATORS": "._filters",
    "MigrationReport": "._schema",
    "MongoServerError": "._server",
    "MongoWireServer": "._server",
    "EntryStatus": "._outbox",
    "Events": "._outbox",
    "OutboxEntry": "._outbox",
    "OutboxEntryNotFoundError": "._outbox",
    "OutboxEvent": "._outbox",
    "OutboxStatus": "._outbox",
    "OutboxStore": "._outbox",
    "TransactionsUnsupportedError": "._outbox",
    "Page": "._pages",
    "Pagination": "._pages",
    "QueryMetrics": "._operation",
    "RepositoryConfig": "._config",
    "RepositoryManager": "._manager",
    "RepositoryPlugin": "._plugin",
    "import_repository": "._manager",
    "map_error": "._errors",
    "normalize_sort": "._filters",
    "prepare_filter": "._filters",
    "redact_uri": "._manager",
    "run_transaction": "._transactions",
    "user_filter": "._filters",
    "wire_server_available": "._server",
}
"""Public name -> the submodule defining it, imported on first use (PEP 562)."""

__all__ = [
    "AUDIT_FIELDS",
    "BaseRepository",
    "CursorPage",
    "EMBEDDED",
    "EntryStatus",
    "Events",
    "FORBIDDEN_OPERATORS",
    "MigrationReport",
    "MongoServerError",
    "MongoWireServer",
    "OutboxEntry",
    "OutboxEntryNotFoundError",
    "OutboxEvent",
    "OutboxStatus",
    "OutboxStore",
    "Page",
    "Pagination",
    "QueryMetrics",
    "RepositoryConfig",
    "RepositoryManager",
    "RepositoryPlugin",
    "TransactionsUnsupportedError",
    "import_repository",
    "map_error",
    "normalize_sort",
    "prepare_filter",
    "redact_uri",
    "run_transaction",
    "user_filter",
    "wire_server_available",
]


if not TYPE_CHECKING:  # type checkers read the imports above; lazy loading keeps `import` light
    __getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
