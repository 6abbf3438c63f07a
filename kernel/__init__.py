"""milo-kernel: a minimal, plugin-based application kernel for Python services.

This namespace is what a plugin author needs. The rest is in subpackages and modules:
``kernel.web`` (ASGI app, lifespan helpers, ``serve``), ``kernel.process`` (child servers),
``kernel.logging`` (logging set-up, trace ids), ``kernel.health`` (health reports),
``kernel.config`` (kernel settings, loaded plugins), ``kernel.hookspecs``, ``kernel.testing``.
"""

from importlib import metadata as _metadata

from ._config import recommended
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
from ._importing import lazy_exports
from ._kernel import Kernel
from ._plugin import (
    CheckIssue,
    Command,
    HealthCheck,
    Middleware,
    NoConfig,
    Plugin,
    PluginContext,
    Route,
    hookimpl,
)
from ._registry import Registry
from ._secret import Secret, redact_url

try:  # one source: pyproject.toml, read from the installed distribution's metadata
    __version__ = _metadata.version("milo-kernel")
except _metadata.PackageNotFoundError:  # imported from a source tree that was never installed
    __version__ = "0+unknown"

__all__ = [
    "BootError",
    "CheckIssue",
    "Command",
    "ConfigError",
    "DependencyError",
    "DuplicateServiceError",
    "HealthCheck",
    "Kernel",
    "KernelError",
    "Middleware",
    "NoConfig",
    "Plugin",
    "PluginContext",
    "PluginLoadError",
    "Registry",
    "Route",
    "Secret",
    "ServiceNotFoundError",
    "ShutdownError",
    "TeardownError",
    "hookimpl",
    "lazy_exports",
    "recommended",
    "redact_url",
]
