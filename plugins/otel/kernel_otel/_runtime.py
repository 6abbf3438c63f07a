"""The current OpenTelemetry context's get, attach and reset, as direct as the runtime context allows."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from opentelemetry import context as otel_context
from opentelemetry.context.contextvars_context import ContextVarsRuntimeContext

current: Callable[[], otel_context.Context]
attach: Callable[[otel_context.Context], Any]
reset: Callable[[Any], None]
_runtime = otel_context._RUNTIME_CONTEXT
if type(_runtime) is ContextVarsRuntimeContext:  # the default: its variable's own methods, no wrapper calls
    current = _runtime._current_context.get
    attach = _runtime._current_context.set
    reset = _runtime._current_context.reset
else:  # another runtime context (OTEL_PYTHON_CONTEXT): the API's functions
    current = otel_context.get_current
    attach = otel_context.attach
    reset = otel_context.detach
