"""The ``kernel`` command line."""

from __future__ import annotations

import argparse
import contextlib
import inspect
import json
import logging
import os
import signal
import sys
from collections.abc import AsyncIterator, Callable, Collection, Sequence
from pathlib import Path
from typing import Any

import anyio
import anyio.abc
import pluggy

from ._config import resolve_config_path
from ._discovery import Discovery, discover
from ._errors import ConfigError, KernelError, PluginLoadError
from ._health import HealthReport, chain_length, dependency_map, probe_config
from ._kernel import CONFIG_WARNING, Kernel
from ._plugin import PROJECT, Command
from ._registry import describe_key
from .console import print_table
from .logging import configure_logging
from .web import _serve

EXIT_OK, EXIT_FAIL, EXIT_CONFIG = 0, 1, 2
BUILTIN_COMMANDS = frozenset({"plugins", "check", "config", "health", "serve"})
CONFIG_HELP = "config file (default $KERNEL_CONFIG or ./kernel.toml)"


def _toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, str):
        return json.dumps(value)
    if isinstance(value, list | tuple):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    if isinstance(value, dict):
        return "{ " + ", ".join(f"{k} = {_toml_value(v)}" for k, v in value.items()) + " }"
    return json.dumps(str(value))


def to_toml(data: dict[str, Any], prefix: str = "") -> str:
    """Render plain config data as TOML (``None`` values become comments)."""
    lines: list[str] = []
    tables: list[tuple[str, dict[str, Any]]] = []
    for key, value in data.items():
        if isinstance(value, dict) and (
            not value
            or all(isinstance(v, dict) for v in value.values())
            or prefix == ""
            or prefix == "plugins"
        ):
            tables.append((f"{prefix}.{key}" if prefix else key, value))
        elif value is None:
            lines.append(f"# {key} = (not set)")
        else:
            lines.append(f"{key} = {_toml_value(value)}")
    out = "\n".join(lines)
    for name, table in tables:
        body = to_toml(table, name)
        header = f"[{name}]"
        out += ("\n\n" if out else "") + header + ("\n" + body if body else "")
    return out


def _load(args: argparse.Namespace) -> Kernel:
    return Kernel.from_config(args.config, configure_logs=True)


def _config_path(args: argparse.Namespace) -> Path:
    return resolve_config_path(getattr(args, "config", None), os.environ)


def cmd_plugins(args: argparse.Namespace) -> int:
    """List installed plugins, which are enabled, and the load order."""
    out = sys.stdout
    kernel: Kernel | None = None
    problems: list[str] = []
    config_path = _config_path(args)
    found = config_path.is_file()  # listing what is installed needs no config
    if found:
        try:
            kernel = _load(args)
        except (ConfigError, KernelError) as exc:
            problems = exc.errors if isinstance(exc, ConfigError) else [str(exc)]
    else:
        configure_logging()
    discovery = kernel.discovery if kernel else discover()
    enabled = kernel.load_order if kernel else []
    rows = [["name", "version", "distribution", "enabled", "requires", "optional", "status"]]
    records: list[dict[str, Any]] = []
    for name in sorted({*discovery.installed, *discovery.conflicts}):
        if name in discovery.conflicts:
            dists = " + ".join(c.distribution or "?" for c in discovery.conflicts[name])
            rows.append([name, "", dists, "-", "", "", "conflict"])
            records.append({"name": name, "status": "conflict", "distributions": dists.split(" + ")})
            continue
        info = discovery.installed[name]
        try:
            plugin = info.load()
            status, req, opt = "ok", ", ".join(plugin.requires), ", ".join(plugin.optional)
            version = plugin.version
        except PluginLoadError as exc:
            status, req, opt, version = f"load error: {exc.cause!r}", "", "", ""
        pos = enabled.index(name) + 1 if name in enabled else 0
        rows.append(
            [
                name,
                version,
                f"{info.distribution} {info.dist_version}",
                f"yes (#{pos})" if pos else "no",
                req or "-",
                opt or "-",
                status,
            ]
        )
        records.append(
            {
                "name": name,
                "version": version,
                "distribution": info.distribution,
                "enabled": bool(pos),
                "position": pos or None,
                "requires": req.split(", ") if req else [],
                "optional": opt.split(", ") if opt else [],
                "status": status,
            }
        )
    if args.json:
        json.dump(
            {
                "plugins": records,
                "load_order": enabled,
                "errors": problems,
                "config": str(config_path) if found else None,
            },
            out,
            indent=2,
        )
        print(file=out)
        return EXIT_CONFIG if problems else EXIT_OK
    if len(rows) == 1:
        print("no plugins installed (entry-point group 'kernel.plugins')", file=out)
    else:
        print_table(rows, out)
    print(file=out)
    if not found:
        print(
            f"no config found ({config_path}): nothing is enabled; list plugins to enable under "
            "[kernel] plugins = [...]",
            file=out,
        )
    print("load order: " + (" -> ".join(enabled) if enabled else "(none)"), file=out)
    if kernel is not None:
        for lp in kernel.plugins:
            deps = [*lp.plugin.requires, *[o for o in lp.plugin.optional if o in enabled]]
            why = f"after {', '.join(deps)}" if deps else "no dependencies"
            print(f"  {lp.name}: {why}", file=out)
    for line in problems:
        print(f"error: {line}", file=sys.stderr)
    return EXIT_CONFIG if problems else EXIT_OK


