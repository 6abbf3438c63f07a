"""The base of the kernel's pure-ASGI middleware: the wrapped app, and the cheapest way to call it."""

from __future__ import annotations

from types import FunctionType

from .._plugin import ASGIApp


class ASGIMiddleware:
    """Base of a pure-ASGI middleware around one app; costs nothing per request.

    Setting :attr:`app` (``self.app = app`` in ``__init__``) also sets, for ``__call__`` to use:

    - ``_call``: what to await the app through: ``app.__call__`` bound once when the app's class
      defines ``__call__`` in Python (calling the bound method skips the type-slot lookup an instance
      call goes through), else the app itself;
    - ``_status_in_scope``: whether the app records each response's status under
      ``scope[kernel.web.RESPONSE_STATUS]`` (its ``records_response_status`` is ``True``), so that this
      layer reads it there after the app returns instead of wrapping ``send`` for it.

    ``records_response_status`` is ``False`` here; a subclass that records the status sets it to ``True``.
    In ``__call__``, read ``call = self._call`` into a local and ``await call(...)``: CPython 3.11
    specialises that attribute load, while ``self._call(...)`` is a method lookup it cannot specialise
    (an instance attribute), which goes through the class hierarchy on every request.

    >>> class Passthrough(ASGIMiddleware):
    ...     def __init__(self, app: ASGIApp) -> None:
    ...         self.app = app
    ...
    ...     async def __call__(self, scope, receive, send):
    ...         call = self._call
    ...         await call(scope, receive, send)
    """

    records_response_status: bool = False
    """Whether every HTTP response's status ends up in ``scope[kernel.web.RESPONSE_STATUS]``."""

    _app: ASGIApp
    _call: ASGIApp
    _status_in_scope: bool

    @property
    def app(self) -> ASGIApp:
        """The wrapped app."""
        return self._app

    @app.setter
    def app(self, app: ASGIApp) -> None:
        self._app = app
        self._call = app.__call__ if isinstance(type(app).__call__, FunctionType) else app  # type: ignore[operator]
        self._status_in_scope = getattr(app, "records_response_status", False) is True
