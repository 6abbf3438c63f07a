"""milo-kernel otel plugin: OpenTelemetry traces for HTTP requests and the event bus.

Importing this package does not import ``opentelemetry``; the SDK loads when the plugin boots.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from kernel import lazy_exports

if TYPE_CHECKING:  # what type checkers and IDEs read
    from ._config import OtelConfig as OtelConfig
    from ._config import OtelSettingError as OtelSettingError
    from ._config import Settings as Settings
    from ._config import resolve as resolve
    from ._eventbus import BusTracing as BusTracing
    from ._http import TracingMiddleware as TracingMiddleware
    from ._plugin import OtelPlugin as OtelPlugin
    from ._sdk import Tracing as Tracing
else:  # PEP 562: a submodule is imported on first use of one of its names
    _EXPORTS = {  # submodule -> the public names it defines
        "._config": ["OtelConfig", "OtelSettingError", "Settings", "resolve"],
        "._eventbus": ["BusTracing"],
        "._http": ["TracingMiddleware"],
        "._plugin": ["OtelPlugin"],
        "._sdk": ["Tracing"],
    }
    __getattr__, __dir__, __all__ = lazy_exports(__name__, _EXPORTS)
