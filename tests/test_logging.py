"""Structured logs with a trace id; secrets never reach them."""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Iterator
from pathlib import Path

import anyio
import pytest

from kernel.logging import configure_logging, get_trace_id, reset_trace_id, set_trace_id, trace_context
from kernel.logging._setup import ConsoleFormatter, JsonFormatter, TraceIdFilter
from kernel.testing import boot_kernel


@pytest.fixture
def json_stream() -> Iterator[io.StringIO]:
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.addFilter(TraceIdFilter())
    handler.setFormatter(JsonFormatter())
    root = logging.getLogger()
    old_level = root.level
    root.addHandler(handler)
    root.setLevel(logging.DEBUG)
    yield stream
    root.removeHandler(handler)
    root.setLevel(old_level)


def test_json_lines_carry_trace_id_and_extras(json_stream: io.StringIO) -> None:
    with trace_context("abc123") as tid:
        assert get_trace_id() == tid == "abc123"
        logging.getLogger("app").info("user created", extra={"user_id": 7})
    assert get_trace_id() is None
    record = json.loads(json_stream.getvalue().splitlines()[-1])
    assert record["message"] == "user created"
    assert record["trace_id"] == "abc123"
    assert record["user_id"] == 7
    assert record["level"] == "info"


@pytest.mark.anyio
async def test_trace_id_follows_tasks_started_inside_the_context() -> None:
    seen: list[str | None] = []

    async def child() -> None:
        seen.append(get_trace_id())

    with trace_context() as tid:
        async with anyio.create_task_group() as tg:
            tg.start_soon(child)
    assert seen == [tid]
    token = set_trace_id("x")
    assert get_trace_id() == "x"
    reset_trace_id(token)
    assert get_trace_id() is None


@pytest.mark.anyio
async def test_secrets_in_config_never_reach_the_logs(
    json_stream: io.StringIO, test_plugins_path: Path
) -> None:
    # kt_alpha logs its whole config object at startup.
    async with boot_kernel("kt_alpha", config={"kt_alpha": {"token": "tok-SUPERSECRET"}}):
        pass
    logs = json_stream.getvalue()
    assert "alpha starting" in logs
    assert "SUPERSECRET" not in logs


def test_console_format_is_readable() -> None:
    record = logging.LogRecord("kernel", logging.INFO, __file__, 1, "hello %s", ("you",), None)
    record.trace_id = "0123456789abcdef"
    record.plugin = "cache"
    line = ConsoleFormatter().format(record)
    assert "INFO" in line and "hello you" in line and "plugin='cache'" in line
    assert "[trace=0123456789ab]" in line


def test_configure_logging_is_idempotent_and_picks_json_in_production() -> None:
    root = logging.getLogger()
    before = list(root.handlers)
    try:
        configure_logging("production")
        configure_logging("production")
        ours = [h for h in root.handlers if getattr(h, "_kernel_handler", False)]
        assert len(ours) == 1
        assert isinstance(ours[0].formatter, JsonFormatter)
        configure_logging("development")
        ours = [h for h in root.handlers if getattr(h, "_kernel_handler", False)]
        assert isinstance(ours[0].formatter, ConsoleFormatter)
    finally:
        for h in list(root.handlers):
            if h not in before:
                root.removeHandler(h)


def test_trace_ids_are_unique_across_threads_and_forked_children() -> None:
    import os
    import re
    import sys
    from concurrent.futures import ThreadPoolExecutor

    from kernel.logging import new_trace_id

    with ThreadPoolExecutor(4) as pool:  # ids are made in batches: no two callers share one
        ids = [
            i for batch in pool.map(lambda _: [new_trace_id() for _ in range(300)], range(4)) for i in batch
        ]
    assert len(set(ids)) == len(ids)
    assert all(re.fullmatch("[0-9a-f]{32}", i) for i in ids)
    if not hasattr(os, "fork") or sys.platform == "darwin":
        return
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: its first ids must not be the ones its parent still holds
        try:
            os.write(write, "".join(new_trace_id() for _ in range(3)).encode())
        finally:
            os._exit(0)
    os.close(write)
    with os.fdopen(read) as f:
        child = f.read()
    os.waitpid(pid, 0)
    parent = "".join(new_trace_id() for _ in range(3))
    assert len(child) == 96 and child != parent
