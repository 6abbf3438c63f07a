"""milo-kernel repository plugin: odmantic ``BaseRepository`` over MongoDB (motor)."""

from ._config import EMBEDDED, RepositoryConfig
from ._documents import AUDIT_FIELDS
from ._errors import map_error
from ._filters import FORBIDDEN_OPERATORS, normalize_sort, prepare_filter, user_filter
from ._manager import RepositoryManager, import_repository, redact_uri
from ._operation import QueryMetrics
from ._pages import CursorPage, Page, Pagination
from ._plugin import RepositoryPlugin
from ._repository import BaseRepository
from ._schema import MigrationReport
from ._server import MongoServerError, MongoWireServer, wire_server_available
from ._transactions import run_transaction

__all__ = [
    "AUDIT_FIELDS",
    "BaseRepository",
    "CursorPage",
    "EMBEDDED",
    "FORBIDDEN_OPERATORS",
    "MigrationReport",
    "MongoServerError",
    "MongoWireServer",
    "Page",
    "Pagination",
    "QueryMetrics",
    "RepositoryConfig",
    "RepositoryManager",
    "RepositoryPlugin",
    "import_repository",
    "map_error",
    "normalize_sort",
    "prepare_filter",
    "redact_uri",
    "run_transaction",
    "user_filter",
    "wire_server_available",
]
