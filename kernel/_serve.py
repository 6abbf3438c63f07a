"""``kernel serve``: run the kernel's ASGI app, or a host app, on uvicorn with a graceful shutdown."""

from __future__ import annotations

import argparse
import contextlib
import importlib
import inspect
import logging
import os
import signal
import sys
import tomllib
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from ._asgi import KernelApp, send_json
from ._config import resolve_config_path
from ._kernel import Kernel
from ._logging import configure_logging
from ._plugin import ASGIApp, Receive, Scope, Send

log = logging.getLogger("kernel.serve")

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 4000
EXIT_OK, EXIT_FAIL = 0, 1


class ServedApp:
    """The app ``kernel serve`` runs: the lifespan boots the kernel, then builds its :class:`KernelApp`.

    The KernelApp is built only after boot because plugin routes and middleware
    may need services that exist only once their plugins have started.
    """

    def __init__(self, kernel: Kernel | Callable[[], Kernel]) -> None:
        self._make = kernel if callable(kernel) and not isinstance(kernel, Kernel) else (lambda: kernel)
        self._app: ASGIApp | None = None
        self.kernel: Kernel | None = None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            await self._lifespan(scope, receive, send)
            return
        if self._app is None:
            if scope["type"] == "http":
                await send_json(send, 503, {"status": 503, "title": "Service Unavailable"},
                                content_type="application/problem+json")
            return
        await self._app(scope, receive, send)

    async def _lifespan(self, scope: Scope, receive: Receive, send: Send) -> None:
        message = await receive()
        assert message["type"] == "lifespan.startup"
        kernel: Kernel | None = None
        try:
            kernel = self._make()
            await kernel.start()
            self._app = KernelApp(kernel)
        except Exception as exc:
            log.error("kernel serve: startup failed: %s", exc)
            if kernel is not None and kernel.booted:
                await kernel.stop()
            await send({"type": "lifespan.startup.failed", "message": str(exc)})
            return
        self.kernel = kernel
        if "state" in scope:
            scope["state"]["kernel"] = kernel
        paths = ", ".join(r.path for r in self._app.routes) if isinstance(self._app, KernelApp) else ""
        log.info("kernel serve: ready", extra={"routes": paths})
        await send({"type": "lifespan.startup.complete"})

        message = await receive()
        assert message["type"] == "lifespan.shutdown"
        self._app = None
        log.info("kernel serve: shutting down")
        try:
            await kernel.stop()
        except Exception as exc:
            log.error("kernel serve: shutdown failed: %s", exc)
            await send({"type": "lifespan.shutdown.failed", "message": str(exc)})
            return
        await send({"type": "lifespan.shutdown.complete"})


def app_factory() -> ServedApp:
    """Build the served app from ``$KERNEL_CONFIG`` (what each ``--workers`` process runs)."""
    return ServedApp(lambda: Kernel.from_config(os.environ.get("KERNEL_CONFIG"), configure_logs=True))


def _server_class() -> type[Any]:
    import uvicorn

    class Server(uvicorn.Server):
        """uvicorn's server, minus re-raising the caught signal after a graceful stop (we exit 0)."""

        @contextlib.contextmanager
        def capture_signals(self) -> Iterator[None]:
            handled = (signal.SIGINT, signal.SIGTERM)
            original = {sig: signal.signal(sig, self.handle_exit) for sig in handled}
            try:
                yield
            finally:
                for sig, handler in original.items():
                    signal.signal(sig, handler)

    return Server


