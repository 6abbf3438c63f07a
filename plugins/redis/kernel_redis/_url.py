"""Redis URL forms (standalone, cluster, sentinel), hash tags and key slots.

The scheme names the topology:

- standalone: ``redis://``, ``rediss://`` (TLS), ``unix://`` (redis-py's own forms);
- cluster: ``redis+cluster://[user:pass@]host:port[,host:port…]`` (seeds; TLS: ``rediss+cluster://``);
- sentinel: ``redis+sentinel://[user:pass@]host:port[,host:port…]/<service>[/db]`` (TLS:
  ``rediss+sentinel://``); the user info is the master's credentials, ``?sentinel_password=``
  (and ``sentinel_username=``) those of the sentinels.

Messages show a URL only through :func:`kernel.redact_url`.
"""

from __future__ import annotations

import re
from typing import Final, Literal
from urllib.parse import parse_qsl, unquote

import attrs

from kernel import Secret, redact_url

Topology = Literal["standalone", "cluster", "sentinel"]
"""The kind of Redis deployment a URL names."""

CLUSTER_SCHEMES: Final = ("redis+cluster", "rediss+cluster")
SENTINEL_SCHEMES: Final = ("redis+sentinel", "rediss+sentinel")
MULTI_HOST_SCHEMES: Final = CLUSTER_SCHEMES + SENTINEL_SCHEMES
DEFAULT_PORT: Final = 6379
DEFAULT_SENTINEL_PORT: Final = 26379
SENTINEL_QUERY: Final = ("sentinel_password", "sentinel_username")
"""The query parameters a sentinel URL accepts (a cluster URL takes none)."""

_HOST = re.compile(r"[A-Za-z0-9._\-]+|\[[0-9A-Fa-f:.]+\]")
_SERVICE = re.compile(r"[A-Za-z0-9._\-]+")


def topology_of(url: str | Secret) -> Topology:
    """The topology a URL's scheme names (anything not cluster or sentinel is standalone)."""
    value = url.get_secret_value() if isinstance(url, Secret) else url
    scheme = value.partition("://")[0]
    if scheme in CLUSTER_SCHEMES:
        return "cluster"
    if scheme in SENTINEL_SCHEMES:
        return "sentinel"
    return "standalone"


@attrs.frozen
class MultiHostUrl:
    """A parsed ``redis+cluster://`` or ``redis+sentinel://`` URL (the password is not in its repr)."""

    topology: Literal["cluster", "sentinel"]
    tls: bool
    hosts: tuple[tuple[str, int], ...]
    """Seeds of a cluster, or the sentinels."""
    username: str | None = None
    password: str | None = attrs.field(default=None, repr=False)
    service: str | None = None
    """The sentinel service (master group) name."""
    db: int = 0
    sentinel_username: str | None = None
    sentinel_password: str | None = attrs.field(default=None, repr=False)


def _fail(problem: str, shown: str) -> ValueError:
    return ValueError(f"'url' must {problem}, got {shown!r}")


def parse_multi_host(url: str | Secret) -> MultiHostUrl:
    """Parse a cluster or sentinel URL; ``ValueError`` naming the problem (the URL redacted)."""
    value = url.get_secret_value() if isinstance(url, Secret) else url
    shown = redact_url(value)
    scheme, _sep, rest = value.partition("://")
    if scheme not in MULTI_HOST_SCHEMES:
        raise _fail("be a redis+cluster:// or redis+sentinel:// URL", shown)
    topology: Literal["cluster", "sentinel"] = "cluster" if scheme in CLUSTER_SCHEMES else "sentinel"
    userinfo, at, rest = rest.rpartition("@")
    if any(c in userinfo for c in "/?#@,"):
        raise _fail(
            "percent-encode any '/', '?', '#', ',' or '@' before its last '@' (in a password: "
            "urllib.parse.quote(password, safe='')) and give the credentials once, before the first host",
            shown,
        )
    rest, _hash, _fragment = rest.partition("#")
    rest, question, query = rest.partition("?")
    authority, slash, path = rest.partition("/")
    hosts = _hosts(authority, DEFAULT_PORT if topology == "cluster" else DEFAULT_SENTINEL_PORT, shown)
    user, _colon, password = userinfo.partition(":") if at else ("", "", "")
    params = _query(query if question else "", topology, shown)
    service, db = _path(path if slash else "", topology, shown)
    return MultiHostUrl(
        topology=topology,
        tls=scheme.startswith("rediss"),
        hosts=hosts,
        username=unquote(user) or None,
        password=unquote(password) or None,
        service=service,
        db=db,
        sentinel_username=params.get("sentinel_username"),
        sentinel_password=params.get("sentinel_password"),
    )


