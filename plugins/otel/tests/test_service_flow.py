"""The example service's flow in one process, traced: POST /users -> repository create with its event
in the outbox -> the relay publishes it -> a handler enqueues a job -> a worker runs it.

Every span of the flow is in the request's trace (real redis-server, the repository's wire server).
"""

from __future__ import annotations

import uuid
from typing import Any

import pytest
from kernel_eventbus import EventBus, EventMetadata
from kernel_otel import Tracing
from kernel_queue import JobContext, QueueManager, queue_tag
from kernel_queue._manager import QUEUES_KEY
from kernel_redis import connect
from kernel_redis.testing import redis_keys_left_behind, redis_server, redis_url  # noqa: F401
from kernel_repository import BaseRepository, OutboxEvent, RepositoryManager
from kernel_repository.testing import mongo_server, mongo_uri, unique_database  # noqa: F401
from odmantic import Model
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.trace import SpanKind

from kernel import Plugin, PluginContext, Route, hookimpl
from kernel.testing import boot_kernel, wait_until
from kernel.web import KernelApp, Receive, Scope, Send


class Member(Model):
    name: str

    model_config = {"collection": "members"}


class MemberRepository(BaseRepository[Member]):
    pass


class Members(Plugin):
    """``POST /members``: creates a member with its ``member.created`` event (the outbox)."""

    name = "members"
    requires = ("repository",)

    @hookimpl
    def kernel_routes(self, ctx: PluginContext[object]) -> list[Route]:
        repo = ctx.registry.get(RepositoryManager).repository(MemberRepository)

        async def create(scope: Scope, receive: Receive, send: Send) -> None:
            def events(member: Member) -> list[OutboxEvent]:
                return [OutboxEvent("member.created", {"id": str(member.id)})]

            await repo.create({"name": "ada"}, events=events)
            await send({"type": "http.response.start", "status": 201, "headers": []})
            await send({"type": "http.response.body", "body": b"{}"})

        return [Route("/members", create, methods=("POST",))]


def render(spans: tuple[ReadableSpan, ...], queue: str) -> str:
    """The spans as an indented tree (children under parents, by start time); the queue name shortened."""
    ids = {s.context.span_id for s in spans}
    lines: list[str] = []

    def walk(parent: int | None, depth: int) -> None:
        children = [
            s for s in spans if (s.parent.span_id if s.parent and s.parent.span_id in ids else None) == parent
        ]
        for span in sorted(children, key=lambda s: s.start_time or 0):
            link = " (linked to its producer)" if span.links else ""
            name = span.name.replace(queue, "<queue>")
            lines.append(f"{'  ' * depth}{name} [{span.kind.name}]{link}")
            walk(span.context.span_id, depth + 1)

    walk(None, 0)
    return "\n".join(lines)


async def _post(app: KernelApp) -> None:
    scope = {
        "type": "http",
        "http_version": "1.1",
        "method": "POST",
        "scheme": "http",
        "path": "/members",
        "query_string": b"",
        "root_path": "",
        "headers": [],
    }

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: Any) -> None:
        return None

    await app(scope, receive, send)


@pytest.mark.anyio
async def test_one_request_yields_one_trace_through_outbox_bus_and_queue(
    redis_url: str,  # noqa: F811
    mongo_uri: str,  # noqa: F811
) -> None:
    queue, database = f"oteltest{uuid.uuid4().hex[:10]}", unique_database()
    prefix = f"oteltest-{uuid.uuid4().hex[:10]}"
    config: dict[str, dict[str, Any]] = {
        "otel": {"exporter": "memory"},
        "redis": {"url": redis_url},
        "repository": {"uri": mongo_uri, "database": database},
        "eventbus": {"adapter": "redis", "prefix": prefix, "read_block": 0.05},
        "queue": {"schedule_interval": 0.05, "poll_interval": 0.2, "heartbeat_interval": 0.2},
        "outbox": {"poll_interval": 0.05},
    }
    ran: list[str] = []
    events: list[str] = []
    plugins = ("otel", "errors", "redis", "repository", "eventbus", "outbox", "queue", Members)
    try:
        async with boot_kernel(*plugins, config=config) as kernel:
            tracing, manager = kernel.get(Tracing), kernel.get(QueueManager)

            async def on_created(data: dict[str, Any], meta: EventMetadata) -> None:
                events.append(meta.event_id)
                await manager.add_job(queue, "welcome", data, job_id=f"welcome-{data['id']}")

            async def welcome(job: JobContext) -> None:
                ran.append(job.id)

            kernel.get(EventBus).subscribe("member.created", on_created, group=f"{prefix}-welcome")
            await manager.create_worker(queue, welcome)
            await _post(KernelApp(kernel))
            await wait_until(lambda: ran, timeout=30, what="the welcome job ran")
            await wait_until(
                lambda: any(
                    s.kind is SpanKind.CONSUMER and s.name == f"process {queue}"
                    for s in tracing.memory.get_finished_spans()
                ),
                what="the job's span ended",
            )
            spans = tracing.memory.get_finished_spans()
            repositories = kernel.get(RepositoryManager)
            stored = await repositories.outbox.get(events[0])
            await repositories.client.drop_database(database)
    finally:
        client = connect(redis_url)
        for pattern in (
            f"{prefix}:*",
            f"{{{prefix}*",
            f"saq:{queue_tag(queue)}:*",
            f"saq:job:{queue_tag(queue)}:*",
        ):
            keys = [k async for k in client.scan_iter(match=pattern, count=1000)]
            if keys:
                await client.delete(*keys)
        await client.srem(QUEUES_KEY, queue)  # type: ignore[misc]  # (the client type spans sync and async)
        await client.aclose()
    print(render(spans, queue))  # the tree docs/plugins/otel.md shows (pytest -s)
    by_name = {s.name: s for s in spans}
    server = by_name["POST /members"]
    wanted = ["POST /members", "create members", "publish member.created", "process member.created"]
    wanted += [f"create {queue}", f"process {queue}"]
    assert set(wanted) <= set(by_name), sorted(by_name)
    trace_id = server.context.trace_id
    assert {format(by_name[n].context.trace_id, "032x") for n in wanted} == {format(trace_id, "032x")}
    assert by_name["create members"].parent.span_id == server.context.span_id  # type: ignore[union-attr]
    # the outbox entry kept the request's traceparent: the relay's publish is a child of the request
    assert by_name["publish member.created"].parent.span_id == server.context.span_id  # type: ignore[union-attr]
    assert stored is not None and stored.traceparent is not None
    assert stored.traceparent.split("-")[1:3] == [
        format(trace_id, "032x"),
        format(server.context.span_id, "016x"),
    ]
    consumer = by_name["process member.created"]
    assert consumer.parent.span_id == by_name["publish member.created"].context.span_id  # type: ignore[union-attr]
    assert by_name[f"create {queue}"].parent.span_id == consumer.context.span_id  # type: ignore[union-attr]
    job = by_name[f"process {queue}"]
    assert job.parent.span_id == by_name[f"create {queue}"].context.span_id  # type: ignore[union-attr]
