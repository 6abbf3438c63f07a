"""``kernel serve``: run the kernel's ASGI app, or a host app, on uvicorn with a graceful shutdown."""

from __future__ import annotations

import argparse
import contextlib
import inspect
import logging
import math
import os
import signal
import sys
import threading
import tomllib
from collections.abc import AsyncIterator, Iterator, Mapping
from pathlib import Path
from types import FrameType
from typing import TYPE_CHECKING, Any, cast

from .._config import KernelSettings, coerce_env_value, resolve_config_path, structure
from .._errors import ConfigError
from .._importing import import_object
from .._kernel import Kernel
from .._plugin import ASGIApp, Receive, Scope, Send
from ..logging import configure_logging
from ._app import KernelApp, send_json
from ._drain import Drain
from ._lifespan import KernelOrFactory, lifespan_for, run_lifespan

if TYPE_CHECKING:
    import uvicorn

log = logging.getLogger("kernel.serve")

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 4000
EXIT_OK, EXIT_FAIL = 0, 1


class ServedApp:
    """The app ``kernel serve`` runs: the lifespan boots the kernel, then builds its :class:`KernelApp`.

    The KernelApp is built only after boot because plugin routes and middleware
    may need services that exist only once their plugins have started.
    """

    def __init__(self, kernel: KernelOrFactory) -> None:
        self._kernel = kernel
        self._app: ASGIApp | None = None
        self.kernel: Kernel | None = None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            await run_lifespan(scope, receive, send, self._serving(), name="kernel serve")
            return
        if self._app is None:
            if scope["type"] == "http":
                await send_json(
                    send,
                    503,
                    {"status": 503, "title": "Service Unavailable"},
                    content_type="application/problem+json",
                )
            return
        await self._app(scope, receive, send)

    @contextlib.asynccontextmanager
    async def _serving(self) -> AsyncIterator[dict[str, Any]]:
        """The kernel booted, and its app built, for as long as the server runs."""
        async with lifespan_for(self._kernel)(None) as state:
            kernel: Kernel = state["kernel"]
            app = KernelApp(kernel)
            paths = ", ".join(r.path for r in app.routes)
            self._app, self.kernel = app, kernel
            log.info("kernel serve: ready", extra={"routes": paths})
            yield state
            self._app = None
            log.info("kernel serve: shutting down")


DRAIN_KEYS = ("drain_delay", "drain_timeout")
HOST_APP_ENV = "KERNEL_SERVE_APP"
"""``module:attr`` of the host app each ``--workers`` process of ``kernel serve --app`` imports."""


def drain_settings(config_path: Path, environ: Mapping[str, str] = os.environ) -> tuple[float, float]:
    """``(drain_delay, drain_timeout)`` from the ``[kernel]`` table of ``config_path`` and the environment.

    For a host app (``--app``), whose lifespan loads the rest of the config itself. Raises
    ``ConfigError`` naming the key (``kernel.drain_delay: ...``) when they are invalid.
    """
    try:
        with config_path.open("rb") as fh:
            table = tomllib.load(fh).get("kernel", {})
    except OSError:
        table = {}
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError([f"{config_path}: {exc}"]) from exc
    picked = {k: table[k] for k in DRAIN_KEYS if isinstance(table, dict) and k in table}
    for key in DRAIN_KEYS:
        raw = environ.get(f"KERNEL__KERNEL__{key.upper()}")
        if raw is not None:
            picked[key] = coerce_env_value(raw, float)
    settings, errors = structure(picked, KernelSettings, "kernel")
    if settings is None:
        raise ConfigError(errors)
    return settings.drain_delay, settings.drain_timeout


def app_factory() -> Drain:
    """Build the served app from ``$KERNEL_CONFIG`` (what each ``--workers`` process runs)."""
    path = resolve_config_path(None, os.environ)
    delay, timeout = drain_settings(path)
    served = ServedApp(lambda: Kernel.from_config(path, configure_logs=True))
    return Drain(served, delay=delay, timeout=timeout)


def host_app_factory() -> Drain:
    """Import the host app named by ``$KERNEL_SERVE_APP`` and wrap it in the drain (``--app --workers N``)."""
    delay, timeout = drain_settings(resolve_config_path(None, os.environ))
    host = import_object(os.environ[HOST_APP_ENV])
    if not callable(host):
        raise TypeError(f"{os.environ[HOST_APP_ENV]} is not an ASGI app (not callable)")
    return Drain(cast(ASGIApp, host), delay=delay, timeout=timeout)


