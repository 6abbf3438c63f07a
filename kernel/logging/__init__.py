"""Logging set-up and the trace id carried by each request, event and job.

A module of its own so that ``kernel`` stays what a plugin author needs:
``from kernel.logging import get_trace_id, trace_context``.
"""

from ._setup import (
    FINISHED,
    TraceSlot,
    configure_logging,
    get_trace_id,
    get_trace_slot,
    new_trace_id,
    reset_trace_id,
    set_trace_id,
    set_trace_slot,
    trace_context,
)

__all__ = [
    "FINISHED",
    "TraceSlot",
    "configure_logging",
    "get_trace_id",
    "get_trace_slot",
    "new_trace_id",
    "reset_trace_id",
    "set_trace_id",
    "set_trace_slot",
    "trace_context",
]
