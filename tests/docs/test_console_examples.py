"""Every ```console block of the docs is run and its output compared: the docs cannot drift.

The convention (documented in docs/writing-a-plugin.md, "6. Document it"):

- A fenced block whose info string is ``console`` is a tested example. Lines starting with ``$ ``
  are commands (a trailing ``\\`` continues one on the next line); the lines after a command, up
  to the next command, are its expected output (stdout and stderr as a terminal shows them).
- A line that is exactly ``...`` in the expected output matches any number of lines (zero or more).
  Trailing spaces and trailing blank lines are ignored.
- A command shown without output must exit 0; its output is not compared. A command shown with
  output may exit with any status -- show it with ``$ echo $?`` when it matters.
- A block of any language whose first line is ``# <file name>`` (e.g. ``# kernel.toml``) defines
  that file: each console block runs in a fresh empty directory holding the files defined above
  it on the same page (the latest definition of a name wins) and a link to the repository's
  ``examples/``. The commands of a block run in one ``bash`` session, in order.
- ``kernel``, ``python`` and ``pip`` come from a throw-away virtual environment layered on the one
  running the tests, so ``pip install`` in an example changes nothing outside it. No ``KERNEL*``
  variable of the caller leaks in. Commands that start servers must use embedded defaults.
- Anything that cannot run like this (needs a real deployment, shows a synopsis) is not a console
  block: use ``bash`` (plain commands) or ``text`` (a session with ``$ `` prompts). Console means
  tested; prompts in any other kind of block are an error.

The other tests keep the rest of the docs honest without running it: every ``KERNEL__…``
variable and every ``[kernel]``/``[plugins.x]`` key in a TOML example must be a real setting,
every ``kernel CMD --option`` must be an option of that command, every ```python block
must parse and import only names that exist, and the ``| key | type | default | meaning |``
tables of configuration.md and each plugin page list exactly the real settings and defaults.
"""

from __future__ import annotations

import difflib
import functools
import json
import os
import re
import subprocess
import sys
import sysconfig
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import attrs
import pytest

ROOT = Path(__file__).resolve().parents[2]
PAGES = sorted([ROOT / "README.md", *(ROOT / "docs").rglob("*.md")])
# Every plugin of this repository (plugins/<name>/, entry point <name>), as tox.ini's toxfile.py finds them.
FIRST_PARTY = tuple(sorted(p.parent.name for p in (ROOT / "plugins").glob("*/pyproject.toml")))
COMMAND_TIMEOUT = 300.0  # a whole block; generous for a loaded 2-core CI machine

_FENCE = re.compile(r"^(?P<fence>`{3,}|~{3,})\s*(?P<info>[^`]*)$")
_FILE_COMMENT = re.compile(r"^#\s+(?P<name>[\w.-]+(?:/[\w.-]+)*\.\w+)\s*$")
_ENV_VAR = re.compile(r"\bKERNEL__[A-Z0-9]+(?:_[A-Z0-9]+)*(?:__[A-Z0-9]+(?:_[A-Z0-9]+)*)+\b")


@attrs.frozen
class Step:
    """One ``$ command`` of a console block and the output the page shows after it."""

    command: str
    line: int
    expected: tuple[str, ...]


@attrs.frozen
class ConsoleBlock:
    """A ```console block with the files its page defined above it."""

    page: Path
    line: int
    steps: tuple[Step, ...]
    files: tuple[tuple[str, str], ...]

    @property
    def id(self) -> str:
        return f"{_rel(self.page)}:{self.line}"


@attrs.frozen
class Fence:
    """A fenced code block: its language, first line number (of the fence) and body."""

    lang: str
    line: int
    body: tuple[str, ...]


def _rel(page: Path) -> str:
    return page.relative_to(ROOT).as_posix() if page.is_relative_to(ROOT) else str(page)


def fences(page: Path) -> Iterator[Fence]:
    """The fenced code blocks of a Markdown page, in order."""
    lines = page.read_text(encoding="utf-8").splitlines()
    i = 0
    while i < len(lines):
        m = _FENCE.match(lines[i].strip())
        if m is None:
            i += 1
            continue
        fence, start = m["fence"], i
        lang = m["info"].strip().split(" ")[0].strip("{}.") if m["info"].strip() else ""
        body: list[str] = []
        i += 1
        while i < len(lines) and not lines[i].strip().startswith(fence):
            body.append(lines[i])
            i += 1
        yield Fence(lang, start + 1, tuple(body))
        i += 1


