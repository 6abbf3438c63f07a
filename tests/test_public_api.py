"""The public surface: ``__all__`` is complete and sorted, private modules stay private."""

from __future__ import annotations

import importlib
import inspect
import pkgutil

import kernel


def test_all_is_sorted_and_names_exist() -> None:
    assert kernel.__all__ == sorted(kernel.__all__, key=str.lower) or kernel.__all__ == sorted(kernel.__all__)
    for name in kernel.__all__:
        assert hasattr(kernel, name), name


def test_every_public_class_and_function_of_private_modules_is_exported() -> None:
    exported = {getattr(kernel, n) for n in kernel.__all__}
    missing = []
    for info in pkgutil.iter_modules(kernel.__path__):
        if not info.name.startswith("_") or info.name == "__main__":
            continue
        module = importlib.import_module(f"kernel.{info.name}")
        for name, obj in vars(module).items():
            if name.startswith("_") or getattr(obj, "__module__", None) != module.__name__:
                continue
            if (inspect.isclass(obj) or inspect.isfunction(obj)) and obj not in exported:
                missing.append(f"kernel.{info.name}.{name}")
    allowed_internal = {
        "kernel._cli.build_parser", "kernel._cli.cmd_check", "kernel._cli.cmd_config_show",
        "kernel._cli.cmd_health", "kernel._cli.cmd_plugins", "kernel._cli.main", "kernel._cli.to_toml",
        "kernel._config.check_recommended", "kernel._config.coerce_env_value", "kernel._config.env_overrides",
        "kernel._config.field_type", "kernel._config.import_sections", "kernel._config.load_toml",
        "kernel._config.make_converter", "kernel._config.resolve_config_path", "kernel._config.set_path",
        "kernel._config.structure", "kernel._config.unstructure",
        "kernel._discovery.Discovery", "kernel._discovery.InstalledPlugin", "kernel._discovery.discover",
        "kernel._ordering.find_cycle", "kernel._ordering.install_hint", "kernel._ordering.load_enabled",
        "kernel._ordering.order", "kernel._registry.describe_key",
        "kernel._asgi.health_endpoint", "kernel._asgi.send_json",
        "kernel._health.memory_usage", "kernel._health.run_checks",
        "kernel._logging.ConsoleFormatter", "kernel._logging.JsonFormatter", "kernel._logging.TraceIdFilter",
    }
    unexpected = sorted(set(missing) - allowed_internal)
    assert not unexpected, f"public names not exported from kernel: {unexpected}"
