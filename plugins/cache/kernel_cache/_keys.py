"""Key layout and Redis glob patterns: escaping, matching, validation."""

from __future__ import annotations

import re
from typing import Any

_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.\-]*")
_GLOB_SPECIAL = re.compile(r"([*?\[\]\\])")
LOCK_SEGMENT = "__lock__"


def check_name(what: str, name: str) -> str:
    """A namespace or key prefix: letters, digits, ``_ . -`` and no ``:`` (so namespaces never overlap)."""
    if not isinstance(name, str) or not _NAME.fullmatch(name):
        raise ValueError(
            f"{what} must be letters, digits, '_', '.' or '-' (starting with a letter or digit), got {name!r}"
        )
    return name


def glob_escape(text: str) -> str:
    """``text`` with the glob characters ``* ? [ ] \\`` escaped, to match itself literally.

    >>> glob_escape("a*b")
    'a\\\\*b'
    """
    return _GLOB_SPECIAL.sub(r"\\\1", text)


def glob(template: str, *parts: Any) -> str:
    """Build a pattern from a template whose ``{}`` fields are filled with *escaped* values.

    Data can never add wildcards: ``glob("user:{}:*", "*")`` is ``'user:\\\\*:*'``, which
    matches only the keys of the user literally called ``*``. Literal braces are doubled.
    """
    return template.format(*(glob_escape(str(p)) for p in parts))


def glob_to_regex(pattern: str) -> re.Pattern[str]:
    """Compile a Redis glob (``*``, ``?``, ``[abc]``, ``[^a]``, ``[a-z]``, ``\\`` escapes) to a regex.

    Follows Redis' ``stringmatchlen`` so the memory backend matches exactly what ``SCAN MATCH`` would.
    """
    out: list[str] = []
    i, n = 0, len(pattern)
    while i < n:
        c = pattern[i]
        if c == "*":
            out.append(".*")
        elif c == "?":
            out.append(".")
        elif c == "\\" and i + 1 < n:
            i += 1
            out.append(re.escape(pattern[i]))
        elif c == "[":
            regex, i = _char_class(pattern, i + 1)
            out.append(regex)
        else:
            out.append(re.escape(c))
        i += 1
    return re.compile("".join(out), re.DOTALL)


def _char_class(pattern: str, i: int) -> tuple[str, int]:
    """The regex of the ``[...]`` class whose body starts at ``i``, and the index of its ``]``."""
    n = len(pattern)
    negate = i < n and pattern[i] == "^"
    if negate:
        i += 1
    items: list[str] = []
    while i < n and pattern[i] != "]":
        if pattern[i] == "\\" and i + 1 < n:
            i += 1
            items.append(re.escape(pattern[i]))
        elif i + 2 < n and pattern[i + 1] == "-" and pattern[i + 2] != "]":
            lo, hi = sorted((pattern[i], pattern[i + 2]))
            items.append(f"{re.escape(lo)}-{re.escape(hi)}")
            i += 2
        else:
            items.append(re.escape(pattern[i]))
        i += 1
    # An unterminated class ends at the pattern's end, as in Redis.
    body = "".join(items)
    if not body:
        return ("[^\\s\\S]" if not negate else "[\\s\\S]"), i
    return f"[{'^' if negate else ''}{body}]", i
