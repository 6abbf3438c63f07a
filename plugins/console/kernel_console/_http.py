"""The console's request and response types, and what a page or an action returns."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from typing import Any
from urllib.parse import parse_qsl

import attrs

from ._html import Safe, form, url


@attrs.define
class Request:
    """One console request: the path under the mount, its query, form and the caller."""

    scope: Mapping[str, Any]
    method: str
    base: str
    """The mount path (``/console``)."""
    sub: str
    """The path under it (``""`` for the overview, ``/queues`` ...)."""
    query: dict[str, str]
    who: str
    csrf_token: str
    """The token this request's forms carry."""
    form: dict[str, str] = attrs.field(factory=dict)

    def arg(self, name: str, default: str = "") -> str:
        """A query parameter."""
        return self.query.get(name, default)

    def field(self, name: str) -> str:
        """A form field (``""`` when absent)."""
        return self.form.get(name, "")

    def page_number(self) -> int:
        """The ``page`` query parameter (>= 1)."""
        raw = self.arg("page", "1")
        return max(1, int(raw)) if raw.isdigit() else 1

    def href(self, path: str = "", **query: object) -> str:
        """A link inside the console."""
        return url(self.base, path, **query)

    def post(self, action: str, label: str, fields: dict[str, object] | None = None, **kw: Any) -> Safe:
        """A button posting ``action`` with ``fields``, the CSRF token and the page to come back to."""
        back = self.href(self.sub, **self.query)
        return form(
            self.href(f"/action/{action}"), self.csrf_token, label, {**(fields or {}), "back": back}, **kw
        )


def parse_form(body: bytes) -> dict[str, str]:
    """An ``application/x-www-form-urlencoded`` body (the last value of a repeated field wins)."""
    return dict(parse_qsl(body.decode("utf-8", "replace"), keep_blank_values=True))


@attrs.frozen
class Page:
    """What a GET handler renders."""

    title: str
    body: Safe
    section: str


@attrs.frozen
class Done:
    """An action that ran: the message shown and how it ended (``ok`` or ``error``)."""

    message: str
    target: str
    ok: bool = True


@attrs.frozen
class Confirm:
    """A bulk action that needs a second, confirmed POST: the question and what it will affect."""

    title: str
    question: str
    target: str
    fields: dict[str, str] = attrs.field(factory=dict)


PageHandler = Callable[[Request], Awaitable[Page]]
"""Renders one console page."""


class NotFound(LookupError):
    """No such page or object (404)."""


class BadRequest(ValueError):
    """A malformed request (400): a missing field, an unknown state."""
