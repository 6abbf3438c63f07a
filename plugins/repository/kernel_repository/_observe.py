"""The repository's instrumentation seam: what an observer (tracing) is told around each database operation.

No observer by default: an operation then costs two attribute tests more than before.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Protocol


class QueryObserver(Protocol):
    """Told about every repository operation (see :meth:`RepositoryManager.set_observer`)."""

    def operation(self, name: str, collection: str, database: str) -> Callable[[BaseException | None], None]:
        """Operation ``name`` (``find_one``, ``create`` ...) on ``collection`` of ``database`` starts;
        the callback is called once it ended, with the driver's exception if it failed."""
