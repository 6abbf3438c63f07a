"""The console's ASGI app: access rules, CSRF, routing to the sections, the action log."""

from __future__ import annotations

import hashlib
import hmac
import logging
import secrets
import time
from typing import TYPE_CHECKING, Protocol
from urllib.parse import parse_qsl, urlencode

from kernel.web import Message, Receive, Scope, Send, send_response

from ._config import ConsoleConfig
from ._html import Safe, form, h, page
from ._http import BadRequest, Confirm, Done, NotFound, Page, PageHandler, Request, parse_form
from ._overview import overview
from ._security import CSRF_COOKIE, Csrf, Denied, Guard, cookie, same_origin

if TYPE_CHECKING:
    from prometheus_client import Counter

log = logging.getLogger("kernel.plugins.console")


class Section(Protocol):
    """A part of the console shown when its plugin is enabled."""

    key: str
    """Its name in the navigation and its page path (``/<key>``)."""
    actions: frozenset[str]
    """The actions it runs (``queue.pause`` ...)."""

    def pages(self) -> dict[str, PageHandler]:
        """Page paths (under the mount) -> handlers."""
        ...

    async def act(self, req: Request, action: str) -> Done | Confirm:
        """Run a posted action."""
        ...


class Forbidden(Exception):
    """A refused POST (CSRF token or origin): 403."""


class TooLarge(Exception):
    """A POST body over ``max_form_bytes``: 413."""


