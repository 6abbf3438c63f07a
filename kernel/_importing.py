"""Importing ``"module:attribute"`` specs (config values, ``--app``): one rule, one message."""

from __future__ import annotations

import importlib


def import_object(spec: str, *, expects: str = "attribute") -> object:
    """Import ``"module:attribute"`` and return the attribute.

    Raises ``ValueError`` naming the spec: ``expected 'module:<expects>', got ...`` when it is not
    of that form, ``cannot import ...: <reason>`` when the module or attribute is missing.
    """
    module_name, _, attr = spec.partition(":")
    if not module_name or not attr:
        raise ValueError(f"expected 'module:{expects}', got {spec!r}")
    try:
        return getattr(importlib.import_module(module_name), attr)
    except (ImportError, AttributeError) as exc:
        raise ValueError(f"cannot import {spec!r}: {exc}") from exc