def cmd_check(args: argparse.Namespace) -> int:
    """Validate the config; exit 0, or 2 with every error on stderr."""

    def not_a_config_warning(record: logging.LogRecord) -> bool:
        return not getattr(record, CONFIG_WARNING, False)

    # The warnings are printed below as `warning:` lines; don't log them a second time.
    logger = logging.getLogger("kernel")
    logger.addFilter(not_a_config_warning)
    try:
        kernel = _load(args)
    except ConfigError as exc:
        print(f"{_config_path(args)}: {len(exc.errors)} error(s)", file=sys.stderr)
        for line in exc.errors:
            print(f"error: {line}", file=sys.stderr)
        return EXIT_CONFIG
    finally:
        logger.removeFilter(not_a_config_warning)
    for line in kernel.warnings:
        print(f"warning: {line}", file=sys.stderr)
    print(
        f"config OK: {kernel.config_path} ({kernel.settings.env}); "
        f"load order: {' -> '.join(kernel.load_order) or '(no plugins)'}"
    )
    return EXIT_OK


def cmd_config_show(args: argparse.Namespace) -> int:
    """Print the effective config (file + environment + defaults), secrets masked."""
    data = _load(args).effective_config()  # a ConfigError is printed by main()
    print(json.dumps(data, indent=2) if args.json else to_toml(data))
    return EXIT_OK


async def _health(kernel: Kernel, as_json: bool) -> int:
    async with kernel:
        report = await kernel.health()
        if as_json:
            health = report.to_dict(include_errors=True)
            health["plugins"] = report.tree(include_errors=True)
            print(json.dumps({"load_order": kernel.load_order, "health": health}, indent=2))
        else:
            print(f"kernel booted: {' -> '.join(kernel.load_order) or '(no plugins)'}")
            services = sorted((describe_key(k), p or "host") for k, _s, p in kernel.registry.items())
            print(f"services ({len(services)}):")
            for key, provider in services:
                print(f"  {key:<40} from {provider}")
            print(f"health: {report.status} ({len(report.checks)} checks)")
            _print_health_tree(report)
            print("probes: /health/live, /health/ready, /health/startup (kernel health --probes: Kubernetes)")
    return EXIT_OK if report.status != "fail" else EXIT_FAIL


def _print_health_tree(report: HealthReport) -> None:
    """Each plugin with checks (or degraded by a dependency), then its checks, as ``kernel health`` shows."""
    for plugin, node in report.tree(include_errors=True).items():
        if not node["checks"] and "because" not in node:
            continue
        deps = f" (depends on {', '.join(node['depends_on'])})" if node["depends_on"] else ""
        print(f"  {plugin}{deps}: {node.get('reason', node['status'])}")
        for name, entry in node["checks"].items():
            state = "FAIL" if entry["status"] == "fail" else entry["status"]
            extra = f"  {entry['error']}" if "error" in entry else ""
            print(f"    {name:<28} {state:<8} {entry['duration_ms']:7.2f} ms{extra}")


