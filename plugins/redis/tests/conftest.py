"""Fixtures for the redis plugin's tests: a private server per session (or ``$REDIS_URL``)."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
from kernel_redis.testing import redis_keys_left_behind, redis_server, redis_url  # noqa: F401

TESTS_DIR = Path(__file__).parent
if str(TESTS_DIR) not in sys.path:  # redis_messages.py (a unique name: all plugins' tests share sys.modules)
    sys.path.insert(0, str(TESTS_DIR))


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"