def parse_steps(fence: Fence, page: Path) -> tuple[Step, ...]:
    """Commands and expected output of a console block; a block without a command is an error."""
    steps: list[Step] = []
    command: list[str] | None = None
    line = 0
    expected: list[str] = []
    for n, text in enumerate(fence.body, start=fence.line + 1):
        if command is not None and command[-1].endswith("\\") and not expected:
            command.append(text.removeprefix("> "))
            continue
        if text.startswith("$ "):
            if command is not None:
                steps.append(Step("\n".join(command), line, tuple(expected)))
            command, line, expected = [text[2:]], n, []
        elif command is None:
            if text.strip():
                raise ValueError(
                    f"{_rel(page)}:{n}: console block output before any "
                    f"'$ ' command: {text!r} (use a text block for plain output)"
                )
        else:
            expected.append(text)
    if command is None:
        raise ValueError(
            f"{_rel(page)}:{fence.line}: console block without a '$ ' "
            "command (console blocks are run; use a text block)"
        )
    steps.append(Step("\n".join(command), line, tuple(expected)))
    return tuple(steps)


def console_blocks(page: Path) -> list[ConsoleBlock]:
    """Every console block of ``page`` with the files defined above it."""
    files: dict[str, str] = {}
    blocks: list[ConsoleBlock] = []
    for fence in fences(page):
        if fence.lang == "console":
            blocks.append(ConsoleBlock(page, fence.line, parse_steps(fence, page), tuple(files.items())))
        elif fence.body and (m := _FILE_COMMENT.match(fence.body[0])):
            files[m["name"]] = "\n".join(fence.body) + "\n"
    return blocks


def _clean(lines: list[str] | tuple[str, ...]) -> list[str]:
    out = [ln.rstrip() for ln in lines]
    while out and not out[-1]:
        out.pop()
    return out


def output_matches(expected: list[str], actual: list[str]) -> bool:
    """``actual`` equals ``expected``, where an expected line ``...`` matches zero or more lines."""

    @functools.cache
    def match(i: int, j: int) -> bool:
        if i == len(expected):
            return j == len(actual)
        if expected[i] == "...":
            return any(match(i + 1, k) for k in range(j, len(actual) + 1))
        return j < len(actual) and expected[i] == actual[j] and match(i + 1, j + 1)

    return match(0, 0)


def _all_blocks() -> list[ConsoleBlock]:
    return [block for page in PAGES for block in console_blocks(page)]


def _missing_plugins() -> list[str]:
    from importlib.metadata import entry_points

    installed = {ep.name for ep in entry_points(group="kernel.plugins")}
    return [name for name in FIRST_PARTY if name not in installed]


@pytest.fixture(scope="module", autouse=True)
def _every_plugin_installed() -> None:
    """The examples need the kernel and every first-party plugin (tox -e docs installs them)."""
    missing = _missing_plugins()
    if missing and os.environ.get("KERNEL_DOCS_TESTS") != "required":
        pytest.skip(f"docs examples need every plugin installed; missing: {', '.join(missing)}")
    assert not missing, f"the docs env must install every plugin; missing: {', '.join(missing)}"


def _sandbox(root: Path) -> dict[str, str]:
    """A throw-away venv over the running one, with ``kernel``/``pip`` shims; its environment."""
    venv = root / "venv"
    subprocess.run(
        [sys.executable, "-m", "venv", "--without-pip", str(venv)],
        check=True,
        capture_output=True,
        timeout=120,
    )
    bin_dir = venv / ("Scripts" if os.name == "nt" else "bin")
    site = Path(sysconfig.get_path("purelib", vars={"base": str(venv), "platbase": str(venv)}))
    site.mkdir(parents=True, exist_ok=True)
    # The running environment's packages (the kernel, the plugins, pip) stay importable,
    # after the sandbox's own site-packages where `pip install` puts things.
    # addsitedir (not a plain path line) so the editable installs' own .pth files apply too.
    parents = dict.fromkeys(p for p in sys.path if p.endswith("site-packages"))
    (site / "_docs_parent_env.pth").write_text(
        "".join(f"import site; site.addsitedir({p!r})\n" for p in parents)
    )
    python = bin_dir / "python"
    shims = {
        "kernel": "from kernel._cli import main\nsys.exit(main())",
        "pip": "import runpy\nrunpy.run_module('pip', run_name='__main__', alter_sys=True)",
    }
    for name, body in shims.items():
        shim = bin_dir / name
        shim.write_text(f"#!{python}\nimport sys\n{body}\n")
        shim.chmod(0o755)
    env = {
        k: v for k, v in os.environ.items() if not k.startswith(("KERNEL", "PYTHON", "PIP_", "VIRTUAL_ENV"))
    }
    env.update(
        {
            "PATH": os.pathsep.join([str(bin_dir), env.get("PATH", "")]),
            "VIRTUAL_ENV": str(venv),
            "PYTHONUNBUFFERED": "1",  # stdout and stderr interleave as on a terminal
            "PYTHONDONTWRITEBYTECODE": "1",
            "PIP_NO_INDEX": "1",  # everything an example installs is local; never the network
            "PIP_NO_BUILD_ISOLATION": "0",  # i.e. --no-build-isolation: use the env's hatchling
            "PIP_DISABLE_PIP_VERSION_CHECK": "1",
            "NO_COLOR": "1",
            "TERM": "dumb",
            "COLUMNS": "120",
        }
    )
    return env


