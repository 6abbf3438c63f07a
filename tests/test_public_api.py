"""The public surface: ``__all__`` is sorted and complete where it matters."""

from __future__ import annotations

import ast
import importlib
import inspect
import pkgutil
import subprocess
import sys
from pathlib import Path

import kernel

KERNEL_DIR = Path(kernel.__file__).parent
SUBMODULES = (
    "kernel.config",
    "kernel.console",
    "kernel.health",
    "kernel.hookspecs",
    "kernel.logging",
    "kernel.process",
    "kernel.testing",
    "kernel.web",
)


def test_all_is_sorted_and_every_name_exists() -> None:
    assert kernel.__all__ == sorted(kernel.__all__)
    for name in kernel.__all__:
        assert hasattr(kernel, name), name


def test_every_exception_the_kernel_defines_is_exported() -> None:
    exported = {getattr(kernel, n) for n in kernel.__all__}
    missing = []
    for info in pkgutil.iter_modules(kernel.__path__):
        module = importlib.import_module(f"kernel.{info.name}") if info.name != "__main__" else None
        if module is None:
            continue
        for name, obj in vars(module).items():
            if (
                inspect.isclass(obj)
                and issubclass(obj, BaseException)
                and obj.__module__ == module.__name__
                and obj not in exported
            ):
                missing.append(f"{module.__name__}.{name}")
    assert not missing, f"exceptions users cannot catch by their public name: {missing}"


def test_public_modules_import() -> None:
    for name in SUBMODULES:
        module = importlib.import_module(name)
        names = getattr(module, "__all__", [])
        assert names == sorted(names), name
        for attr in names:
            assert hasattr(module, attr), f"{name}.{attr}"


def test_the_top_level_namespace_is_what_a_plugin_author_needs() -> None:
    assert len(kernel.__all__) <= 25, kernel.__all__
    homes = {  # each subpackage's whole public surface, pinned
        "kernel.web": "ASGIApp ASGIMiddleware KernelApp LifespanMiddleware Message RESPONSE_STATUS Receive "
        "Scope Send lifespan_for send_response serve",
        "kernel.process": "ChildServer ProcessHandle die_with_parent free_port terminate",
        "kernel.logging": "FINISHED TraceSlot configure_logging get_trace_id get_trace_slot new_trace_id "
        "reset_trace_id set_trace_id set_trace_slot trace_context",
        "kernel.health": "CheckResult HealthReport begin_drain draining end_drain probe_config",
        "kernel.config": "ENTRY_POINT_GROUP ENV_PREFIX KernelSettings LoadedPlugin import_object",
        "kernel.console": "ProgressBar print_table",
    }
    for name, listed in homes.items():
        module = importlib.import_module(name)
        names = listed.split()
        assert module.__all__ == names
        assert not set(names) & set(kernel.__all__), f"{name} names are also top-level"


def test_the_lifespan_helper_is_not_named_like_the_hook() -> None:
    import kernel.hookspecs
    import kernel.web

    assert callable(kernel.hookspecs.kernel_lifespan)  # the hook keeps its name
    assert not hasattr(kernel, "kernel_lifespan")
    assert not hasattr(kernel.web, "kernel_lifespan")
    assert callable(kernel.web.lifespan_for)


def _kernel_sources() -> dict[str, str]:
    return {str(p.relative_to(KERNEL_DIR)): p.read_text() for p in sorted(KERNEL_DIR.rglob("*.py"))}


def test_the_asgi_lifespan_protocol_is_implemented_once() -> None:
    speakers = [name for name, text in _kernel_sources().items() if '"lifespan.startup.complete"' in text]
    assert speakers == ["web/_lifespan.py"]


def test_serving_uses_only_uvicorn_public_api() -> None:
    """No override of uvicorn internals (``capture_signals``) and no subclass of its classes."""
    for name, text in _kernel_sources().items():
        assert "capture_signals" not in text, name
        for node in ast.walk(ast.parse(text)):
            if isinstance(node, ast.ClassDef):
                bases = [ast.unparse(b) for b in node.bases]
                assert not [b for b in bases if "uvicorn" in b], f"{name}: {node.name}({', '.join(bases)})"
            if isinstance(node, ast.Attribute) and node.attr.startswith("_") and node.attr[:2] != "__":
                assert "uvicorn" not in ast.unparse(node.value), f"{name}: {ast.unparse(node)}"


def test_import_kernel_needs_no_posix_only_module() -> None:
    """Windows has no ``resource``, ``fcntl``, ``termios``, ``pwd``: the kernel must import without them."""
    code = (
        "import sys\n"
        "for name in ('resource', 'fcntl', 'termios', 'pwd', 'grp'):\n"
        "    sys.modules[name] = None  # makes 'import name' raise ImportError\n"
        "import kernel, kernel.web, kernel.process, kernel.logging, kernel.health, kernel.config\n"
        "import kernel._cli\n"
        "import kernel._health as h\n"
        "h._proc_status_bytes = lambda *fields: None  # no /proc either\n"
        "print(h.memory_usage())\n"
    )
    proc = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=False
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "{'rss_bytes': 0, 'peak_rss_bytes': 0}"
