"""Repository: the collections of the configured repositories, document counts, schema versions."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ._html import h, table
from ._http import Confirm, Done, NotFound, Page, PageHandler, Request

if TYPE_CHECKING:
    from kernel_repository import RepositoryManager


def _older_than(version: int) -> dict[str, Any]:
    """Documents stored at a schema version below ``version`` (no version field means 1)."""
    below: dict[str, Any] = {"schema_version": {"$lt": version}}
    return {"$or": [below, {"schema_version": {"$exists": False}}]} if version > 1 else below


class RepositorySection:
    """The ``repository`` page (read only), on the repository plugin's ``RepositoryManager``."""

    key = "repository"
    actions: frozenset[str] = frozenset()

    def __init__(self, manager: RepositoryManager) -> None:
        self.rm = manager

    def pages(self) -> dict[str, PageHandler]:
        """``/repository``."""
        return {"/repository": self.index}

    async def index(self, req: Request) -> Page:
        """One row per repository class known to the manager (``[plugins.repository] repositories``)."""
        rows: list[list[object]] = []
        for cls in self.rm.repository_classes:
            repo = self.rm.repository(cls)
            total = await repo.count()
            pending = await repo.collection.count_documents(_older_than(repo.schema_version))
            rows.append([cls.__name__, repo.collection_name, total, f"v{repo.schema_version}", pending])
        body = h(
            "<p>Database <b>{db}</b>. Documents below their repository's schema version are upgraded "
            "when read, and for good by <code>kernel repo migrate</code>.</p>{table}",
            db=self.rm.database.name,
            table=table(
                ["repository", "collection", "documents", "schema version", "pending migration"],
                rows,
                empty="no repositories listed in [plugins.repository] repositories",
            ),
        )
        return Page("Repository", body, self.key)

    async def act(self, req: Request, action: str) -> Done | Confirm:
        """The repository section has no actions."""
        raise NotFound(f"no action {action!r}")
