"""Pure-ASGI HTTP metrics middleware that labels requests by route template, never by raw path."""

from __future__ import annotations

from bisect import bisect_left
from collections.abc import Awaitable, Callable, Iterable, Mapping, MutableMapping
from time import perf_counter
from typing import Any

from kernel.web import RESPONSE_STATUS, ASGIApp, ASGIMiddleware

from ._collector import OVERFLOW, MetricsCollector
from ._http_series import Series

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
Observer = Callable[[float], None] | Series
"""How one ``(method, template, status)`` is recorded: a callable, or a fast-path :class:`Series`."""

_SEEN = "kernel_metrics.recorded"
"""Scope key marking a request already measured, so nested copies (a mounted KernelApp) don't count twice."""


def _skip(seconds: float) -> None:
    """Stands for the observer of an excluded route (never called)."""


def _is_mount(route: object) -> bool:
    # Starlette Mount/Host expose sub-routes; their matched path is already part of root_path.
    return hasattr(route, "routes") and not hasattr(route, "endpoint")


def _templated(prefix: str, params: Mapping[str, Any]) -> str:
    """Put ``{name}`` back into the concrete mount prefix for segments that are path parameters."""
    if not prefix or not params:
        return prefix
    by_value = {str(v): k for k, v in params.items()}
    return "/".join(f"{{{by_value[s]}}}" if s in by_value else s for s in prefix.split("/"))


def route_template(scope: Mapping[str, Any], root_path: str, unmatched: str, status: int = 200) -> str:
    """The template of the route that served ``scope``.

    The kernel's ``route_template`` (KernelApp) wins, then Starlette's matched
    ``scope["route"]`` (prefixed by any mount it sits in), else ``unmatched``.
    ``root_path`` is the scope's root path before the app ran. A 404 from inside
    a mounted non-router app (a KernelApp or static files under a Mount) counts as unmatched.
    """
    template = scope.get("route_template")
    if isinstance(template, str):
        return template
    route = scope.get("route")
    path = getattr(route, "path", None)
    if not isinstance(path, str):
        return unmatched
    after = scope.get("root_path", "") or ""
    prefix = after[len(root_path) :] if after.startswith(root_path) else ""
    params = scope.get("path_params") or {}
    if _is_mount(route):
        if status == 404:
            return unmatched
        # The request ended inside a mounted app that is not a router (static files, a sub-app).
        outer = prefix[: -len(path)] if path and prefix.endswith(path) else prefix
        return _templated(outer, params) + path + "/{path}"
    return _templated(prefix, params) + path