def run_block(block: ConsoleBlock, workdir: Path) -> list[tuple[Step, list[str], int]]:
    """Run every step of ``block`` in one bash session in ``workdir``; (step, output, status)."""
    cwd = workdir / "cwd"
    cwd.mkdir()
    (cwd / "examples").symlink_to(ROOT / "examples", target_is_directory=True)
    for name, text in block.files:
        path = cwd / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    env = _sandbox(workdir)
    mark = f"@@docs-step-{uuid.uuid4().hex}"
    script = []
    for i, step in enumerate(block.steps):
        # `( exit $s )` restores the status, so a following `$ echo $?` shows the command's.
        script.append(f"{step.command}\n__s=$?; printf '\\n{mark} {i} %d\\n' \"$__s\"; ( exit $__s )")
    result = subprocess.run(
        ["bash", "-c", "\n".join(script)],
        cwd=cwd,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        stdin=subprocess.DEVNULL,
        text=True,
        timeout=COMMAND_TIMEOUT,
    )
    chunks = re.split(rf"\n{re.escape(mark)} (\d+) (\d+)\n", result.stdout)
    results: list[tuple[Step, list[str], int]] = []
    for k, step in enumerate(block.steps):
        if 3 * k + 2 >= len(chunks):
            raise AssertionError(
                f"{block.id}: the block stopped before `{step.command}` "
                f"(bash exit {result.returncode}); output:\n{result.stdout}"
            )
        assert int(chunks[3 * k + 1]) == k
        results.append((step, chunks[3 * k].splitlines(), int(chunks[3 * k + 2])))
    return results


BLOCKS = _all_blocks()


def test_the_docs_have_console_examples() -> None:
    """The collector finds the examples (a parser regression must not pass silently)."""
    pages = {b.page.relative_to(ROOT).as_posix() for b in BLOCKS}
    assert {"README.md", "docs/getting-started.md", "docs/writing-a-plugin.md"} <= pages


@pytest.mark.parametrize("block", BLOCKS, ids=[b.id for b in BLOCKS])
def test_console_example(block: ConsoleBlock, tmp_path: Path) -> None:
    """Run the block as the page shows it; each output must match, silent steps must exit 0."""
    failures: list[str] = []
    for step, output, status in run_block(block, tmp_path):
        where = f"{block.page.relative_to(ROOT)}:{step.line}: $ {step.command}"
        expected, actual = _clean(step.expected), _clean(output)
        if not expected:
            if status != 0:
                failures.append(
                    f"{where}\nexited {status} (a step shown without output must "
                    f"succeed); output:\n" + "\n".join(actual)
                )
        elif not output_matches(expected, actual):
            diff = difflib.unified_diff(expected, actual, "documented", "actual", lineterm="")
            failures.append(f"{where}\noutput differs (exit {status}):\n" + "\n".join(diff))
    assert not failures, "\n\n".join(failures)


def test_the_matcher() -> None:
    """``...`` matches zero or more lines; everything else must be equal."""
    assert output_matches(["a", "...", "d"], ["a", "b", "c", "d"])
    assert output_matches(["a", "...", "d"], ["a", "d"])
    assert output_matches(["...", "c"], ["a", "b", "c"])
    assert not output_matches(["a", "...", "d"], ["a", "b", "c"])
    assert not output_matches(["a"], ["a", "b"])
    assert not output_matches(["a b"], ["a  b"])