def cmd_health(args: argparse.Namespace) -> int:
    """Boot the kernel, print services and health, shut down (``--probes``: print the Kubernetes probes)."""
    kernel = _load(args)  # a ConfigError is printed by main()
    if args.probes:
        depends = dependency_map(
            (lp.name, (*lp.plugin.requires, *lp.plugin.optional)) for lp in kernel.plugins
        )
        print(probe_config(kernel.settings, port=args.port, chain=chain_length(depends)), end="")
        return EXIT_OK
    return anyio.run(_health, kernel, args.json)


def _run_plugin_command(command: Command) -> Callable[[argparse.Namespace], int]:
    def run(args: argparse.Namespace) -> int:
        kernel: Kernel = args._kernel

        async def call() -> int | None:
            result = command.run(args, kernel)
            return await result if inspect.isawaitable(result) else result

        async def go() -> int | None:
            if not command.boot:
                return await call()
            async with boot_interruptibly(kernel) as booted:
                if not booted:
                    print(
                        "kernel: stopped by a signal during boot (nothing was left running)", file=sys.stderr
                    )
                    return EXIT_OK
                return await call()

        code = anyio.run(go)
        return EXIT_OK if code is None else code

    return run


@contextlib.asynccontextmanager
async def boot_interruptibly(kernel: Kernel) -> AsyncIterator[bool]:
    """Boot ``kernel`` for the block; a SIGTERM/SIGINT during the boot unwinds it in order.

    Without this a supervisor stopping a process that is still booting kills it mid-way
    (plugins half-started, no teardown). Yields False when a signal arrived during the boot
    (the plugins that had started are stopped by then), else True with the kernel booted
    until the block ends. Signals are watched during the boot only: once booted, they are
    handled as without this (the command may install its own handlers). The watcher's task
    group and the boot's cancel scope enclose the kernel's ``async with``, so everything
    nests as the kernel's lifespans need.
    """
    if sys.platform == "win32":  # no signal receivers there: boot as is
        async with kernel:
            yield True
        return
    booted = False
    failure: Exception | None = None
    with anyio.CancelScope() as boot:  # a signal during the boot cancels it (only then)
        async with anyio.create_task_group() as tg:
            watching = anyio.CancelScope()
            watched = anyio.Event()

            async def watch(*, task_status: anyio.abc.TaskStatus[None]) -> None:
                try:
                    with watching, anyio.open_signal_receiver(signal.SIGTERM, signal.SIGINT) as signals:
                        task_status.started()
                        async for _ in signals:
                            boot.cancel()
                            return
                finally:
                    watched.set()

            await tg.start(watch)  # the receiver is open before the first plugin boots
            try:
                async with kernel:
                    watching.cancel()
                    await watched.wait()  # default signal handling is back before the command runs
                    booted = True
                    yield True
            except Exception as exc:  # re-raised below as is, not inside an ExceptionGroup
                failure = exc
            finally:
                watching.cancel()  # a failed boot: stop watching too
    if failure is not None:
        raise failure
    if not booted:
        yield False


def _accept_global_options(parser: argparse.ArgumentParser) -> None:
    """Let ``--config``/``-c`` follow a command too (``kernel check --config k.toml``), at every level.

    ``SUPPRESS`` keeps a value given before the command: a sub-parser must not reset it to None.
    An option string a plugin's command defines itself stays the plugin's.
    """
    flags = [f for f in ("--config", "-c") if f not in parser._option_string_actions]
    if "--config" in flags:
        parser.add_argument(*flags, dest="config", default=argparse.SUPPRESS, help=CONFIG_HELP)
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for child in action.choices.values():
                _accept_global_options(child)


