"""Process supervision: private server child processes that never outlive their parent.

``ChildServer`` runs a server (embedded Redis, MongoDB, ...) on a loopback port;
``die_with_parent`` is the Linux parent-death hook it spawns children with, ``terminate`` how it
stops one; ``ProcessHandle`` is the ``with`` protocol (start on entry, close on exit) of servers
and of groups of them.
"""

from ._child import ChildServer, ProcessHandle
from ._os import die_with_parent, free_port, terminate

__all__ = ["ChildServer", "ProcessHandle", "die_with_parent", "free_port", "terminate"]
