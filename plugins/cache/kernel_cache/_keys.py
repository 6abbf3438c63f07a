"""Key layout and Redis glob patterns: escaping, matching, validation.

Layout (the same on standalone, Sentinel and Cluster): every key of namespace ``ns`` under key prefix
``cache`` starts with the hash tag ``{cache:ns}``, so a namespace lives in one cluster slot::

    {cache:ns}:<key>              data
    {cache:__lock__:ns}:<key>     get_or_set lock (no namespace can be called __lock__)

Before hash tags (issue 15) the keys were ``cache:ns:<key>`` and
``cache:__lock__:ns:<key>``: :class:`LegacyLayout` maps them for ``kernel redis migrate-keys``.
"""

from __future__ import annotations

import re
from typing import Any

_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.\-]*")
_GLOB_SPECIAL = re.compile(r"([*?\[\]\\])")
LOCK_SEGMENT = "__lock__"


def data_prefix(key_prefix: str, namespace: str) -> str:
    """What every data key of ``namespace`` starts with: ``{<key_prefix>:<namespace>}:``."""
    return "{" + key_prefix + ":" + namespace + "}:"


def lock_prefix(key_prefix: str, namespace: str) -> str:
    """What every lock key of ``namespace`` starts with: ``{<key_prefix>:__lock__:<namespace>}:``."""
    return "{" + key_prefix + ":" + LOCK_SEGMENT + ":" + namespace + "}:"


def all_keys_pattern(key_prefix: str) -> str:
    """A ``SCAN MATCH`` pattern of every key of every namespace (data and locks) under ``key_prefix``."""
    return "{" + glob_escape(key_prefix) + ":*"


class LegacyLayout:
    """The pre-hash-tag layout (``<prefix>:<namespace>:<key>``), mapped to today's for migrate-keys.

    Implements ``kernel_redis.KeyLayout``. Old lock keys are left alone (``None``): they expire
    within ``lock_ttl``, and renaming a lock under a running holder would strand it.
    """

    owner = "cache"

    def __init__(self, key_prefix: str) -> None:
        self.key_prefix = check_name("key_prefix", key_prefix)

    def legacy_patterns(self) -> list[str]:
        """``<prefix>:*``: the old keys (today's all start with ``{``)."""
        return [glob_escape(self.key_prefix) + ":*"]

    def new_name(self, old_key: str) -> str | None:
        """``cache:user:profile:1`` -> ``{cache:user}:profile:1``; ``None`` for locks and foreign keys."""
        head = self.key_prefix + ":"
        if not old_key.startswith(head):
            return None
        namespace, sep, rest = old_key[len(head) :].partition(":")
        if not sep or namespace == LOCK_SEGMENT or not _NAME.fullmatch(namespace):
            return None
        return data_prefix(self.key_prefix, namespace) + rest

    def __repr__(self) -> str:
        return (
            f"<LegacyLayout {self.key_prefix}:<namespace>:<key> -> {{{self.key_prefix}:<namespace>}}:<key>>"
        )


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
