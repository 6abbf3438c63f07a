"""The ``[plugins.console]`` table."""

from __future__ import annotations

from typing import Any

import attrs

from kernel import Secret


def _mount_path(_inst: Any, attribute: attrs.Attribute[Any], value: str) -> None:
    if not value.startswith("/") or value == "/" or value.endswith("/") or any(c in value for c in "?#% "):
        raise ValueError(
            f"'{attribute.name}' must be an absolute path like '/console' (no trailing '/', "
            f"no '?', '#', '%' or spaces), got {value!r}"
        )


def _username(_inst: Any, attribute: attrs.Attribute[Any], value: str | None) -> None:
    if value is not None and (not value or ":" in value):
        raise ValueError(f"'{attribute.name}' must be non-empty and contain no ':', got {value!r}")


@attrs.define(frozen=True)
class ConsoleConfig:
    """Where the console is served and who may use it; every key is optional."""

    path: str = attrs.field(default="/console", validator=_mount_path)
    """Where the pages are mounted (every path under it belongs to the console)."""
    loopback_only: bool = True
    """Answer only clients on 127.0.0.0/8 and ::1 (403 otherwise). Turn it off only with auth set."""
    token: Secret | None = None
    """When set, requests must send ``Authorization: Bearer <token>`` (or basic auth, when configured)."""
    username: str | None = attrs.field(default=None, validator=_username)
    """With ``password``: HTTP basic auth (what a browser asks for)."""
    password: Secret | None = None
    """The basic-auth password of ``username``."""
    csrf_secret: Secret | None = None
    """Key of the CSRF tokens; default a random one per process (set it when several processes serve)."""
    page_size: int = attrs.field(default=50, validator=[attrs.validators.gt(0), attrs.validators.le(500)])
    """Rows per page of the job and dead-letter lists."""
    max_form_bytes: int = attrs.field(default=65_536, validator=attrs.validators.gt(0))
    """Largest accepted POST body (413 above it)."""

    def __attrs_post_init__(self) -> None:
        if (self.username is None) != (self.password is None):
            missing = "password" if self.password is None else "username"
            raise ValueError(f"'{missing}' must be set too: basic auth needs both username and password")
        if self.token is not None and not self.token.get_secret_value():
            raise ValueError("'token' must not be empty")
        if self.password is not None and not self.password.get_secret_value():
            raise ValueError("'password' must not be empty")

    @property
    def authenticated(self) -> bool:
        """Whether requests must carry credentials (a token or basic auth)."""
        return self.token is not None or self.username is not None
