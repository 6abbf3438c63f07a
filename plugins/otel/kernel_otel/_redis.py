"""Redis spans: one CLIENT span per command or pipeline, through kernel_redis's connection observer.

Spans are made only *inside* a recording span (a request, an event handler, a job): a command
outside any trace (a consumer loop's blocking read, a relay's poll) starts no trace of its own.
No argument is recorded (keys and values carry personal data).
"""

from __future__ import annotations

from collections.abc import Sequence

from kernel_redis import CommandEnded, RedisEndpoint
from opentelemetry import trace
from opentelemetry.trace import SpanKind
from opentelemetry.util.types import AttributeValue

from ._spans import record_error

REDIS = "redis"
"""``db.system.name`` of Redis spans."""


class RedisTracing:
    """A :class:`kernel_redis.RedisObserver`: one CLIENT span per command (``GET``) or pipeline
    (``BATCH INCRBY``, ``BATCH``) with the Redis semantic-convention attributes: ``db.system.name``,
    ``db.operation.name``, ``db.namespace`` (the database index), ``server.address``/``server.port``
    when the client knows them, ``db.operation.batch.size`` for pipelines. No ``db.query.text``."""

    def __init__(self, tracer: trace.Tracer) -> None:
        self._tracer = tracer

    def _start(self, operation: str, endpoint: RedisEndpoint, size: int) -> CommandEnded:
        attributes: dict[str, AttributeValue] = {
            "db.system.name": REDIS,
            "db.operation.name": operation,
            "db.namespace": str(endpoint.db),
        }
        if endpoint.address is not None:
            attributes["server.address"] = endpoint.address
        if endpoint.port is not None:
            attributes["server.port"] = endpoint.port
        if size > 1:
            attributes["db.operation.batch.size"] = size
        span = self._tracer.start_span(operation, kind=SpanKind.CLIENT, attributes=attributes)

        def ended(error: BaseException | None) -> None:
            if error is not None:
                record_error(span, error)
            span.end()

        return ended

    def command(self, name: str, endpoint: RedisEndpoint) -> CommandEnded | None:
        """A CLIENT span for one command inside a recording span (else None); returns what ends it."""
        if not trace.get_current_span().is_recording():
            return None
        return self._start(name, endpoint, 1)

    def pipeline(self, names: Sequence[str], size: int, endpoint: RedisEndpoint) -> CommandEnded | None:
        """One CLIENT span for a pipeline (``BATCH <command>``, ``BATCH`` when mixed); as :meth:`command`."""
        if not trace.get_current_span().is_recording():
            return None
        kinds = set(names)
        operation = f"BATCH {names[0]}" if len(kinds) == 1 else "BATCH"
        return self._start(operation, endpoint, size)
