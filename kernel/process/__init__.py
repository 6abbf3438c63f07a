"""Process supervision: private server child processes that never outlive their parent.

``ChildServer`` runs a server (embedded Redis, MongoDB, ...) on a loopback port;
``die_with_parent`` is the Linux parent-death hook it spawns children with.
"""

from ._child import ChildServer
from ._os import die_with_parent, free_port

__all__ = ["ChildServer", "die_with_parent", "free_port"]
