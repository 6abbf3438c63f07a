"""Repository spans: one CLIENT span per database operation (kernel_repository's observer seam)."""

from __future__ import annotations

from collections.abc import Callable

from kernel_repository import RepositoryManager
from opentelemetry import trace
from opentelemetry.trace import SpanKind, Status, StatusCode


class RepositoryTracing:
    """A :class:`kernel_repository.QueryObserver` making ``<operation> <collection>`` CLIENT spans.

    Attributes: ``db.system.name = "mongodb"``, ``db.namespace`` (the database),
    ``db.collection.name``, ``db.operation.name`` (the repository method). No query text is
    recorded (``db.query.text`` would carry filter values: ids, emails).
    """

    def __init__(self, tracer: trace.Tracer) -> None:
        self._tracer = tracer

    def operation(self, name: str, collection: str, database: str) -> Callable[[BaseException | None], None]:
        """Start a CLIENT span with ``db.*`` attributes; returns what ends it (recording an error)."""
        attributes: dict[str, str] = {"db.system.name": "mongodb", "db.operation.name": name}
        if collection:
            attributes["db.collection.name"] = collection
        if database:
            attributes["db.namespace"] = database
        span = self._tracer.start_span(
            f"{name} {collection}" if collection else name, kind=SpanKind.CLIENT, attributes=attributes
        )

        def ended(error: BaseException | None) -> None:
            if error is not None:
                span.record_exception(error)
                span.set_attribute("error.type", f"{type(error).__module__}.{type(error).__qualname__}")
                span.set_status(Status(StatusCode.ERROR, f"{type(error).__name__}: {error}"))
            span.end()

        return ended


def instrument_repositories(manager: RepositoryManager, tracer: trace.Tracer) -> Callable[[], None]:
    """Make ``manager``'s repositories report to a :class:`RepositoryTracing`; returns the undo."""
    manager.set_observer(RepositoryTracing(tracer))

    def undo() -> None:
        manager.set_observer(None)

    return undo
