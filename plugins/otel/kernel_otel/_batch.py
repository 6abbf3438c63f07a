"""The SDK's ``BatchSpanProcessor`` with a cheaper way into its queue.

Its ``on_end`` reads the span's context through two properties and calls ``os.getpid()`` per
span (a system call) to notice a fork. The SDK's batch machinery also re-arms itself in a forked
child through ``os.register_at_fork``; where that exists, :class:`KernelBatchSpanProcessor` leaves
fork handling to it and queues a sampled span with the same steps as ``emit`` minus the pid test.
Everything else -- the bounded queue and its drop counting and warning, the worker thread and
schedule delay, the export batch size, ``force_flush``, ``shutdown``, the ``OTEL_BSP_*``
variables, the processor metrics -- is the SDK's own.

A :class:`~kernel_otel._lean.LeanSpan` ending when this is the provider's only processor is
queued without the ``ReadableSpan`` snapshot the SDK hands processors (an ended span no longer
changes: the exporter reads the same fields). With the plugin's OTLP exporter it is queued as
the bytes the exporter sends for it (:class:`~kernel_otel._otlp.EncodedSpan`), encoded where it
ended: a queue of span objects kept the garbage collector busy (see that class).
"""

from __future__ import annotations

import os
from collections.abc import Callable

from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExporter

from ._spans import CONTEXT_IS_TUPLE

_lean_type: type | None = None
"""``kernel_otel._lean.LeanSpan`` (set when that module loads: it imports this one)."""

_BATCH_FIELDS = ("_queue", "_shutdown", "_max_queue_size", "_max_export_batch_size", "_worker_awaken")


def _does_nothing(self: object, span: object, parent_context: object = None) -> None:
    pass


_QUIET_START = BatchSpanProcessor.on_start.__code__.co_code == _does_nothing.__code__.co_code
"""Whether the SDK's ``BatchSpanProcessor.on_start`` does nothing (a span's start may skip it)."""


class KernelBatchSpanProcessor(BatchSpanProcessor):
    """``BatchSpanProcessor(exporter, ...)``, queueing each ended sampled span more cheaply.

    :attr:`fast` is False when the SDK's batch internals differ from the ones this was written
    against (or its ``on_start`` does something), or the platform has no ``os.register_at_fork``:
    then ``on_end`` is the SDK's, and spans call ``on_start``.
    """

    def __init__(self, span_exporter: SpanExporter, **options: float | int | None) -> None:
        super().__init__(span_exporter, **options)  # type: ignore[arg-type]
        batch = self._batch_processor
        self.fast = (
            _QUIET_START
            and hasattr(os, "register_at_fork")
            and all(hasattr(batch, name) for name in _BATCH_FIELDS)
        )
        self.exporter = span_exporter
        queue_encoder = getattr(span_exporter, "queue_encoder", None)
        self.encode: Callable[[ReadableSpan], object] | None = (
            queue_encoder() if self.fast and queue_encoder is not None else None
        )
        """What an ended lean span is queued as (the exporter's ``queue_encoder()``), or None: itself."""

    def on_end(self, span: ReadableSpan) -> None:
        """Queue ``span`` for export if sampled (the SDK's steps, without its per-span ``os.getpid()``)."""
        if not self.fast:
            super().on_end(span)
            return
        context = span._context
        if context is None or not (context[3] if CONTEXT_IS_TUPLE else context.trace_flags) & 1:  # SAMPLED
            return
        self.enqueue(span, self.encode if type(span) is _lean_type else None)

    def enqueue(self, span: ReadableSpan, encode: Callable[[ReadableSpan], object] | None) -> None:
        """Queue ended sampled ``span`` (as ``encode(span)`` when given), or drop it the SDK's way
        when the queue is full or shut down."""
        batch = self._batch_processor
        queue = batch._queue
        if batch._shutdown or len(queue) >= batch._max_queue_size:
            batch.emit(span)  # the SDK's way: logged, counted as dropped
            return
        if encode is not None:
            try:  # a span it cannot encode is queued itself: the exporter then reports it
                queue.appendleft(encode(span) or span)
            except Exception:
                queue.appendleft(span)
        else:
            queue.appendleft(span)
        if len(queue) >= batch._max_export_batch_size:
            awaken = batch._worker_awaken
            if not awaken.is_set():
                awaken.set()
