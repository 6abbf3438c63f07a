"""HTML building with escaping by default: everything is text unless it is already :class:`Safe`."""

from __future__ import annotations

import html
import json
import re
from collections.abc import Iterable, Sequence
from typing import Any
from urllib.parse import urlencode

from kernel import redact_url


class Safe(str):
    """Markup built here (never user data); :func:`esc` leaves it as is."""

    __slots__ = ()


NOTHING = Safe("")


_URL = re.compile(r"\b[a-zA-Z][a-zA-Z0-9+.-]*://[^\s'\"<>]+")


def scrub(text: str) -> str:
    """``text`` with every URL's credentials redacted (error messages may carry connection URLs)."""
    return _URL.sub(lambda m: redact_url(m.group(0)), text)


def esc(value: object) -> Safe:
    """``value`` as HTML text (``Safe`` values pass unchanged)."""
    if isinstance(value, Safe):
        return value
    return Safe(html.escape(str(value), quote=True))


def h(template: str, /, **values: object) -> Safe:
    """``template.format(**values)`` with every value escaped (``Safe`` ones kept)."""
    return Safe(template.format(**{k: esc(v) for k, v in values.items()}))


def join(parts: Iterable[Safe], sep: str = "") -> Safe:
    """Concatenated markup."""
    return Safe(sep.join(parts))


def url(base: str, path: str = "", **query: object) -> str:
    """``base + path`` with the non-empty ``query`` values (escape the result with :func:`esc`)."""
    q = {k: str(v) for k, v in query.items() if v not in (None, "")}
    return f"{base}{path}" + (f"?{urlencode(q)}" if q else "")


def pretty(value: Any) -> str:
    """JSON of ``value``, indented (``repr`` for what JSON cannot hold)."""
    try:
        return json.dumps(value, indent=2, sort_keys=True, ensure_ascii=False, default=repr)
    except (TypeError, ValueError):
        return repr(value)


def table(headers: Sequence[str], rows: Iterable[Sequence[object]], *, empty: str = "nothing here") -> Safe:
    """A table; cells are escaped unless ``Safe``."""
    head = join(h("<th>{c}</th>", c=c) for c in headers)
    body = [Safe("<tr>" + join(h("<td>{c}</td>", c=c) for c in row) + "</tr>") for row in rows]
    if not body:
        return h('<p class="empty">{e}</p>', e=empty)
    return Safe(f"<table><thead><tr>{head}</tr></thead><tbody>{join(body)}</tbody></table>")


def dl(items: Iterable[tuple[str, object]]) -> Safe:
    """A definition list of ``(label, value)``."""
    return Safe("<dl>" + join(h("<dt>{k}</dt><dd>{v}</dd>", k=k, v=v) for k, v in items) + "</dl>")


def pre(value: object) -> Safe:
    """Preformatted text."""
    return h("<pre>{v}</pre>", v=value)


def link(href: str, text: object) -> Safe:
    """An anchor."""
    return h('<a href="{href}">{text}</a>', href=href, text=text)


def badge(text: str, kind: str) -> Safe:
    """A coloured label (``kind``: ok, warn, bad, info)."""
    return h('<span class="badge {kind}">{text}</span>', kind=kind, text=text)


def form(
    action: str,
    token: str,
    label: str,
    fields: dict[str, object] | None = None,
    *,
    danger: bool = False,
    extra: Safe = NOTHING,
) -> Safe:
    """A POST form with the CSRF token, hidden ``fields`` and one submit button."""
    hidden = join(
        h('<input type="hidden" name="{k}" value="{v}">', k=k, v=v) for k, v in (fields or {}).items()
    )
    return h(
        '<form method="post" action="{action}" class="inline"><input type="hidden" name="csrf" '
        'value="{token}">{hidden}{extra}<button type="submit" class="{cls}">{label}</button></form>',
        action=action,
        token=token,
        hidden=hidden,
        extra=extra,
        cls="danger" if danger else "",
        label=label,
    )


STYLE = """
body{font:14px/1.45 system-ui,sans-serif;margin:0;color:#1d2330;background:#f6f7f9}
header{background:#1d2330;color:#fff;padding:.6em 1.2em;display:flex;gap:1.4em;align-items:center}
header a{color:#cfd8ea;text-decoration:none}header a.here{color:#fff;font-weight:600}
header .brand{font-weight:700;color:#fff}main{padding:1em 1.4em;max-width:1200px}
table{border-collapse:collapse;background:#fff;width:100%;margin:.4em 0 1em}
th,td{border:1px solid #dde1e8;padding:.3em .55em;text-align:left;vertical-align:top}
th{background:#eef1f5}pre{background:#fff;border:1px solid #dde1e8;padding:.6em;overflow:auto;
white-space:pre-wrap;word-break:break-word}
dl{display:grid;grid-template-columns:max-content auto;gap:.2em 1em}dt{font-weight:600}dd{margin:0}
.badge{padding:.05em .45em;border-radius:.6em;font-size:.85em;white-space:nowrap}
.ok{background:#d5f5dd;color:#145c2a}.warn{background:#fff0c2;color:#6b4e00}
.bad{background:#fbd5d5;color:#8a1414}.info{background:#dde8fb;color:#1c3d7a}
form.inline{display:inline-block;margin:0 .3em .3em 0}button{cursor:pointer;padding:.2em .7em}
button.danger{background:#fbd5d5;border:1px solid #c74a4a}.flash{background:#dde8fb;padding:.5em .8em}
.flash.bad{background:#fbd5d5}.empty{color:#67708a}.cards{display:flex;gap:1em;flex-wrap:wrap}
.card{background:#fff;border:1px solid #dde1e8;padding:.6em 1em;min-width:8em}
.card b{display:block;font-size:1.4em}form.filters{margin:.5em 0}form.filters input,
form.filters select{margin-right:.5em}nav.tabs a{margin-right:1em}
svg{background:#fff;border:1px solid #dde1e8}
"""


def page(
    *,
    title: str,
    base: str,
    sections: Sequence[tuple[str, str]],
    here: str,
    body: Safe,
    flash: str | None = None,
    flash_bad: bool = False,
    style_nonce: str,
) -> Safe:
    """A whole page: header with one link per section, the flash message, ``body``."""
    nav = join(
        h(
            '<a href="{href}" class="{cls}">{label}</a>',
            href=url(base, path),
            cls="here" if key == here else "",
            label=label,
        )
        for key, path, label in ((s[0], s[1], s[0].capitalize()) for s in sections)
    )
    note = (
        h('<p class="flash {cls}" role="status">{m}</p>', cls="bad" if flash_bad else "", m=flash)
        if flash
        else ""
    )
    return h(
        '<!doctype html><html lang="en"><head><meta charset="utf-8"><title>{title} - kernel console</title>'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        '<style nonce="{nonce}">{style}</style></head><body><header><span class="brand">kernel console</span>'
        "{nav}</header><main><h1>{title}</h1>{note}{body}</main></body></html>",
        title=title,
        nonce=style_nonce,
        style=Safe(STYLE),
        nav=nav,
        note=note,
        body=body,
    )
