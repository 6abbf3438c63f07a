"""What the redis plugin shows for a URL (a unique module name: all plugins' tests share sys.modules)."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Mapping
from pathlib import Path

from kernel_redis import RedisConfig, check_url, redact_url

from kernel._config import structure


def messages(url: str) -> list[str]:
    """Every message the plugin can show for ``url``: the validator's and the config errors."""
    out = [redact_url(url)]
    try:
        check_url(url)
    except ValueError as exc:
        out.append(str(exc))
    _cfg, errors = structure({"url": url}, RedisConfig, "plugins.redis")
    return out + errors


def kernel_check(config: Path, env: Mapping[str, str] | None = None) -> tuple[int, str]:
    """``python -m kernel --config <config> check`` in a child process that sees none of this
    process's ``KERNEL*`` variables, only ``env``'s; its exit code and output (stdout + stderr)."""
    child_env = {k: v for k, v in os.environ.items() if not k.startswith("KERNEL")}
    result = subprocess.run(
        [sys.executable, "-m", "kernel", "--config", str(config), "check"],
        env={**child_env, **(env or {})},
        capture_output=True,
        text=True,
        timeout=60,
    )
    return result.returncode, result.stdout + result.stderr
