"""milo-kernel ``console`` plugin: an operator console (server-rendered HTML) for plugins, health,
queues, events and the dead-letter queue, cache and repositories."""

from __future__ import annotations

from typing import TYPE_CHECKING

from kernel import lazy_exports

if TYPE_CHECKING:  # what type checkers and IDEs read
    from ._app import ConsoleApp as ConsoleApp
    from ._config import ConsoleConfig as ConsoleConfig
    from ._plugin import ConsolePlugin as ConsolePlugin
else:  # PEP 562: a submodule is imported on first use of one of its names
    _EXPORTS = {  # submodule -> the public names it defines
        "._app": ["ConsoleApp"],
        "._config": ["ConsoleConfig"],
        "._plugin": ["ConsolePlugin"],
    }
    __getattr__, __dir__, __all__ = lazy_exports(__name__, _EXPORTS)
