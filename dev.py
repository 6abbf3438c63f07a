#!/usr/bin/env python3
"""Developer entry point: ``python3 dev.py run`` and ``python3 dev.py test`` on a fresh machine.

Needs only Python >= 3.11 with pip and venv. Creates ``.venv`` in the project,
installs the kernel and every plugin under ``plugins/`` (editable, with their test
extras) and runs the requested job inside it. Reinstalls when a ``pyproject.toml``
changes.
"""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent
VENV = Path(os.environ.get("KERNEL_DEV_VENV", ROOT / ".venv"))
BIN = VENV / ("Scripts" if os.name == "nt" else "bin")
PY = BIN / "python"
STAMP = VENV / ".milo-kernel-installed"


def plugin_dirs() -> list[Path]:
    return sorted(p.parent for p in (ROOT / "plugins").glob("*/pyproject.toml"))


def _extras(project: Path) -> list[str]:
    """Every optional-dependency group of a plugin (its test and embedded-server extras)."""
    import tomllib

    data = tomllib.loads((project / "pyproject.toml").read_text())
    return sorted(data.get("project", {}).get("optional-dependencies", {}))


def _fingerprint() -> str:
    h = hashlib.sha256()
    for path in [ROOT / "pyproject.toml", *(p / "pyproject.toml" for p in plugin_dirs())]:
        h.update(path.read_bytes())
    return h.hexdigest()


def sh(*cmd: str | Path, env: dict[str, str] | None = None, check: bool = True) -> int:
    print("+", " ".join(str(c) for c in cmd), flush=True)
    return subprocess.run([str(c) for c in cmd], cwd=ROOT, env=env, check=check).returncode


def setup(force: bool = False) -> None:
    """Create the venv and install everything (skipped when nothing changed)."""
    if sys.version_info < (3, 11):  # noqa: UP036 - this script may be run by an older python3
        sys.exit(f"milo-kernel needs Python >= 3.11, this is {sys.version.split()[0]}")
    if not PY.exists():
        sh(sys.executable, "-m", "venv", VENV)
    fingerprint = _fingerprint()
    if not force and STAMP.exists() and STAMP.read_text() == fingerprint:
        return
    sh(PY, "-m", "pip", "install", "--quiet", "--disable-pip-version-check", "--upgrade", "pip")
    targets: list[str] = ["-e", f"{ROOT}[serve,dev,bench]"]
    for plugin in plugin_dirs():
        extras = ",".join(_extras(plugin))
        targets += ["-e", f"{plugin}[{extras}]" if extras else str(plugin)]
    sh(PY, "-m", "pip", "install", "--quiet", "--disable-pip-version-check", *targets)
    STAMP.write_text(fingerprint)


def venv_env() -> dict[str, str]:
    env = dict(os.environ)
    env["PATH"] = f"{BIN}{os.pathsep}{env.get('PATH', '')}"
    env["VIRTUAL_ENV"] = str(VENV)
    env.pop("PYTHONHOME", None)
    return env


def cmd_run(args: list[str]) -> int:
    """The main job on embedded defaults: the example service, one web and one worker process.

    The launcher starts one embedded Redis and one MongoDB wire server, then the web
    process (port 4000) and the worker; flags: ``--web N --workers M --port P``.
    """
    setup()
    config = ROOT / "examples" / "kernel.toml"
    env = venv_env()
    sh(BIN / "kernel", "--config", config, "plugins", env=env)
    os.chdir(ROOT)
    os.execve(PY, [str(PY), "-m", "examples.service.run", *args], env)


def cmd_test(args: list[str]) -> int:
    """All tests: every tox env (kernel, each plugin in isolation, system, lint, typing).

    The envs run two at a time (``KERNEL_TEST_JOBS`` sets how many; 1 runs them one after
    another with their output live): most of an env's time is waiting on servers and timers, so
    two lanes halve CI's wall time on a 2-core machine. A failed env's output is printed in full.
    """
    setup()
    if os.environ.get("CI"):  # CI must run every Python version; elsewhere a missing one is skipped
        args = ["--skip-missing-interpreters", "false", *args]
    jobs = int(os.environ.get("KERNEL_TEST_JOBS", "2"))
    if jobs <= 1:
        return sh(PY, "-m", "tox", "run", *args, env=venv_env(), check=False)
    parallel = ["run-parallel", "--parallel", str(jobs), "--parallel-no-spinner"]
    return sh(PY, "-m", "tox", *parallel, *args, env=venv_env(), check=False)


def cmd_fast(args: list[str]) -> int:
    """Every test in the one dev venv (quicker than tox; no isolation), then lint and types."""
    setup()
    env = venv_env()
    code = sh(PY, ROOT / "dev.py", "pytest", *args, env=env, check=False)
    if code:
        return code
    code = sh(PY, "-m", "ruff", "check", ".", env=env, check=False)
    if code:
        return code
    code = sh(PY, "-m", "ruff", "format", "--check", ".", env=env, check=False)
    if code:
        return code
    code = sh(PY, "-m", "mypy", "kernel", env=env, check=False)
    if code:
        return code
    return sh(PY, ROOT / "dev.py", "mypy-plugins", env=env, check=False)


def cmd_pytest(args: list[str]) -> int:
    """pytest with this interpreter; "no tests collected" (exit 5) is reported, not failed."""
    code = subprocess.run([sys.executable, "-m", "pytest", *args], cwd=ROOT).returncode
    if code == 5:
        print("dev.py: pytest collected no tests here (exit 5); not counted as a failure", flush=True)
        return 0
    return code


def plugin_packages() -> list[str]:
    """The import package of every plugin directory (hatch's wheel ``packages``, else ``kernel_<dir>``)."""
    import tomllib

    names: list[str] = []
    for plugin in plugin_dirs():
        data = tomllib.loads((plugin / "pyproject.toml").read_text())
        wheel = data.get("tool", {}).get("hatch", {}).get("build", {}).get("targets", {}).get("wheel", {})
        names += [Path(p).name for p in wheel.get("packages", [f"kernel_{plugin.name}"])]
    return names


def cmd_mypy_plugins(args: list[str]) -> int:
    """``mypy -p <package>`` for every plugin directory, with this interpreter (the typing env)."""
    packages = [arg for name in plugin_packages() for arg in ("-p", name)]
    return subprocess.run([sys.executable, "-m", "mypy", *args, *packages], cwd=ROOT).returncode


def cmd_bench(args: list[str]) -> int:
    """Side-by-side benchmarks (``--quick`` by default)."""
    setup()
    return sh(PY, "-m", "benchmarks", *(args or ["--quick"]), env=venv_env(), check=False)


COMMANDS = {"run": cmd_run, "test": cmd_test, "fast": cmd_fast, "bench": cmd_bench}


def main() -> int:
    if len(sys.argv) < 2 or sys.argv[1] not in (*COMMANDS, "setup", "pytest", "mypy-plugins"):
        print(__doc__)
        print("commands: setup | " + " | ".join(f"{n} ({f.__doc__})" for n, f in COMMANDS.items()))
        return 2
    if sys.argv[1] == "setup":
        setup(force=True)
        return 0
    if sys.argv[1] == "pytest":  # used inside tox envs: no setup, this interpreter
        return cmd_pytest(sys.argv[2:])
    if sys.argv[1] == "mypy-plugins":  # used by the typing env: this interpreter
        return cmd_mypy_plugins(sys.argv[2:])
    return COMMANDS[sys.argv[1]](sys.argv[2:])


if __name__ == "__main__":
    raise SystemExit(main())
