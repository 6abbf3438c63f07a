"""The errors plugin: a shared ProblemRenderer and the error middleware for served apps."""

from __future__ import annotations

import logging
import re
from collections.abc import AsyncIterator
from importlib import metadata
from typing import Literal

import attrs

from kernel import CheckIssue, Middleware, Plugin, PluginContext, hookimpl
from kernel.web import ASGIApp

_HEADER_NAME = re.compile(r"[A-Za-z0-9-]{1,64}")
_LEVELS = {"debug": logging.DEBUG, "info": logging.INFO, "warning": logging.WARNING}


def _url_base(_inst: object, attribute: attrs.Attribute[str | None], value: str | None) -> None:
    if value is not None and not value.startswith(("https://", "http://", "urn:", "tag:")):
        raise ValueError(f"'{attribute.name}' must be an absolute URI prefix, got {value!r}")


def _header_name(_inst: object, attribute: attrs.Attribute[str], value: str) -> None:
    if not _HEADER_NAME.fullmatch(value):
        raise ValueError(
            f"'{attribute.name}' must be an HTTP header name (letters, digits, '-'), got {value!r}"
        )


@attrs.define(frozen=True)
class ErrorsConfig:
    """The ``[plugins.errors]`` table."""

    type_base_url: str | None = attrs.field(default=None, validator=_url_base)
    """Problem ``type`` URIs become ``<type_base_url><code-slug>``; ``about:blank`` when unset."""
    expose_context: bool = False
    """Show an operational error's ``context`` in the response (``internal`` is never shown).

    Off by default: context is written for logs and often names collections, ids or
    queries; the message and validation ``errors`` are what clients need.
    """
    trace_header: str = attrs.field(default="x-request-id", validator=_header_name)
    """Request/response header carrying the trace id."""
    client_error_log_level: Literal["debug", "info", "warning"] = "info"
    """Log level of 4xx errors (5xx always log at ERROR with the traceback)."""
    middleware_order: int = 20
    """Position among kernel middleware (lower is further out): just inside metrics (10), so
    metrics records the status the client got, and outside everything else."""


class ErrorsPlugin(Plugin):
    """Registers a :class:`ProblemRenderer` and wraps the served app in :class:`ErrorMiddleware`."""

    name = "errors"
    version = metadata.version("milo-kernel-errors")  # one source: the distribution's pyproject.toml
    config_class = ErrorsConfig
    provides = ("errors", "ProblemRenderer")
    description = "AppError hierarchy rendered as RFC 9457 problem+json"

    @hookimpl
    def kernel_check(self, ctx: PluginContext[ErrorsConfig]) -> list[CheckIssue]:
        """A production issue when ``expose_context`` shows internal error context to clients."""
        if ctx.config.expose_context:
            return [
                CheckIssue.production(
                    "expose_context",
                    "expose_context = true shows internal error context (collections, ids, "
                    "queries) to every client",
                )
            ]
        return []

    @hookimpl
    async def kernel_lifespan(self, ctx: PluginContext[ErrorsConfig]) -> AsyncIterator[None]:
        """Provide the ``ProblemRenderer`` (also under the name ``errors``) while the kernel runs."""
        from ._problem import ProblemRenderer  # the renderer and middleware: for a booted kernel only

        renderer = ProblemRenderer(ctx.config.type_base_url, ctx.config.expose_context)
        ctx.provide(renderer, name="errors")
        yield

    @hookimpl
    def kernel_middleware(self, ctx: PluginContext[ErrorsConfig]) -> list[Middleware]:
        """The ``ErrorMiddleware`` that renders errors as problem+json, at ``middleware_order``."""
        from ._middleware import ErrorMiddleware  # only a served app needs it (it imports asyncio)
        from ._problem import ProblemRenderer

        cfg = ctx.config
        renderer = ctx.registry.get(ProblemRenderer)

        def wrap(app: ASGIApp) -> ASGIApp:
            return ErrorMiddleware(
                app,
                renderer=renderer,
                trace_header=cfg.trace_header,
                client_error_level=_LEVELS[cfg.client_error_log_level],
            )

        return [Middleware(wrap, order=cfg.middleware_order, name="errors")]
