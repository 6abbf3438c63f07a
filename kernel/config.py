"""The kernel's own settings and what it loaded, for code that inspects a kernel.

``KernelSettings`` is the ``[kernel]`` table (``ctx.settings`` in a plugin), ``LoadedPlugin``
one enabled plugin with its validated config (``Kernel.plugin(name)``), ``ENV_PREFIX`` the
prefix of environment overrides and ``ENTRY_POINT_GROUP`` the group plugins register in.
``import_object`` imports a ``"module:attribute"`` setting (one rule and message for all of them).
"""

from ._config import ENV_PREFIX, KernelSettings
from ._importing import import_object
from ._kernel import LoadedPlugin
from ._plugin import ENTRY_POINT_GROUP

__all__ = ["ENTRY_POINT_GROUP", "ENV_PREFIX", "KernelSettings", "LoadedPlugin", "import_object"]
