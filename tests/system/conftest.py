"""Fixtures of the system tests: the example service as real processes on private servers."""

from __future__ import annotations

import socket
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[2]
if str(ROOT) not in sys.path:  # `examples` is a directory of the repository, not an installed package
    sys.path.insert(0, str(ROOT))

# The system suite needs every plugin and uvicorn (tox -e system installs them); a missing
# one is an import error here, never a silently skipped suite.
from examples.service.run import Stack  # noqa: E402


def free_port_pair() -> int:
    """A loopback port ``p`` with ``p + 1`` free too (web process i listens on ``p + i``)."""
    for _ in range(50):
        with socket.socket() as a:
            a.bind(("127.0.0.1", 0))
            port = int(a.getsockname()[1])
            try:
                with socket.socket() as b:
                    b.bind(("127.0.0.1", port + 1))
            except OSError:
                continue
            return port
    raise RuntimeError("no two consecutive free loopback ports")


@pytest.fixture
def port_pair() -> int:
    return free_port_pair()


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture
def make_stack(tmp_path: Path) -> Iterator[Callable[..., Stack]]:
    """Build and start a :class:`Stack` with JSON logs in ``tmp_path``; stopped at teardown."""
    stacks: list[Stack] = []

    def make(**kwargs: Any) -> Stack:
        env = {"KERNEL__KERNEL__LOG_FORMAT": "json", **kwargs.pop("env", {})}
        stack = Stack(port=free_port_pair(), log_dir=tmp_path, env=env, **kwargs)
        stacks.append(stack)
        stack.start()
        return stack

    yield make
    for stack in stacks:
        stack.stop(grace=10)
