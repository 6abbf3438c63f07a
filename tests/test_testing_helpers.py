"""kernel.testing helpers: factory keywords; a child outliving its parent fails the check and is killed."""

from __future__ import annotations

import os
import re
import sys

import pytest

from kernel.testing import (
    assert_dies_with_parent,
    boot_kernel,
    make_kernel,
    poll_until,
    process_alive,
    wait_gone,
)

# A parent whose child has no parent-death signal: the child survives a SIGKILLed parent.
_ORPHANING_PARENT = """
import subprocess, sys, time
child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(120)"])
print(child.pid, flush=True)
time.sleep(120)
"""


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")
def test_a_surviving_child_fails_the_check_and_is_killed() -> None:
    with pytest.raises(AssertionError, match=r"the sleeper \((\d+)\) outlived its SIGKILLed parent") as info:
        assert_dies_with_parent(_ORPHANING_PARENT, timeout=1.0, what="the sleeper")
    match = re.search(r"\((\d+)\)", str(info.value))
    assert match is not None
    assert wait_gone(int(match[1])), "the harness leaked the surviving child"


def test_process_alive() -> None:
    assert process_alive(os.getpid())
    assert not process_alive(2**22 + 12345)  # above Linux's pid_max


def test_make_kernel_rejects_a_misspelt_keyword() -> None:
    with pytest.raises(TypeError, match="unexpected keyword arguments: confg"):
        make_kernel(confg={})  # type: ignore[call-arg]


@pytest.mark.anyio
async def test_boot_kernel_passes_every_keyword_on() -> None:
    async with boot_kernel(settings={"log_level": "DEBUG"}, processes=3, environ={}) as kernel:
        assert kernel.settings.log_level == "DEBUG"


def test_poll_until_returns_the_first_truthy_value_or_fails_naming_what() -> None:
    answers = iter([None, 0, "ready"])
    assert poll_until(lambda: next(answers), 5, interval=0.001) == "ready"
    with pytest.raises(AssertionError, match=r"timed out after 0.05s waiting for the moon"):
        poll_until(lambda: None, 0.05, interval=0.01, what="the moon")
