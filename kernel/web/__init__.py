"""Serving the kernel over HTTP: ASGI glue for host apps and ``kernel serve``.

- :class:`KernelApp`: a pure ASGI app serving ``/health`` and every plugin route.
- :func:`lifespan_for`: a Starlette/FastAPI ``lifespan=`` that boots and stops a kernel;
  :class:`LifespanMiddleware` does the same for any ASGI app.
- :func:`serve`: run a kernel (or any ASGI app) on uvicorn with a graceful shutdown.
- ``ASGIApp``, ``Scope``, ``Receive``, ``Send``, ``Message``: the ASGI types routes and
  middleware are written with.

Importing this package does not import uvicorn; :func:`serve` does.
"""

from .._plugin import ASGIApp, Message, Receive, Scope, Send
from ._app import KernelApp
from ._lifespan import LifespanMiddleware, lifespan_for
from ._serve import serve

__all__ = [
    "ASGIApp",
    "KernelApp",
    "LifespanMiddleware",
    "Message",
    "Receive",
    "Scope",
    "Send",
    "lifespan_for",
    "serve",
]
