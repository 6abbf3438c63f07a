"""The ``[app]`` section: the service's own settings, validated fail-fast by the kernel.

``[kernel] host_sections = "examples.service.settings:SECTIONS"`` makes the kernel
structure and check this table with the plugins' tables, before anything starts,
so ``kernel check`` reports a missing or weak secret too.
"""

from __future__ import annotations

from typing import Any

import attrs

from kernel import Secret

MIN_SECRET_LENGTH = 32


def strong_secret(_inst: Any, attribute: attrs.Attribute[Any], value: Secret) -> None:
    """At least ``MIN_SECRET_LENGTH`` characters; the message never contains the value."""
    if len(value) < MIN_SECRET_LENGTH:
        raise ValueError(f"'{attribute.name}' must be at least {MIN_SECRET_LENGTH} characters long")


def _differs_from_jwt(inst: Any, attribute: attrs.Attribute[Any], value: Secret) -> None:
    if value == inst.jwt_secret:
        raise ValueError(f"'{attribute.name}' must differ from 'jwt_secret'")


@attrs.define(frozen=True)
class AppSettings:
    """Settings of the example service (``[app]``; env: ``KERNEL__APP__JWT_SECRET`` …)."""

    jwt_secret: Secret = attrs.field(validator=strong_secret)
    """Signs access tokens. Required, >= 32 characters."""
    session_secret: Secret = attrs.field(validator=[strong_secret, _differs_from_jwt])
    """Signs session cookies. Required, >= 32 characters, not the JWT secret."""
    name: str = "example-service"


SECTIONS: dict[str, type[Any]] = {"app": AppSettings}