def installed_commands(discovery: Discovery, skip: Collection[str] = ()) -> list[tuple[str, Command]]:
    """``(plugin, command)`` of every installed plugin (by name) except ``skip``, enabled or not.

    The hookspec asks every installed plugin, so ``kernel --help`` lists them all without a
    config. A plugin that fails to load, whose name two distributions claim, or whose hook
    raises is left out (``kernel plugins`` reports the first two).
    """
    pm = pluggy.PluginManager(PROJECT)
    out: list[tuple[str, Command]] = []
    for name in sorted(set(discovery.installed) - set(skip)):
        try:
            plugin = discovery.installed[name].load()
            hook = getattr(plugin, "kernel_cli_commands", None)
            if hook is None or pm.parse_hookimpl_opts(plugin, "kernel_cli_commands") is None:
                continue
            commands = list(hook() or ())
        except Exception:  # a broken plugin that is not enabled must not break the CLI
            continue
        out += [(name, c) for c in commands if isinstance(c, Command)]
    return out


def _enable_list(plugin: str, discovery: Discovery, enabled: Collection[str]) -> list[str]:
    """``plugin`` after the installed plugins it requires (transitively) that are not enabled."""
    order: list[str] = []

    def visit(name: str) -> None:
        if name in order or name in enabled:
            return
        order.append(name)  # marks it visited; moved behind its requirements below
        info = discovery.installed.get(name)
        try:
            requires = info.load().requires if info is not None else ()
        except PluginLoadError:
            requires = ()
        for dep in requires:
            visit(dep)
        order.remove(name)
        order.append(name)

    visit(plugin)
    return order


def _not_enabled(
    plugin: str,
    command: Command,
    discovery: Discovery,
    config_path: Path,
    enabled: Collection[str],
    config_errors: Sequence[str],
) -> Callable[[argparse.Namespace], int]:
    """The ``func`` of a command whose plugin is not enabled: say how to enable it, exit 2."""

    def run(args: argparse.Namespace) -> int:
        if config_errors:  # whether the plugin is enabled is unknown until the config is fixed
            for line in config_errors:
                print(f"error: {line}", file=sys.stderr)
            return EXIT_CONFIG
        names = ", ".join(json.dumps(n) for n in _enable_list(plugin, discovery, enabled))
        where = f"in {config_path}" if config_path.is_file() else f"(no config found: {config_path})"
        print(
            f"error: command {command.name!r} comes from plugin {plugin!r}, which is not enabled "
            f"{where}; enable it in the [kernel] table of {config_path}: plugins = [..., {names}]",
            file=sys.stderr,
        )
        return EXIT_CONFIG

    return run


def _add_command(
    sub: argparse._SubParsersAction[argparse.ArgumentParser], command: Command, origin: str, **defaults: Any
) -> None:
    """Add a plugin's command to the sub-parsers ``sub``; its help names ``origin``."""
    p = sub.add_parser(command.name, help=f"{command.help} [{origin}]")
    if command.add_arguments is not None:
        command.add_arguments(p)
    p.set_defaults(**defaults)


