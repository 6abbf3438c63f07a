"""milo-kernel: a minimal, plugin-based application kernel for Python services."""

from ._asgi import KernelApp, LifespanMiddleware, kernel_lifespan
from ._child import ChildServer, die_with_parent, free_port
from ._config import ENV_PREFIX, KernelSettings, recommended
from ._errors import (
    BootError,
    ConfigError,
    DependencyError,
    DuplicateServiceError,
    KernelError,
    PluginLoadError,
    ServiceNotFoundError,
    ShutdownError,
    TeardownError,
)
from ._health import CheckResult, HealthReport
from ._kernel import Kernel, LoadedPlugin
from ._logging import (
    configure_logging,
    get_trace_id,
    new_trace_id,
    reset_trace_id,
    set_trace_id,
    trace_context,
)
from ._plugin import (
    ENTRY_POINT_GROUP,
    ASGIApp,
    CheckIssue,
    Command,
    HealthCheck,
    Message,
    Middleware,
    NoConfig,
    Plugin,
    PluginContext,
    Receive,
    Route,
    Scope,
    Send,
    hookimpl,
)
from ._registry import Registry
from ._secret import Secret, redact_url

__version__ = "0.1.0"

__all__ = [
    "ASGIApp",
    "BootError",
    "CheckIssue",
    "CheckResult",
    "ChildServer",
    "Command",
    "ConfigError",
    "DependencyError",
    "DuplicateServiceError",
    "ENTRY_POINT_GROUP",
    "ENV_PREFIX",
    "HealthCheck",
    "HealthReport",
    "Kernel",
    "KernelApp",
    "KernelError",
    "KernelSettings",
    "LifespanMiddleware",
    "LoadedPlugin",
    "Message",
    "Middleware",
    "NoConfig",
    "Plugin",
    "PluginContext",
    "PluginLoadError",
    "Receive",
    "Registry",
    "Route",
    "Scope",
    "Secret",
    "Send",
    "ServiceNotFoundError",
    "ShutdownError",
    "TeardownError",
    "configure_logging",
    "die_with_parent",
    "free_port",
    "get_trace_id",
    "hookimpl",
    "kernel_lifespan",
    "new_trace_id",
    "recommended",
    "redact_url",
    "reset_trace_id",
    "set_trace_id",
    "trace_context",
]
