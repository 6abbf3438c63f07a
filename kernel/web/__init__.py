"""Serving the kernel over HTTP: ASGI glue for host apps and ``kernel serve``.

- :class:`KernelApp`: a pure ASGI app serving ``/health`` and every plugin route.
- :func:`lifespan_for`: a Starlette/FastAPI ``lifespan=`` that boots and stops a kernel;
  :class:`LifespanMiddleware` does the same for any ASGI app.
- :func:`serve`: run a kernel (or any ASGI app) on uvicorn with a graceful shutdown.
- ``ASGIApp``, ``Scope``, ``Receive``, ``Send``, ``Message``: the ASGI types routes and
  middleware are written with.
- :data:`RESPONSE_STATUS`: how stacked middleware share the response status without each
  wrapping ``send``; :func:`send_response`: a complete response in two ``send`` calls.
- :class:`ASGIMiddleware`: the base of a middleware around one app (``app``, and the cheapest way
  to call it), which the errors and metrics plugins' middleware share.

Importing this package does not import uvicorn; :func:`serve` does.
"""

from typing import Final

from .._plugin import ASGIApp, Message, Receive, Scope, Send
from ._app import KernelApp, send_response
from ._lifespan import LifespanMiddleware, lifespan_for
from ._middleware import ASGIMiddleware
from ._serve import serve

RESPONSE_STATUS: Final = "kernel.response_status"
"""Scope key holding the status of the response an app started, set by a middleware that records it.

A middleware whose instances have ``records_response_status = True`` writes, for every HTTP
request it is called with, the status of the ``http.response.start`` message it forwards under
this key (nothing if no response started). A middleware directly around it then reads the key
after the app returns instead of wrapping ``send`` a second time (the errors plugin's
``ErrorMiddleware`` records, the metrics plugin's ``MetricsMiddleware`` reads).
"""

__all__ = [
    "ASGIApp",
    "ASGIMiddleware",
    "KernelApp",
    "LifespanMiddleware",
    "Message",
    "RESPONSE_STATUS",
    "Receive",
    "Scope",
    "Send",
    "lifespan_for",
    "send_response",
    "serve",
]