def _fresh_context_option(uvicorn: Any) -> dict[str, Any]:
    """``reset_contextvars=True`` where the installed uvicorn has it (0.45 and later).

    Each request then starts from an empty context: without it, uvicorn may start a request
    from a copy of the previous one's on the same connection (after pausing reading for a body
    above 64 KiB, or for a pipelined request), and every context variable a library set during
    that request, and never reset, leaks into it. Context set in the lifespan is not visible
    to requests any more; the kernel keeps none there.
    """
    if "reset_contextvars" in inspect.signature(uvicorn.Config).parameters:
        return {"reset_contextvars": True}
    return {}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of ``kernel serve``."""
    # SUPPRESS keeps ``kernel --config X serve`` working: the sub-parser must not reset it to None.
    parser.add_argument("--config", "-c", default=argparse.SUPPRESS,
                        help="config file (default $KERNEL_CONFIG or ./kernel.toml)")
    parser.add_argument("--host", default=DEFAULT_HOST, help=f"bind address (default {DEFAULT_HOST})")
    parser.add_argument("--port", type=int, default=DEFAULT_PORT, help=f"port (default {DEFAULT_PORT})")
    parser.add_argument("--app", metavar="MODULE:ATTR",
                        help="serve this host ASGI app (it embeds the kernel) instead of the kernel's app")
    parser.add_argument("--app-dir", default=".", help="directory put on sys.path for --app (default .)")
    parser.add_argument("--workers", type=int, default=1,
                        help="worker processes (set PROMETHEUS_MULTIPROC_DIR for metrics across them)")
    parser.add_argument("--no-access-log", dest="access_log", action="store_false",
                        help="don't log one line per request")


def _configure_logs_from_file(path: Path) -> None:
    # A host app validates its own config in its lifespan; here we only need the log settings.
    try:
        with path.open("rb") as fh:
            table = tomllib.load(fh).get("kernel", {})
    except (OSError, tomllib.TOMLDecodeError):
        table = {}
    for key in ("env", "log_level", "log_format"):
        var = f"KERNEL__KERNEL__{key.upper()}"
        if var in os.environ:
            table[key] = os.environ[var]
    configure_logging(str(table.get("env", "development")), str(table.get("log_level", "INFO")),
                      str(table.get("log_format", "auto")))


def cmd_serve(args: argparse.Namespace) -> int:
    """Run the app until SIGTERM/SIGINT; the kernel's teardown runs before exit 0."""
    try:
        import uvicorn
    except ImportError:
        print("error: kernel serve needs uvicorn: pip install 'milo-kernel[serve]'", file=sys.stderr)
        return EXIT_FAIL
    if not 0 <= args.port <= 65535:
        print(f"error: --port must be between 0 and 65535, got {args.port}", file=sys.stderr)
        return EXIT_FAIL
    if args.workers < 1:
        print(f"error: --workers must be at least 1, got {args.workers}", file=sys.stderr)
        return EXIT_FAIL
    config_path = resolve_config_path(getattr(args, "config", None), os.environ)
    # Host apps, and worker processes, read the same file through the environment.
    os.environ["KERNEL_CONFIG"] = str(config_path.resolve())

    app: Any
    factory = False
    if args.app:
        app_dir = str(Path(args.app_dir).resolve())
        if app_dir not in sys.path:
            sys.path.insert(0, app_dir)
        _configure_logs_from_file(config_path)
        module_name, _, attr = args.app.partition(":")
        if not module_name or not attr:
            print(f"error: --app expects 'module:attribute', got {args.app!r}", file=sys.stderr)
            return EXIT_FAIL
        try:
            host_app = getattr(importlib.import_module(module_name), attr)
        except (ImportError, AttributeError) as exc:
            print(f"error: cannot import --app {args.app!r}: {exc}", file=sys.stderr)
            return EXIT_FAIL
        app = args.app if args.workers > 1 else host_app
    else:
        # Fail fast on a bad config; the plugins' checks see how many processes will serve it.
        kernel = Kernel.from_config(config_path, configure_logs=True, processes=args.workers)
        if args.workers > 1:
            app, factory = "kernel._serve:app_factory", True
        else:
            app = ServedApp(kernel)

    config = uvicorn.Config(
        app, host=args.host, port=args.port, factory=factory, workers=args.workers,
        lifespan="on", log_config=None, access_log=args.access_log, **_fresh_context_option(uvicorn),
    )
    server = _server_class()(config)
    log.info("kernel serve: http://%s:%d (%d worker(s))", args.host, args.port, args.workers)
    try:
        if args.workers > 1:
            from uvicorn.supervisors import Multiprocess

            sock = config.bind_socket()
            Multiprocess(config, sockets=[sock]).run()
        else:
            server.run()
    except SystemExit as exc:  # uvicorn exits 3 when the lifespan startup failed
        return EXIT_FAIL if exc.code else EXIT_OK
    if args.workers == 1 and not server.started:
        return EXIT_FAIL
    log.info("kernel serve: stopped")
    return EXIT_OK