class MetricsMiddleware(ASGIMiddleware):
    """Measure every HTTP request: count, duration and in-flight gauge, labelled by route template.

    ``collector`` may be omitted when the app runs under :func:`kernel.kernel_lifespan`:
    it is then resolved from the booted kernel in the lifespan state on first use.
    Requests for ``exclude`` templates, and for the collector's own ``exclude_routes``
    (the plugin's ``exclude_routes`` and, unless ``record_scrapes``, its scrape path),
    are served but not recorded. At most
    ``max_routes`` distinct templates become labels; further ones are recorded as ``<other>``.
    """

    def __init__(
        self,
        app: ASGIApp,
        collector: MetricsCollector | Callable[[], MetricsCollector] | None = None,
        *,
        exclude: Iterable[str] = (),
        unmatched_route: str = "<unmatched>",
        max_routes: int = 1000,
    ) -> None:
        self.app = app
        self._collector = collector if isinstance(collector, MetricsCollector) else None
        self._explicit = self._collector is not None
        self._factory = collector if callable(collector) and self._collector is None else None
        self._kernel: object = None
        self._exclude = frozenset(exclude)
        self._unmatched = unmatched_route
        self._max_routes = max_routes
        self._routes: set[str] = set()
        self._by_route: dict[int, tuple[object, str]] = {}
        # (method, template, status) -> the collector's observer for it, or _skip when excluded
        # (cleared when the collector changes; bounded like the collector's own series).
        self._observers: dict[tuple[str, str, int], Observer] = {}

    def _resolve(self, scope: Scope) -> MetricsCollector | None:
        if self._factory is not None:
            self._collector = self._factory()
            self._factory = None
            self._observers.clear()
            return self._collector
        kernel = (scope.get("state") or {}).get("kernel")
        if kernel is not None and kernel is not self._kernel:
            self._kernel = kernel
            self._collector = kernel.registry.find(MetricsCollector)
            self._observers.clear()
        return self._collector

    def _label(self, template: str) -> str:
        if template in self._routes:
            return template
        if len(self._routes) >= self._max_routes:
            return OVERFLOW
        self._routes.add(template)
        return template

    def _observer(self, collector: MetricsCollector, key: tuple[str, str, int]) -> Observer:
        """Where requests of ``key`` are recorded: exclusions, the route budget, the collector's series.

        A :class:`Series` of the single-process fast path is kept itself: ``__call__`` inlines its
        ``observe``.
        """
        method, template, status = key
        observer: Observer
        if template in self._exclude or template in collector.exclude_routes:
            observer = _skip
        else:
            observer = collector.http_observer(method, self._label(template), status)
            series = getattr(observer, "__self__", None)
            if type(series) is Series and observer == series.observe:
                observer = series
        if len(self._observers) < collector.max_series:
            self._observers[key] = observer
        return observer

    def _template(self, scope: Scope, root_path: str, status: int) -> str:
        template = scope.get("route_template")
        if template is not None:
            return str(template)
        route = scope.get("route")
        if route is None:  # no route matched (a 404 from the router) or a bare ASGI app
            return self._unmatched
        # Fast path: a plain route outside any mount; its template never changes.
        if scope.get("root_path", "") == root_path:
            # Starlette routes are unhashable; key by id and check identity so a reused id can't lie.
            entry = self._by_route.get(id(route))
            if entry is not None and entry[0] is route:
                return entry[1]
            template = route_template(scope, root_path, self._unmatched, status)
            if not _is_mount(route) and len(self._by_route) < self._max_routes:
                self._by_route[id(route)] = (route, template)
            return template
        return route_template(scope, root_path, self._unmatched, status)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:  # noqa: C901 - inlined hot path
        call = self._call  # an attribute load (specialised), where self._call(...) is an unspecialised lookup
        if scope["type"] != "http" or _SEEN in scope:
            await call(scope, receive, send)
            return
        collector = self._collector if self._explicit else self._resolve(scope)
        if collector is None:
            await call(scope, receive, send)
            return
        scope[_SEEN] = True
        root_path = scope.get("root_path", "")
        counted = collector._mp_dir is None  # in flight as a plain int (else the multiprocess gauge)
        if counted:
            collector._in_flight += 1
        else:
            collector.request_started()
        # The status: 500 unless the app starts a response (an escaping exception becomes the
        # server's 500); read from the scope when the app records it there (ErrorMiddleware does).
        box: list[int] | None = None
        if self._status_in_scope:
            app_send = send
        else:
            box = [500]

            # A plain function handing back send's awaitable: no coroutine of its own per message.
            # Defaults, not a closure: no cells for this function to make on every request.
            def app_send(message: Message, send: Send = send, box: list[int] = box) -> Awaitable[None]:
                if message["type"] == "http.response.start":
                    box[0] = message["status"]
                return send(message)

        t0 = perf_counter()
        try:
            await call(scope, receive, app_send)
        finally:
            elapsed = perf_counter() - t0
            if counted:
                collector._in_flight -= 1
            else:
                collector.request_finished()
            status = scope.get(RESPONSE_STATUS, 500) if box is None else box[0]
            # _template()'s fast path inlined: a plain route outside any mount, seen before
            route = scope.get("route")
            if "route_template" in scope:
                template = self._template(scope, root_path, status)
            elif route is None:  # no route matched (a 404 from the router) or a bare ASGI app
                template = self._unmatched
            else:
                entry = self._by_route.get(id(route))
                if entry is not None and entry[0] is route and scope.get("root_path", "") == root_path:
                    template = entry[1]
                else:
                    template = self._template(scope, root_path, status)
            key = (scope["method"], template, status)
            observe = self._observers.get(key)
            if observe is None:
                observe = self._observer(collector, key)
            if type(observe) is Series:  # Series.observe, inlined (single-process mode)
                index = 0 if elapsed <= observe.first else bisect_left(observe.upper, elapsed)
                lock = observe.lock
                lock.acquire()
                try:
                    observe.sum += elapsed
                    observe.buckets[index] += 1
                finally:
                    lock.release()
            elif observe is not _skip:
                observe(elapsed)  # type: ignore[operator]
