"""Process checks for tests of private servers: is a pid alive, does a child die with its parent.

The test side of this subpackage's promise (children never outlive their parent); public as
``kernel.testing.process_alive``, ``wait_gone``, ``assert_dies_with_parent``,
``assert_startup_times_out`` and ``kill_left_running``.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Iterable, Mapping
from typing import Any

from ._child import ChildServer


def process_alive(pid: int) -> bool:
    """Whether ``pid`` is a running process (a zombie, exited but not yet reaped, counts as gone)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's process
        return True
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii", errors="replace") as stat:
            return stat.read().rpartition(") ")[2][:1] != "Z"
    except OSError:  # reaped just now on Linux; elsewhere there is no /proc and kill(0) answered
        return not sys.platform.startswith("linux")


def wait_gone(pid: int, timeout: float = 10.0) -> bool:
    """Poll until ``pid`` is gone (True) or ``timeout`` seconds pass (False)."""
    deadline = time.monotonic() + timeout
    while process_alive(pid):
        if time.monotonic() >= deadline:
            return False
        time.sleep(0.02)
    return True


def assert_dies_with_parent(
    script: str, *, env: Mapping[str, str] | None = None, timeout: float = 10.0, what: str = "the child"
) -> None:
    """Run ``script`` in a new Python process, SIGKILL it, and assert its child process dies too.

    The script starts the child (a private server) and prints the child's pid as the first word
    of its first stdout line, then waits. The check is that the child is gone within ``timeout``
    seconds after the parent is killed without any chance to clean up (Linux parent-death
    signal). A child that outlives it is killed before the assertion fails, so no test leaks one.
    """
    parent = subprocess.Popen(
        [sys.executable, "-c", script],
        stdout=subprocess.PIPE,
        text=True,
        env=dict(env) if env is not None else None,
    )
    child: int | None = None
    try:
        assert parent.stdout is not None
        line = parent.stdout.readline()
        assert line.split(), f"the parent process exited before printing {what}'s pid"
        child = int(line.split()[0])
        assert process_alive(child), f"{what} ({child}) was not running"
        parent.send_signal(signal.SIGKILL)
        parent.wait(timeout)
        assert wait_gone(child, timeout), f"{what} ({child}) outlived its SIGKILLed parent"
        child = None
    finally:
        if parent.poll() is None:
            parent.kill()
            parent.wait()
        if parent.stdout is not None:
            parent.stdout.close()
        if child is not None and process_alive(child):
            os.kill(child, signal.SIGKILL)


def assert_startup_times_out(server: ChildServer, match: str) -> None:
    """Spawn ``server`` (whose child never answers its probe) and assert that ``wait_ready`` raises
    the server's :attr:`~ChildServer.error` with a message matching the regex ``match`` (e.g.
    ``did not answer PING within 0\\.3s``) and that the child is gone when it returns. Closes ``server``.
    """
    try:
        server.spawn()
        pid = server.pid
        assert pid is not None, "the child did not start"
        message = ""
        try:
            server.wait_ready()
        except server.error as exc:
            message = str(exc)
        else:
            raise AssertionError(f"{server!r} answered although it should time out")
        assert re.search(match, message), f"{match!r} not found in {message!r}"
        assert not server.running and not process_alive(pid), f"the child ({pid}) outlived the timeout"
    finally:
        server.close()


def kill_left_running(procs: Iterable[subprocess.Popen[Any]], timeout: float = 10.0) -> None:
    """SIGKILL and reap each of ``procs`` still running (a fixture's teardown of the processes a test
    started); waits at most ``timeout`` seconds for each."""
    for proc in procs:
        if proc.poll() is None:
            proc.kill()
            proc.wait(timeout)