def _hosts(authority: str, default_port: int, shown: str) -> tuple[tuple[str, int], ...]:
    if not authority:
        raise _fail("name at least one host (host:port[,host:port…])", shown)
    hosts: list[tuple[str, int]] = []
    for item in authority.split(","):
        if item.startswith("["):
            name, _bracket, after = item.partition("]")
            name += "]"
            colon, port = after[:1], after[1:]
        else:
            name, colon, port = item.partition(":")
        if not _HOST.fullmatch(name):
            raise _fail("list hosts as host:port separated by ',' (no empty or malformed host)", shown)
        if colon and not (port.isdigit() and 0 < int(port) < 65536):
            raise _fail("have ports in 1..65535", shown)
        hosts.append((name.strip("[]"), int(port) if colon else default_port))
    return tuple(hosts)


def _query(query: str, topology: str, shown: str) -> dict[str, str]:
    params: dict[str, str] = {}
    for key, value in parse_qsl(query, keep_blank_values=True):
        if topology != "sentinel" or key not in SENTINEL_QUERY:
            allowed = ", ".join(SENTINEL_QUERY) if topology == "sentinel" else "none"
            raise _fail(f"use only known query parameters (a {topology} URL takes: {allowed})", shown)
        params[key] = value
    return params


def _path(path: str, topology: str, shown: str) -> tuple[str | None, int]:
    parts = path.split("/") if path else []
    if topology == "cluster":
        if parts and parts != [""] and parts != ["0"]:
            raise _fail(
                "not select a database other than 0: a Redis Cluster has only database 0 "
                "(redis+cluster://host:port[,host:port…])",
                shown,
            )
        return None, 0
    if not parts or not parts[0]:
        raise _fail(
            "name the sentinel service after the hosts (redis+sentinel://host:26379[,…]/<service>[/db])",
            shown,
        )
    if not _SERVICE.fullmatch(parts[0]) or len(parts) > 2:
        raise _fail("have the path /<service>[/db] (a service name of letters, digits, '.', '_', '-')", shown)
    db = parts[1] if len(parts) == 2 else ""
    if db and not db.isdigit():
        raise _fail("have a database number after the service (/<service>/<db>)", shown)
    return parts[0], int(db) if db else 0


def hash_tag(name: str) -> str:
    """``{name}``: every key holding it hashes to the same cluster slot (only ``name`` is hashed).

    >>> hash_tag("orders")
    '{orders}'
    """
    if not name:
        raise ValueError("a hash tag needs a non-empty name")
    if "{" in name or "}" in name:
        raise ValueError(f"a hash tag name cannot contain '{{' or '}}', got {name!r}")
    return "{" + name + "}"


def key_slot(key: str | bytes) -> int:
    """The Redis Cluster slot (0..16383) of ``key``, honouring a hash tag (``{…}``).

    >>> key_slot("{orders}:a") == key_slot("{orders}:b") == key_slot("orders")
    True
    """
    from redis.crc import key_slot as crc_key_slot  # redis-py is imported when used (the CLI starts light)

    return crc_key_slot(key.encode() if isinstance(key, str) else key)