@contextlib.contextmanager
def _exit_signals_stop(server: uvicorn.Server | None) -> Iterator[None]:
    """While serving, SIGINT/SIGTERM stop the server gracefully instead of ending this process.

    uvicorn's ``Server`` installs its own handlers while it serves and, after a graceful
    stop, raises the signal it caught again for the handler that was there before: this
    one, which only asks the server to exit (``should_exit``, a no-op by then). So the
    kernel's teardown runs and ``kernel serve`` exits 0. Signals are only handled in the
    main thread.
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def stop(signum: int, frame: FrameType | None) -> None:
        if server is not None:
            server.should_exit = True

    handled = (signal.SIGINT, signal.SIGTERM)
    original = {sig: signal.signal(sig, stop) for sig in handled}
    try:
        yield
    finally:
        for sig, handler in original.items():
            signal.signal(sig, handler)


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
    parser.add_argument(
        "--config",
        "-c",
        default=argparse.SUPPRESS,
        help="config file (default $KERNEL_CONFIG or ./kernel.toml)",
    )
    parser.add_argument("--host", default=DEFAULT_HOST, help=f"bind address (default {DEFAULT_HOST})")
    parser.add_argument("--port", type=int, default=DEFAULT_PORT, help=f"port (default {DEFAULT_PORT})")
    parser.add_argument(
        "--app",
        metavar="MODULE:ATTR",
        help="serve this host ASGI app (it embeds the kernel) instead of the kernel's app",
    )
    parser.add_argument("--app-dir", default=".", help="directory put on sys.path for --app (default .)")
    parser.add_argument(
        "--workers",
        type=int,
        default=1,
        help="worker processes (set PROMETHEUS_MULTIPROC_DIR for metrics across them)",
    )
    parser.add_argument(
        "--no-access-log", dest="access_log", action="store_false", help="don't log one line per request"
    )


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
    configure_logging(
        str(table.get("env", "development")),
        str(table.get("log_level", "INFO")),
        str(table.get("log_format", "auto")),
    )


def cmd_serve(args: argparse.Namespace) -> int:
    """Run the app until SIGTERM/SIGINT; the kernel's teardown runs before exit 0."""
    try:
        import uvicorn  # noqa: F401 - checked first: one line saying what to install, not a traceback
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
        delay, timeout = drain_settings(config_path)  # a ConfigError is printed by main()
        try:
            host_app = import_object(args.app)
        except ValueError as exc:
            print(f"error: --app: {exc}", file=sys.stderr)
            return EXIT_FAIL
        if args.workers > 1:
            os.environ[HOST_APP_ENV] = args.app
            app, factory = "kernel.web._serve:host_app_factory", True
        else:
            app = host_app
    else:
        # Fail fast on a bad config; the plugins' checks see how many processes will serve it.
        kernel = Kernel.from_config(config_path, configure_logs=True, processes=args.workers)
        delay, timeout = kernel.settings.drain_delay, kernel.settings.drain_timeout
        if args.workers > 1:
            app, factory = "kernel.web._serve:app_factory", True
        else:
            app = kernel

    return serve(
        app,
        host=args.host,
        port=args.port,
        workers=args.workers,
        factory=factory,
        access_log=args.access_log,
        drain_delay=delay,
        drain_timeout=timeout,
    )


def serve(
    app: Kernel | ASGIApp | str,
    *,
    host: str = DEFAULT_HOST,
    port: int = DEFAULT_PORT,
    workers: int = 1,
    factory: bool = False,
    access_log: bool = True,
    drain_delay: float | None = None,
    drain_timeout: float | None = None,
) -> int:
    """Serve on uvicorn until SIGTERM/SIGINT; return 0 after a graceful stop, 1 if startup failed
    or the drain deadline cut requests.

    ``app`` is a :class:`~kernel.Kernel` (its ``/health`` and plugin routes are served; it
    boots when the server starts), any ASGI app, or a ``"module:attr"`` import string, which
    ``workers > 1`` needs (each worker process imports it; ``factory=True`` when it names a
    function returning the app). Needs ``uvicorn`` (``pip install 'milo-kernel[serve]'``).

    At SIGTERM, ``/health/ready`` answers 503 at once; serving goes on for ``drain_delay``
    seconds, then uvicorn stops accepting and requests still running ``drain_timeout`` seconds
    after the signal are cut (see ``[kernel] drain_delay``/``drain_timeout``, a kernel's own
    settings by default). An import string app is served as is (it is its own drain).
    """
    import uvicorn

    if workers > 1 and not isinstance(app, str):
        raise ValueError(f"serve(workers={workers}) needs the app as a 'module:attr' import string")
    defaults = app.settings if isinstance(app, Kernel) else KernelSettings()
    delay = defaults.drain_delay if drain_delay is None else drain_delay
    timeout = defaults.drain_timeout if drain_timeout is None else drain_timeout
    served: Any = app
    drain: Drain | None = None
    if not isinstance(app, str):
        served = drain = Drain(
            ServedApp(app) if isinstance(app, Kernel) else app, delay=delay, timeout=timeout
        )
    config = uvicorn.Config(
        served,
        host=host,
        port=port,
        factory=factory,
        workers=workers,
        lifespan="on",
        log_config=None,
        access_log=access_log,
        # A backstop for what the drain does not track (websockets): it cuts HTTP requests itself.
        timeout_graceful_shutdown=math.ceil(timeout) + 1,
        **_fresh_context_option(uvicorn),
    )
    log.info("kernel serve: http://%s:%d (%d worker(s))", host, port, workers)
    try:
        if workers > 1:
            from uvicorn.supervisors import Multiprocess

            with _exit_signals_stop(None):
                Multiprocess(config, sockets=[config.bind_socket()]).run()
        else:
            server = uvicorn.Server(config)
            with _exit_signals_stop(server):
                server.run()
            if not server.started:
                return EXIT_FAIL
    except SystemExit as exc:  # uvicorn exits 3 when the lifespan startup failed
        return EXIT_FAIL if exc.code else EXIT_OK
    if drain is not None and drain.cut:
        log.error("kernel serve: stopped; %d request(s) were cut at the drain deadline", drain.cut)
        return EXIT_FAIL
    log.info("kernel serve: stopped")
    return EXIT_OK
