"""A string that never shows its value, and URLs shown without their credentials."""

from __future__ import annotations

import hmac
import re
from typing import Final

MASK: Final = "**********"
URL_MASK: Final = "***"
"""What :func:`redact_url` puts in place of a password, token or unparsable part."""

_SCHEME = re.compile(r"[A-Za-z][A-Za-z0-9+.\-]{0,31}://")
_PLAIN_USER = re.compile(r"[A-Za-z0-9._~+\-]*")
_PORT = re.compile(r"[0-9]{1,5}")
_PLAIN_KEY = re.compile(r"[A-Za-z0-9._~\-]+")
_CREDENTIAL_KEY = re.compile(r"(?i)pass|pwd|secret|token|auth|key|cred|sig|session")


class Secret:
    """Holds a sensitive string; ``repr``, ``str`` and formatting print a mask.

    Read the value explicitly with :meth:`get_secret_value` where it is used.

    >>> s = Secret("hunter2")
    >>> s, f"{s}"
    (Secret('**********'), '**********')
    >>> s.get_secret_value()
    'hunter2'
    """

    __slots__ = ("_value",)

    def __init__(self, value: str) -> None:
        if not isinstance(value, str):
            raise TypeError(f"expected str, got {type(value).__name__}")
        self._value = value

    def get_secret_value(self) -> str:
        """Return the real value."""
        return self._value

    def __repr__(self) -> str:
        return f"Secret({MASK!r})"

    def __str__(self) -> str:
        return MASK

    def __format__(self, spec: str) -> str:
        return MASK

    def __bool__(self) -> bool:
        return bool(self._value)

    def __len__(self) -> int:
        return len(self._value)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Secret):
            return NotImplemented
        return hmac.compare_digest(self._value.encode(), other._value.encode())

    def __hash__(self) -> int:
        return hash(("Secret", self._value))

    def __reduce__(self) -> tuple[type[Secret], tuple[str]]:
        return (Secret, (self._value,))


def redact_url(url: str | Secret) -> str:
    """``url`` safe for logs, error messages and CLI output: no password or token, for any input.

    Conservative by design, so that malformed values (an unencoded ``/``, ``#`` or ``@`` in a
    password, a missing host) are as safe as well-formed ones:

    - not ``scheme://…``: the whole value is masked (nothing tells where a secret would be);
    - user info: everything between ``://`` and the *last* ``@`` is masked, except a plain
      user name before the first ``:``; when it holds ``/``, ``?``, ``#`` or ``@`` (an unencoded
      password, or an ``@`` further on) everything after the scheme is masked;
    - an authority with a port that is not a number up to 65535, or a port but no host
      (``redis://:secret``, a password without its ``@``): it and everything after it are masked;
    - query: from the first parameter whose name looks like a credential (``password``,
      ``token``, ``authSource``…) to the end, values are masked.

    >>> redact_url("redis://alice:s3cret@cache:6379/0?password=x&db=1")
    'redis://alice:***@cache:6379/0?password=***'
    >>> redact_url("redis://:pa/ss@host/0"), redact_url("redis://:secret"), redact_url("pa:ss@host")
    ('redis://***', 'redis://***', '***')
    """
    value = url.get_secret_value() if isinstance(url, Secret) else url
    if not isinstance(value, str):
        raise TypeError(f"expected a URL string, got {type(value).__name__}")
    scheme = _SCHEME.match(value)
    if scheme is None:
        return URL_MASK
    out = scheme.group(0)
    userinfo, at, rest = value[scheme.end() :].rpartition("@")
    if any(c in userinfo for c in "/?#@"):
        # Malformed (an unencoded password, or an '@' in a path or query): nothing tells
        # where a password ends, so show nothing after the scheme.
        return out + URL_MASK
    if at:
        user, colon, _password = userinfo.partition(":")
        # A lone user info (redis://secret@host) is masked too: it is often a password.
        out += f"{user}:{URL_MASK}@" if colon and _PLAIN_USER.fullmatch(user) else f"{URL_MASK}@"
    end = next((i for i, c in enumerate(rest) if c in "/?#"), len(rest))
    authority, tail = rest[:end], rest[end:]
    if not all(_plain_host(host) for host in authority.split(",")):
        return out + URL_MASK
    path, question, query = tail.partition("?")
    out += authority + path + question
    return out + _redact_query(query) if question else out


def _plain_host(host: str) -> bool:
    """``host`` or ``host:port`` (a port up to 65535 after a host); an IPv6 literal in brackets."""
    if host.startswith("["):  # an IPv6 literal: only ':port' may follow it
        _name, bracket, after = host.partition("]")
        if not bracket:
            return False
        name, colon, port = "[", after[:1], after[1:]
        if colon not in ("", ":"):
            return False
    else:
        name, colon, port = host.partition(":")
    return not colon or bool(name and _PORT.fullmatch(port) and int(port) < 65536)


def _redact_query(query: str) -> str:
    """The query up to the first parameter named like a credential, whose value is masked."""
    out = ""
    # Split with the separators kept: [param, sep, param, sep, …].
    for i, part in enumerate(re.split(r"([&;])", query)):
        if i % 2:
            out += part
            continue
        key = part.partition("=")[0]
        if part and not _PLAIN_KEY.fullmatch(key):
            return out + URL_MASK
        if _CREDENTIAL_KEY.search(key):
            return out + f"{key}={URL_MASK}"
        out += part
    return out
