"""OS helpers for child processes: a free loopback port, Linux's parent-death signal, stopping one."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
from collections.abc import Callable
from typing import Any

_PR_SET_PDEATHSIG = 1


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def terminate(proc: subprocess.Popen[Any], timeout: float = 10.0) -> int:
    """SIGTERM ``proc`` if it still runs (SIGKILL after ``timeout`` seconds), reap it; its exit code."""
    if proc.poll() is None:
        proc.terminate()
        try:
            return proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
    return proc.wait()


def die_with_parent() -> Callable[[], None] | None:
    """A ``preexec_fn`` asking Linux to SIGTERM the child when its parent dies (even by SIGKILL).

    The signal fires when the *thread* that forked exits, so spawn from a long-lived
    thread (the event loop's or the main thread), never from a worker pool. ``None``
    where the mechanism does not exist (not Linux).
    """
    if not sys.platform.startswith("linux"):
        return None
    import ctypes  # only where prctl exists

    try:
        prctl = ctypes.CDLL(None, use_errno=True).prctl  # resolved before fork: nothing to load in the child
    except (OSError, AttributeError):
        return None
    parent = os.getpid()

    def preexec() -> None:
        prctl(_PR_SET_PDEATHSIG, int(signal.SIGTERM), 0, 0, 0)
        # The parent may have died between fork and prctl: then no signal would ever come.
        if os.getppid() != parent:
            os._exit(1)

    return preexec