def _setting_paths(data: dict[str, object], prefix: tuple[str, ...] = ()) -> Iterator[tuple[str, ...]]:
    for key, value in data.items():
        path = (*prefix, key)
        yield path
        if isinstance(value, dict):
            yield from _setting_paths(value, path)


def _config_show(config: str) -> dict[str, Any]:
    """``kernel config show --json`` of ``config`` (a path from the repository root), no ``KERNEL*`` set."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("KERNEL")}
    command = [sys.executable, "-m", "kernel", "--config", config, "config", "show", "--json"]
    shown = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)
    assert shown.returncode == 0, shown.stderr
    data: dict[str, Any] = json.loads(shown.stdout)
    return data


@pytest.fixture(scope="module")
def known_settings() -> dict[str, object]:
    """Every setting, as ``kernel config show --json`` of the example service's config shows it.

    That config enables every first-party plugin and the example's host sections.
    """
    return _config_show("examples/kernel.toml")


def test_every_environment_variable_in_the_docs_names_a_setting(known_settings: dict[str, object]) -> None:
    """``KERNEL__A__B`` names in the docs must be real settings (a wrong name is silently useless).

    Console blocks (run by ``test_console_example``) and lines showing the "unknown key" error are skipped.
    """
    known = set(_setting_paths(known_settings))
    wrong: list[str] = []
    for page in PAGES:
        # Console blocks are run, so a wrong name there fails them (or is shown failing on purpose).
        run = {f.line + k for f in fences(page) if f.lang == "console" for k in range(len(f.body) + 2)}
        for n, text in enumerate(page.read_text(encoding="utf-8").splitlines(), start=1):
            if n in run or "unknown key" in text:  # a line showing the error for a wrong name
                continue
            for var in _ENV_VAR.findall(text):
                path = tuple(part.lower() for part in var.removeprefix("KERNEL__").split("__"))
                if path[:2] == ("plugins", "x"):  # the docs' placeholder plugin
                    continue
                if path not in known:
                    wrong.append(f"{page.relative_to(ROOT)}:{n}: {var} names no setting ({'.'.join(path)})")
    assert not wrong, "\n".join(wrong)


def test_parser_rejects_output_without_a_command(tmp_path: Path) -> None:
    """A console block must start with a command; plain output belongs in a text block."""
    page = tmp_path / "page.md"
    page.write_text("```console\nHi, ada!\n```\n")
    with pytest.raises(ValueError, match="before any '\\$ ' command"):
        console_blocks(page)


def _unknown_keys(data: dict[str, object], known: dict[str, object], path: str) -> Iterator[str]:
    for key, value in data.items():
        where = f"{path}.{key}" if path else key
        if key not in known:
            yield where
        elif isinstance(value, dict) and isinstance(known[key], dict) and known[key]:
            yield from _unknown_keys(value, known[key], where)  # type: ignore[arg-type]


def test_every_toml_example_uses_real_settings(known_settings: dict[str, object]) -> None:
    """Keys under ``[kernel]`` and ``[plugins.<first-party>]`` in the docs' TOML blocks exist.

    A misspelt or removed key in an example is what a reader copies; config validation
    would reject it (``unknown key``), so the docs must not show one. Blocks that define a
    file (``# kernel.toml``) are left to the console examples that run them.
    """
    import tomllib

    known = known_settings
    wrong: list[str] = []
    for page in PAGES:
        for fence in fences(page):
            if fence.lang != "toml" or (fence.body and _FILE_COMMENT.match(fence.body[0])):
                continue  # a page's file is checked by running the console blocks that use it
            try:
                data = tomllib.loads("\n".join(fence.body))
            except tomllib.TOMLDecodeError as exc:
                wrong.append(f"{_rel(page)}:{fence.line}: not valid TOML ({exc})")
                continue
            scoped = {
                "kernel": data.get("kernel", {}),
                "plugins": {k: v for k, v in data.get("plugins", {}).items() if k in FIRST_PARTY},
            }
            wrong += [
                f"{_rel(page)}:{fence.line}: {key}: no such setting"
                for key in _unknown_keys(scoped, known, "")
            ]
    assert not wrong, "\n".join(wrong)


def test_unknown_keys_descends_into_tables() -> None:
    known: dict[str, object] = {"plugins": {"redis": {"url": "embedded", "embedded": {"password": True}}}}
    data: dict[str, object] = {"plugins": {"redis": {"url": "x", "embedded": {"pasword": True}, "colour": 1}}}
    assert list(_unknown_keys(data, known, "")) == ["plugins.redis.embedded.pasword", "plugins.redis.colour"]


_KERNEL_CALL = re.compile(
    r"(?:^|[\s`$(])kernel(?: (?:-c|--config) \S+)? (?P<cmd>[a-z]+)(?P<rest>[^`#|()\n;,]*)"
)
_SUBCOMMAND_LINE = re.compile(r"^    (?P<name>[a-z][a-z-]*)(?:\s|$)")


def _kernel_help(*args: str) -> str:
    """``kernel --config examples/kernel.toml ARGS --help`` (every plugin enabled, nothing booted)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("KERNEL")}
    done = subprocess.run(
        [sys.executable, "-m", "kernel", "--config", "examples/kernel.toml", *args, "--help"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, f"kernel {' '.join(args)} --help failed:\n{done.stderr}"
    return done.stdout


def _subcommands(help_text: str) -> set[str]:
    return {m["name"] for line in help_text.splitlines() if (m := _SUBCOMMAND_LINE.match(line))}


def test_every_documented_command_option_exists() -> None:
    """Each ``kernel CMD [SUB] --option`` the docs mention is an option of that command.

    Checked against ``--help`` with every plugin enabled, so a renamed or removed option (or
    a flag attached to the wrong command) fails here, whatever kind of block or prose shows it.
    """
    commands = _subcommands(_kernel_help())
    helps: dict[tuple[str, ...], str] = {}
    wrong: list[str] = []
    for page in PAGES:
        for n, text in enumerate(page.read_text(encoding="utf-8").splitlines(), start=1):
            for m in _KERNEL_CALL.finditer(text):
                if m["cmd"] not in commands:
                    continue
                key: tuple[str, ...] = (m["cmd"],)
                if key not in helps:
                    helps[key] = _kernel_help(*key)
                words = m["rest"].split()
                if words and words[0] in _subcommands(helps[key]):
                    key = (m["cmd"], words[0])
                    if key not in helps:
                        helps[key] = _kernel_help(*key)
                for option in re.findall(r"(?<![\w-])--[a-z][a-z-]*", m["rest"]):
                    if not re.search(rf"(?<![\w-]){re.escape(option)}(?![\w-])", helps[key]):
                        wrong.append(f"{_rel(page)}:{n}: `kernel {' '.join(key)}` has no option {option}")
    assert helps, "no kernel command found in the docs (the pattern is broken)"
    assert not wrong, "\n".join(wrong)


def test_python_examples_compile_and_import_real_names() -> None:
    """Every ```python block parses, and what it imports from the kernel and plugins exists.

    The blocks are fragments (top-level ``await``, ``...``), so they are not run; a renamed or
    removed public name still shows up here.
    """
    import ast
    import importlib
    import importlib.util

    wrong: list[str] = []
    for page in PAGES:
        for fence in fences(page):
            if fence.lang not in ("python", "py"):
                continue
            where = f"{_rel(page)}:{fence.line}"
            try:
                tree = compile(
                    "\n".join(fence.body),
                    where,
                    "exec",
                    flags=ast.PyCF_ONLY_AST | ast.PyCF_ALLOW_TOP_LEVEL_AWAIT,
                )
            except SyntaxError as exc:
                wrong.append(f"{where}: {exc}")
                continue
            for node in ast.walk(tree):
                if isinstance(node, ast.ImportFrom):
                    modules = [node.module] if node.module and not node.level else []
                else:
                    modules = [a.name for a in node.names] if isinstance(node, ast.Import) else []
                for module in modules:
                    if module.split(".")[0] != "kernel" and not module.startswith("kernel_"):
                        continue
                    try:
                        imported = importlib.import_module(module)
                    except ImportError as exc:
                        wrong.append(f"{where}: import {module}: {exc}")
                        continue
                    if isinstance(node, ast.ImportFrom):
                        wrong += [
                            f"{where}: {module} has no {a.name!r}"
                            for a in node.names
                            if a.name != "*"
                            and not hasattr(imported, a.name)
                            and importlib.util.find_spec(f"{module}.{a.name}") is None
                        ]
    assert not wrong, "\n".join(wrong)


def test_shell_sessions_say_whether_they_are_tested() -> None:
    """A block with ``$ `` prompts is ``console`` (run) or explicitly ``text`` (not run).

    An untagged or ``bash`` block with prompts looks like a tested example but is not.
    """
    wrong = [
        f"{_rel(page)}:{fence.line}: a shell session in a {fence.lang or 'plain'} block: make it "
        "console (tested) or text (not run)"
        for page in PAGES
        for fence in fences(page)
        if fence.lang not in ("console", "text") and any(ln.startswith("$ ") for ln in fence.body)
    ]
    assert not wrong, "\n".join(wrong)


def _settings_rows(page: Path) -> Iterator[tuple[int, str, str]]:
    """(line, key, default column) of every ``| key | type | default | meaning |`` table row."""
    in_table = False
    for n, text in enumerate(page.read_text(encoding="utf-8").splitlines(), start=1):
        row = text.strip().removeprefix("|").removesuffix("|")
        cells = [c.strip() for c in re.split(r"(?<!\\)\|", row)] if text.startswith("|") else []
        if cells[:3] == ["key", "type", "default"]:
            in_table = True
        elif not cells:
            in_table = False
        elif in_table and (m := re.fullmatch(r"`([a-z_]+)`", cells[0])):
            yield n, m[1], cells[2]


def _documented_default(cell: str) -> tuple[bool, object]:
    """(parsed?, value) of a default column: ``unset``/``none`` or the first backticked TOML value."""
    import tomllib

    if cell.split(" ")[0].lower() in ("unset", "none"):
        return True, None
    m = re.match(r"`([^`]+)`", cell)
    if m is None:
        return False, None
    try:
        return True, tomllib.loads(f"v = {m[1]}")["v"]
    except tomllib.TOMLDecodeError:
        return False, None


@pytest.fixture(scope="module")
def default_settings(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """``kernel config show --json`` with every first-party plugin enabled and nothing set."""
    config = tmp_path_factory.mktemp("defaults") / "kernel.toml"
    config.write_text(f"[kernel]\nplugins = {json.dumps(list(FIRST_PARTY))}\n")
    return _config_show(str(config))


@pytest.mark.parametrize("name", ["kernel", *FIRST_PARTY])
def test_settings_tables_match_the_code(name: str, default_settings: dict[str, Any]) -> None:
    """A page's settings tables list every setting, only real ones, with the real default.

    Secrets (masked in ``config show``) and ``[kernel] plugins`` (set here) are not compared.
    """
    if name == "kernel":
        page, settings = ROOT / "docs" / "configuration.md", default_settings["kernel"]
    else:
        page, settings = ROOT / "docs" / "plugins" / f"{name}.md", default_settings["plugins"][name]
    # Sub-tables (redis's [plugins.redis.embedded]) are documented in their own table on the page.
    flat: dict[str, object] = {}
    for key, value in settings.items():
        if isinstance(value, dict) and value:
            flat.update(value)
        else:
            flat[key] = value
    rows = list(_settings_rows(page))
    problems = [
        f"{_rel(page)}:{n}: `{key}` is not a setting of {name}" for n, key, _ in rows if key not in flat
    ]
    documented = {key for _, key, _ in rows}
    problems += [
        f"{_rel(page)}: setting `{key}` of {name} is not in a settings table"
        for key in flat
        if key not in documented and key != "plugins"
    ]
    for n, key, cell in rows:
        parsed, value = _documented_default(cell)
        if parsed and key in flat and value != flat[key] and flat[key] != "**********" and key != "plugins":
            problems.append(
                f"{_rel(page)}:{n}: `{key}` default is documented as {cell!r}, the code's is {flat[key]!r}"
            )
    assert not problems, "\n".join(problems)


def test_every_plugin_setting_path_in_the_docs_exists(known_settings: dict[str, object]) -> None:
    """``plugins.<first-party>.<key>`` paths in prose and blocks name real settings.

    Console blocks are run instead, and lines showing the "unknown key" error are skipped.
    """
    known = set(_setting_paths(known_settings))
    pattern = re.compile(rf"(?<![\w.])plugins\.({'|'.join(FIRST_PARTY)})\.([a-z_]+)")
    wrong: list[str] = []
    for page in PAGES:
        run = {f.line + k for f in fences(page) if f.lang == "console" for k in range(len(f.body) + 2)}
        for n, text in enumerate(page.read_text(encoding="utf-8").splitlines(), start=1):
            if n in run or "unknown key" in text:
                continue
            wrong += [
                f"{_rel(page)}:{n}: {m[0]} is not a setting"
                for m in pattern.finditer(text)
                if ("plugins", m[1], m[2]) not in known
            ]
    assert not wrong, "\n".join(wrong)
