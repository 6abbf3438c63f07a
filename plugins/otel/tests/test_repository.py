"""Repository spans on the repository plugin's wire-protocol server: one CLIENT span per operation."""

from __future__ import annotations

import pytest
from kernel_errors import ConflictError
from kernel_otel import Tracing
from kernel_repository import BaseRepository, RepositoryManager
from kernel_repository.testing import mongo_server, mongo_uri, unique_database  # noqa: F401
from odmantic import Field, Model
from opentelemetry.trace import SpanKind, StatusCode

from kernel.testing import boot_kernel


class Account(Model):
    email: str = Field(unique=True)

    model_config = {"collection": "accounts"}


class AccountRepository(BaseRepository[Account]):
    pass


@pytest.mark.anyio
async def test_each_operation_is_a_client_span_under_the_current_span(mongo_uri: str) -> None:  # noqa: F811
    database = unique_database()
    config = {"otel": {"exporter": "memory"}, "repository": {"uri": mongo_uri, "database": database}}
    async with boot_kernel("otel", "repository", config=config) as kernel:
        manager, tracing = kernel.get(RepositoryManager), kernel.get(Tracing)
        try:
            repo = manager.repository(AccountRepository)
            await repo.collection.create_index("email", unique=True)
            with tracing.tracer.start_as_current_span("POST /accounts") as request:
                await repo.create({"email": "a@x.io"})
                with pytest.raises(ConflictError):
                    await repo.create({"email": "a@x.io"})
                assert await repo.find_one({"email": "a@x.io"}) is not None
        finally:
            await manager.client.drop_database(database)
        spans = [s for s in tracing.memory.get_finished_spans() if s.kind is SpanKind.CLIENT]
    assert [s.name for s in spans] == ["create accounts", "create accounts", "find_one accounts"]
    for span in spans:
        assert span.parent is not None and span.parent.span_id == request.get_span_context().span_id
        assert span.attributes is not None
        assert span.attributes["db.system.name"] == "mongodb"
        assert span.attributes["db.collection.name"] == "accounts"
        assert span.attributes["db.namespace"] == database
        assert "db.query.text" not in span.attributes
    assert spans[0].attributes is not None and spans[0].attributes["db.operation.name"] == "create"
    assert spans[1].status.status_code is StatusCode.ERROR  # the duplicate key
    assert spans[1].attributes is not None and "DuplicateKeyError" in str(spans[1].attributes["error.type"])
    assert spans[2].status.status_code is StatusCode.UNSET


@pytest.mark.anyio
async def test_teardown_removes_the_observer(mongo_uri: str) -> None:  # noqa: F811
    config = {"otel": {"exporter": "memory"}, "repository": {"uri": mongo_uri, "database": unique_database()}}
    async with boot_kernel("otel", "repository", config=config) as kernel:
        manager = kernel.get(RepositoryManager)
        repo = manager.repository(AccountRepository)
        assert repo.observer is not None
    assert manager.observer is None and repo.observer is None