def build_parser(
    kernel: Kernel | None,
    *,
    installed: bool = True,
    discovery: Discovery | None = None,
    config_path: Path | None = None,
    config_errors: Sequence[str] = (),
) -> argparse.ArgumentParser:
    """The argument parser: built-in commands, the enabled plugins' commands (run on ``kernel``).

    With ``installed`` the commands of every other installed plugin are listed too; running one
    says how to enable its plugin (or prints ``config_errors`` when the config did not load).
    """
    parser = argparse.ArgumentParser(
        prog="kernel", description="milo-kernel: run and inspect a plugin-based service kernel."
    )
    parser.add_argument("--config", "-c", help=CONFIG_HELP)
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

    p = sub.add_parser("plugins", help="installed plugins, enabled set and load order")
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.set_defaults(func=cmd_plugins)

    p = sub.add_parser("check", help="validate the config (exit 2 on errors)")
    p.set_defaults(func=cmd_check)

    p = sub.add_parser("config", help="config commands")
    csub = p.add_subparsers(dest="config_command", metavar="SUBCOMMAND", required=True)
    show = csub.add_parser("show", help="effective config, secrets masked")
    show.add_argument("--json", action="store_true", help="JSON instead of TOML")
    show.set_defaults(func=cmd_config_show)

    p = sub.add_parser("serve", help="serve health, metrics and plugin routes (or --app) on uvicorn")
    _serve.add_arguments(p)
    p.set_defaults(func=_serve.cmd_serve)

    p = sub.add_parser("health", help="boot the kernel, print services and health, stop")
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.add_argument(
        "--probes",
        action="store_true",
        help="print the Kubernetes probes matching the config (YAML) instead; does not boot",
    )
    p.add_argument(
        "--port", type=int, default=_serve.DEFAULT_PORT, help="port in --probes (default %(default)s)"
    )
    p.set_defaults(func=cmd_health)

    taken = set(sub.choices)
    enabled: list[str] = []
    if kernel is not None:
        enabled = list(kernel.load_order)
        for plugin, command in kernel.cli_commands():
            if command.name in taken:
                raise KernelError(f"plugin {plugin!r} contributes command {command.name!r}, which is taken")
            taken.add(command.name)
            _add_command(sub, command, plugin, func=_run_plugin_command(command), _kernel=kernel)
    if installed:
        found = discovery or (kernel.discovery if kernel is not None else discover())
        path = config_path or resolve_config_path(None, os.environ)
        for plugin, command in installed_commands(found, skip=enabled):
            if command.name in taken:  # an enabled plugin's or a built-in command wins
                continue
            taken.add(command.name)
            func = _not_enabled(plugin, command, found, path, enabled, config_errors)
            _add_command(sub, command, f"{plugin}, not enabled", func=func)
    for child in sub.choices.values():
        _accept_global_options(child)
    return parser


def _leaves(group: BaseExceptionGroup[BaseException]) -> list[BaseException]:
    out: list[BaseException] = []
    for exc in group.exceptions:
        out += _leaves(exc) if isinstance(exc, BaseExceptionGroup) else [exc]
    return out


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``kernel`` console script."""
    argv = list(sys.argv[1:] if argv is None else argv)
    pre = argparse.ArgumentParser(add_help=False)
    pre.add_argument("--config", "-c")
    pre.add_argument("-h", "--help", action="store_true")
    pre.add_argument("command", nargs="?")
    known, _ = pre.parse_known_args(argv)
    if known.command in BUILTIN_COMMANDS:
        configure_logging()
        parser = build_parser(None, installed=False)
    else:
        parser = _plugin_parser(known)
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return EXIT_OK
    try:
        code: int = args.func(args)
    except ConfigError as exc:
        for line in exc.errors:
            print(f"error: {line}", file=sys.stderr)
        return EXIT_CONFIG
    except KernelError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_FAIL
    except KeyboardInterrupt:
        return 130
    except BaseExceptionGroup as group:
        # A task group around a kernel error: report it as `kernel health` does, not as a traceback.
        leaves = _leaves(group)
        if not leaves or not all(isinstance(e, KernelError) for e in leaves):
            raise
        for leaf in leaves:
            lines = leaf.errors if isinstance(leaf, ConfigError) else [str(leaf)]
            for line in lines:
                print(f"error: {line}", file=sys.stderr)
        return EXIT_CONFIG if all(isinstance(e, ConfigError) for e in leaves) else EXIT_FAIL
    return code


def _plugin_parser(known: argparse.Namespace) -> argparse.ArgumentParser:
    """The parser for bare ``kernel``, ``--help`` or a plugin command.

    Plugin commands come from every installed plugin; those of the plugins the config
    enables run on its kernel.
    """
    config_path = resolve_config_path(known.config, os.environ)
    running = known.command is not None and not known.help
    kernel: Kernel | None = None
    errors: list[str] = []
    if config_path.is_file():
        try:
            kernel = Kernel.from_config(known.config, configure_logs=running)
        except ConfigError as exc:
            errors = exc.errors
    if kernel is None and running:
        configure_logging()
    enabled_names = {c.name for _, c in kernel.cli_commands()} if kernel is not None else set()
    return build_parser(
        kernel,
        installed=not running or known.command not in enabled_names,
        config_path=config_path,
        config_errors=errors,
    )


if __name__ == "__main__":
    raise SystemExit(main())