class ConsoleApp:
    """A pure ASGI app mounted at ``config.path`` (a prefix route)."""

    def __init__(
        self,
        config: ConsoleConfig,
        sections: list[Section],
        *,
        actions_counter: Counter | None = None,
    ) -> None:
        self.config = config
        self.base = config.path
        self.guard = Guard(config)
        self.csrf = Csrf(config.csrf_secret.get_secret_value().encode() if config.csrf_secret else None)
        self.sections = sections
        self.actions_counter = actions_counter
        self.pages: dict[str, PageHandler] = {"": overview, "/": overview}
        for s in sections:
            self.pages.update(s.pages())
        self._flash_key = secrets.token_bytes(32)

    # ------------------------------------------------------------------ ASGI

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return
        if scope["method"] == "HEAD":
            send = _bodiless(send)
        who = self.guard.check(scope)
        if isinstance(who, Denied):
            extra = [(b"www-authenticate", who.challenge)] if who.challenge else []
            await self._send(send, who.status, self._plain_page("Access denied", who.text), extra)
            return
        nonce = cookie(scope, CSRF_COOKIE)
        fresh = not nonce or len(nonce) > 64
        if fresh:
            nonce = Csrf.new_nonce()
        assert nonce is not None
        path: str = scope["path"]
        root = scope.get("root_path", "")
        if root and path.startswith(root):
            path = path[len(root) :]
        query = dict(parse_qsl(scope.get("query_string", b"").decode("latin-1"), keep_blank_values=True))
        req = Request(
            scope, scope["method"], self.base, path[len(self.base) :], query, who, self.csrf.token(nonce)
        )
        headers = [(b"set-cookie", self._cookie(scope, nonce))] if fresh else []
        try:
            if req.method == "POST":
                await self._post(req, receive, send, nonce if not fresh else None, headers)
            else:
                await self._get(req, send, headers)
        except Forbidden as exc:
            await self._send(send, 403, self._plain_page("Refused", str(exc)), headers)
        except TooLarge:
            await self._send(send, 413, self._plain_page("Too large", "the form is too large"), headers)
        except NotFound as exc:
            await self._send(
                send, 404, self._render(req, Page("Not found", h("<p>{m}</p>", m=exc), "")), headers
            )
        except BadRequest as exc:
            await self._send(
                send, 400, self._render(req, Page("Bad request", h("<p>{m}</p>", m=exc), "")), headers
            )

    def _cookie(self, scope: Scope, nonce: str) -> bytes:
        secure = "; Secure" if scope.get("scheme") == "https" else ""
        return f"{CSRF_COOKIE}={nonce}; Path={self.base}; HttpOnly; SameSite=Strict{secure}".encode()

    async def _get(self, req: Request, send: Send, headers: list[tuple[bytes, bytes]]) -> None:
        handler = self.pages.get(req.sub)
        if handler is None:
            raise NotFound(f"no console page {req.sub!r}")
        result = await handler(req)
        flash, bad = self._flash(req)
        await self._send(send, 200, self._render(req, result, flash, bad), headers)

    # ------------------------------------------------------------------ actions

    async def _read_form(self, receive: Receive) -> dict[str, str]:
        body = bytearray()
        while True:
            message = await receive()
            body += message.get("body", b"")
            if len(body) > self.config.max_form_bytes:
                raise TooLarge()
            if not message.get("more_body"):
                return parse_form(bytes(body))

    async def _post(
        self,
        req: Request,
        receive: Receive,
        send: Send,
        nonce: str | None,
        headers: list[tuple[bytes, bytes]],
    ) -> None:
        req.form = await self._read_form(receive)
        if not same_origin(req.scope):
            raise Forbidden("cross-origin form post refused")
        if not self.csrf.valid(nonce, req.form.get("csrf")):
            raise Forbidden("missing or wrong CSRF token: reload the page and try again")
        if not req.sub.startswith("/action/"):
            raise NotFound(f"no console action at {req.sub!r}")
        action = req.sub[len("/action/") :]
        section = next((s for s in self.sections if action in s.actions), None)
        if section is None:
            raise NotFound(f"no action {action!r}")
        started = time.perf_counter()
        try:
            outcome = await section.act(req, action)
        except (NotFound, BadRequest) as exc:
            self._record(req, action, "refused", str(exc), started)
            raise
        if isinstance(outcome, Confirm):
            self._record(req, action, "previewed", outcome.target, started)
            await self._send(send, 200, self._confirm(req, action, outcome), headers)
            return
        self._record(req, action, "ok" if outcome.ok else "failed", outcome.target, started)
        location = self._back(req, outcome)
        await send(
            {
                "type": "http.response.start",
                "status": 303,
                "headers": [(b"location", location.encode()), (b"cache-control", b"no-store"), *headers],
            }
        )
        await send({"type": "http.response.body", "body": b""})

    def _record(self, req: Request, action: str, outcome: str, target: str, started: float) -> None:
        log.info(
            "console: %s %s on %s by %s",
            action,
            outcome,
            target,
            req.who,
            extra={
                "action": action,
                "outcome": outcome,
                "target": target,
                "who": req.who,
                "ms": round((time.perf_counter() - started) * 1000, 2),
            },
        )
        if self.actions_counter is not None:
            self.actions_counter.labels(action, outcome).inc()

    def _back(self, req: Request, outcome: Done) -> str:
        back = req.field("back")
        if (
            not (back == self.base or back.startswith(self.base + "/") or back.startswith(self.base + "?"))
            or "//" in back
        ):
            back = self.base
        sig = self._sign(outcome.message, outcome.ok)
        sep = "&" if "?" in back else "?"
        return (
            back + sep + urlencode({"flash": outcome.message, "ok": "1" if outcome.ok else "0", "sig": sig})
        )

    def _sign(self, message: str, ok: bool) -> str:
        return hmac.new(self._flash_key, f"{int(ok)}|{message}".encode(), hashlib.sha256).hexdigest()[:32]

    def _flash(self, req: Request) -> tuple[str | None, bool]:
        """The signed message of the action that redirected here (an unsigned one is not shown)."""
        message, ok, sig = req.arg("flash"), req.arg("ok") == "1", req.arg("sig")
        if message and hmac.compare_digest(self._sign(message, ok), sig):
            return message, not ok
        return None, False

    # ------------------------------------------------------------------ rendering

    def _sections_nav(self) -> list[tuple[str, str]]:
        return [("overview", ""), *((s.key, f"/{s.key}") for s in self.sections)]

    def _render(
        self, req: Request, result: Page, flash: str | None = None, bad: bool = False
    ) -> tuple[bytes, str]:
        style_nonce = secrets.token_urlsafe(12)
        html = page(
            title=result.title,
            base=self.base,
            sections=self._sections_nav(),
            here=result.section,
            body=result.body,
            flash=flash,
            flash_bad=bad,
            style_nonce=style_nonce,
        )
        return html.encode(), style_nonce

    def _confirm(self, req: Request, action: str, c: Confirm) -> tuple[bytes, str]:
        fields: dict[str, object] = {**c.fields, "confirm": "yes", "back": req.field("back")}
        body = h(
            '<p>{q}</p>{yes} <a href="{back}">cancel</a>',
            q=c.question,
            yes=_confirm_form(req, action, fields),
            back=req.field("back") or self.base,
        )
        return self._render(req, Page(c.title, body, ""))

    def _plain_page(self, title: str, text: str) -> tuple[bytes, str]:
        nonce = secrets.token_urlsafe(12)
        doc = h(
            '<!doctype html><html lang="en"><head><meta charset="utf-8"><title>{t}</title></head>'
            "<body><h1>{t}</h1><p>{m}</p></body></html>",
            t=title,
            m=text,
        )
        return doc.encode(), nonce

    async def _send(
        self, send: Send, status: int, rendered: tuple[bytes, str], extra: list[tuple[bytes, bytes]]
    ) -> None:
        body, style_nonce = rendered
        csp = (
            f"default-src 'none'; style-src 'nonce-{style_nonce}'; img-src 'self' data:; "
            "form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
        )
        headers = [
            (b"cache-control", b"no-store"),
            (b"content-security-policy", csp.encode()),
            (b"x-content-type-options", b"nosniff"),
            (b"x-frame-options", b"DENY"),
            (b"referrer-policy", b"same-origin"),
            *extra,
        ]
        await send_response(send, status, body, "text/html; charset=utf-8", headers)


def _bodiless(send: Send) -> Send:
    """``send`` with every body left out (a HEAD response keeps the GET's headers)."""

    async def head_send(message: Message) -> None:
        if message["type"] == "http.response.body":
            message = {**message, "body": b""}
        await send(message)

    return head_send


def _confirm_form(req: Request, action: str, fields: dict[str, object]) -> Safe:
    return form(req.href(f"/action/{action}"), req.csrf_token, "yes, do it", fields, danger=True)
