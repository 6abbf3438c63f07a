"""The plugin's span ids: random, except a root span may adopt a kernel trace id (:func:`adopting`)."""

from __future__ import annotations

import contextvars

from opentelemetry.sdk.trace.id_generator import RandomIdGenerator

# A trace id the next root span takes instead of a random one: set around starting a span for work
# that already has a kernel trace id (an event or job published outside any span), so that the span's
# trace id and the id in its metadata, logs and dead letters are one.
adopt: contextvars.ContextVar[int] = contextvars.ContextVar("kernel_otel_adopt", default=0)


class KernelIdGenerator(RandomIdGenerator):
    """Random ids, except a root span started under ``adopting`` takes the given trace id."""

    def generate_trace_id(self) -> int:
        """The adopted trace id (see ``adopt``) if one is set, else a random one."""
        return adopt.get() or super().generate_trace_id()
