"""One source for versions: each distribution's pyproject.toml, read back through package metadata."""

from __future__ import annotations

import re
from importlib import metadata
from pathlib import Path

import kernel

ROOT = Path(__file__).resolve().parent.parent
# A version written as a literal in code: `version = "1.2.3"` or `__version__ = "1.2.3"`.
LITERAL_VERSION = re.compile(r"""^\s*(?:__version__|version)\s*(?::[^=]*)?=\s*["']\d+\.\d""", re.MULTILINE)


def test_kernel_version_is_the_distribution_version() -> None:
    assert kernel.__version__ == metadata.version("milo-kernel")


def test_installed_first_party_plugins_report_their_distribution_version() -> None:
    """``Plugin.version`` equals the installed metadata (``kernel plugins`` shows both)."""
    for ep in metadata.entry_points(group="kernel.plugins"):
        if ep.dist is None or not ep.dist.metadata["Name"].startswith("milo-kernel-"):
            continue
        if not (ROOT / "plugins" / ep.name).is_dir():  # e.g. the docs' example plugin
            continue
        assert ep.load().version == ep.dist.version, ep.name


def test_no_version_literal_in_project_code() -> None:
    """Versions live only in pyproject.toml; code reads them from metadata."""
    # (kernel/_plugin.py's `Plugin.version = "0.0.0"` is the default of a plugin that declares none.)
    sources = [ROOT / "kernel" / "__init__.py", *(ROOT / "plugins").glob("*/kernel_*/**/*.py")]
    sources += [*(ROOT / "examples" / "hello-plugin").rglob("*.py")]
    offenders = [str(p.relative_to(ROOT)) for p in sources if LITERAL_VERSION.search(p.read_text("utf-8"))]
    assert offenders == [], f"version literals (read package metadata instead): {offenders}"
