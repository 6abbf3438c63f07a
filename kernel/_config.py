"""TOML + environment configuration, structured into attrs classes with every error collected.

Tables are structured field by field (no converter library), so one run reports every type
error, unknown key, missing key and failing validator, each with its key path.
"""

from __future__ import annotations

import logging
import os
import re
import tomllib
import types
import typing
from collections.abc import Mapping, MutableMapping, Sequence
from enum import Enum
from pathlib import Path
from typing import Any, Literal, TypeVar, cast, get_args, get_origin

import attrs

from ._errors import ConfigError
from ._importing import import_object
from ._secret import MASK, Secret, redact_url

T = TypeVar("T")

ENV_PREFIX = "KERNEL__"
"""Environment overrides: ``KERNEL__PLUGINS__CACHE__DEFAULT_TTL=60`` sets ``plugins.cache.default_ttl``."""

_RECOMMENDED = "kernel.recommended"

log = logging.getLogger("kernel.config")

Env = Literal["development", "test", "production"]


@attrs.define(frozen=True)
class KernelSettings:
    """The ``[kernel]`` table."""

    plugins: list[str] = attrs.field(factory=list)
    env: Env = "development"
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"
    log_format: Literal["auto", "json", "console"] = "auto"
    health_timeout: float = attrs.field(default=5.0, validator=attrs.validators.gt(0))
    shutdown_timeout: float = attrs.field(default=30.0, validator=attrs.validators.gt(0))
    drain_delay: float = attrs.field(default=0.0, validator=attrs.validators.ge(0))
    """``kernel serve``: seconds it keeps serving after SIGTERM (readiness answering 503) before it drains."""
    drain_timeout: float = attrs.field(default=15.0, validator=attrs.validators.gt(0))
    """``kernel serve``: seconds after SIGTERM by which in-flight requests must end; later ones are cut."""
    host_sections: str | None = None
    """``"module:attribute"`` naming a ``{table: attrs class}`` mapping for host sections."""

    @drain_delay.validator
    def _delay_before_deadline(self, attribute: attrs.Attribute[float], value: float) -> None:
        if value >= self.drain_timeout:
            raise ValueError(
                f"'drain_delay' must be less than drain_timeout ({self.drain_timeout:g}), "
                f"the deadline it is part of, got {value!r}"
            )


def import_sections(spec: str) -> dict[str, type[Any]]:
    """Import ``"module:attribute"`` and check it maps table names to attrs classes."""
    obj = import_object(spec)
    if not isinstance(obj, Mapping) or not all(isinstance(k, str) and attrs.has(v) for k, v in obj.items()):
        raise ValueError(f"{spec!r} must be a mapping of table names to attrs classes")
    return dict(obj)


def recommended(default: Any = None, *, reason: str = "") -> Any:
    """An attrs field that warns when unset, and is required when ``env = "production"``.

    "Unset" means ``None`` or an empty value after structuring.
    """
    return attrs.field(default=default, metadata={_RECOMMENDED: reason})


# --------------------------------------------------------------------------- converter


def _type_name(t: Any) -> str:
    return getattr(t, "__name__", None) or str(t)


def _describe(value: object) -> str:
    if isinstance(value, Secret):
        return "a secret"
    if isinstance(value, str) and ("://" in value or "@" in value):
        value = redact_url(value)  # a URL typed into the wrong key may hold a password
    text = repr(value)
    if not isinstance(value, str) and ("://" in text or "@" in text):
        return f"a {type(value).__name__}"  # a list or table holding a URL: don't print it
    return text if len(text) <= 60 else text[:57] + "..."


# attrs validators word their errors "'field' must be ...".
_ATTRS_MSG = re.compile(r"^(Length of )?'([A-Za-z_]\w*)' (must .*)$", re.DOTALL)


def _attrs_message(path: str, text: str) -> str | None:
    """``path.field: must …`` for an attrs validator's message, else ``None``."""
    m = _ATTRS_MSG.match(text)
    if m is None:
        return None
    prefix = "length " if m.group(1) else ""
    return f"{path}.{m.group(2)}: {prefix}{m.group(3)}"


def structure(data: Mapping[str, Any], cls: type[T], path: str) -> tuple[T | None, list[str]]:
    """Structure ``data`` into ``cls``; return the instance or every error with its key path.

    attrs classes are structured field by field, so one run reports every type error,
    unknown key, missing key *and* every failing validator of the table.
    """
    obj, _values, errors = structure_partial(data, cls, path)
    return obj, errors


def structure_partial(
    data: Mapping[str, Any], cls: type[T], path: str
) -> tuple[T | None, dict[str, Any], list[str]]:
    """Like :func:`structure`, plus the init arguments of the fields that were valid.

    The kernel uses them to carry on with a partly invalid ``[kernel]`` table, so the
    errors of the other tables show up in the same run.
    """
    if not isinstance(data, Mapping):
        return None, {}, [f"{path}: expected a table, got {_describe(data)}"]
    if not attrs.has(cls):
        obj, errs = _structure_value(data, cls, path)
        return obj, {}, errs
    fields, hints = _fields_of(cls)
    kwargs, errors = _structure_fields(data, fields, hints, path)
    construct_error: Exception | None = None
    if not errors:
        try:
            return cast(T, cls(**kwargs)), kwargs, []
        except Exception as exc:  # a validator or __attrs_post_init__
            construct_error = exc
    errors += _validator_errors(cls, fields, kwargs, path)
    if not errors and construct_error is not None:
        text = str(construct_error)
        errors = [_attrs_message(path, text) or f"{path}: {text or type(construct_error).__name__}"]
    valid = dict(kwargs)
    for name, field in fields.items():
        if any(e.startswith((f"{path}.{name}:", f"{path}.{name}.", f"{path}.{name}[")) for e in errors):
            valid.pop(field.alias or name, None)
    return None, valid, errors


def _structure_fields(
    data: Mapping[str, Any],
    fields: Mapping[str, Any],
    hints: Mapping[str, Any],
    path: str,
) -> tuple[dict[str, Any], list[str]]:
    """Structure each field of ``data`` on its own: ``({init argument: value}, errors)``."""
    errors = [f"{path}.{key}: unknown key" for key in data if key not in fields]
    kwargs: dict[str, Any] = {}
    for name, field in fields.items():
        if name not in data:
            if field.default is attrs.NOTHING:
                errors.append(f"{path}.{name}: required key is missing")
            continue
        value, errs = _structure_value(data[name], hints[name], f"{path}.{name}")
        if errs:
            errors += errs
        else:
            kwargs[field.alias or name] = value
    return kwargs, errors


_FIELDS: dict[type[Any], tuple[dict[str, Any], dict[str, Any]]] = {}


def _fields_of(cls: type[Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    """``({name: attrs field}, {name: resolved type})`` of the init fields of ``cls`` (cached)."""
    cached = _FIELDS.get(cls)
    if cached is None:
        try:
            hints = typing.get_type_hints(cls)
        except Exception:
            hints = {}
        fields = {f.name: f for f in attrs.fields(cls) if f.init}
        cached = fields, {name: hints.get(name, f.type or Any) for name, f in fields.items()}
        _FIELDS[cls] = cached
    return cached


def _structure_value(value: Any, t: Any, path: str) -> tuple[Any, list[str]]:
    """``value`` as type ``t``: ``(value, [])``, or ``(None, errors)`` with their key paths."""
    t = _unwrap_optional(t) if value is not None else t
    if t is Any:
        return value, []
    origin, args = get_origin(t) or t, get_args(t)
    if isinstance(t, type) and attrs.has(t):
        return structure(value, t, path)
    if origin in (typing.Union, types.UnionType):
        return _structure_union(value, args, path)
    if origin in (list, tuple, Sequence):
        return _structure_items(value, t, path)
    if origin in (dict, Mapping, MutableMapping):
        if not isinstance(value, Mapping):
            return None, [f"{path}: expected a table, got {_describe(value)}"]
        key_t, value_t = args or (Any, Any)
        pairs = [
            (_structure_value(k, key_t, f"{path}[{k!r}]"), _structure_value(v, value_t, f"{path}[{k!r}]"))
            for k, v in value.items()
        ]
        errors = [e for key, val in pairs for e in key[1] + val[1]]
        return (None, errors) if errors else ({key[0]: val[0] for key, val in pairs}, [])
    try:
        return _structure_leaf(value, t), []
    except (TypeError, ValueError) as exc:
        return None, [f"{path}: {exc}"]


def _structure_union(value: Any, members: tuple[Any, ...], path: str) -> tuple[Any, list[str]]:
    """The first member of a union that ``value`` structures as."""
    if value is None and type(None) in members:
        return None, []
    for member in members:
        obj, errors = _structure_value(value, member, path)
        if not errors:
            return obj, []
    names = " or ".join(_type_name(m) for m in members if m is not type(None))
    return None, [f"{path}: expected {names}, got {_describe(value)}"]


def _structure_items(value: Any, t: Any, path: str) -> tuple[Any, list[str]]:
    """A list (or tuple) from a TOML array, each item structured on its own."""
    if not isinstance(value, list | tuple):
        return None, [f"{path}: expected a list, got {_describe(value)}"]
    args = get_args(t)
    if get_origin(t) is tuple and args and args[-1] is not Ellipsis:  # tuple[int, str]: one type each
        if len(value) != len(args):
            return None, [f"{path}: expected a list of {len(args)} items, got {len(value)}"]
        item_types = list(args)
    else:
        item_types = [args[0] if args else Any] * len(value)
    pairs = enumerate(zip(value, item_types, strict=True))
    results = [_structure_value(v, item_t, f"{path}[{i!r}]") for i, (v, item_t) in pairs]
    errors = [e for _, errs in results for e in errs]
    items = [obj for obj, _ in results]
    return (None, errors) if errors else ((tuple(items) if get_origin(t) is tuple else items), [])


_ACCEPTED: dict[Any, tuple[type, ...]] = {int: (int,), float: (int, float), str: (str,), bool: (bool,)}


def _structure_leaf(value: Any, t: Any) -> Any:
    """A scalar, a secret, a path or a literal (strictly: ``1`` is no ``bool``, ``"1"`` no ``int``)."""
    if t in _ACCEPTED:
        if not isinstance(value, _ACCEPTED[t]) or (isinstance(value, bool) and t is not bool):
            raise TypeError(f"expected {t.__name__}, got {_describe(value)}")
        return float(cast(float, value)) if t is float else value
    if t is Secret:
        if not isinstance(value, Secret | str):
            raise TypeError(f"expected a secret string, got {type(value).__name__}")
        return value if isinstance(value, Secret) else Secret(value)
    if t is Path:
        if not isinstance(value, str):
            raise TypeError(f"expected a path string, got {_describe(value)}")
        return Path(value)
    if get_origin(t) is Literal:
        if value not in get_args(t):
            allowed = ", ".join(repr(o) for o in get_args(t))
            raise ValueError(f"expected one of {allowed}, got {_describe(value)}")
        return value
    if isinstance(t, type) and issubclass(t, Enum):
        try:
            return t(value)
        except ValueError:
            raise ValueError(
                f"expected one of {', '.join(repr(m.value) for m in t)}, got {_describe(value)}"
            ) from None
    if isinstance(t, type) and t is not object and not isinstance(value, t):
        raise TypeError(f"expected {_type_name(t)}, got {_describe(value)}")
    return value


def _validator_errors(
    cls: type[Any], fields: Mapping[str, Any], kwargs: Mapping[str, Any], path: str
) -> list[str]:
    """Run the validator of every field that structured, each on its own.

    The validators see an instance built without ``__init__``: the structured values,
    defaults for the rest (fields without one are left unset).
    """
    inst = object.__new__(cls)
    values: dict[str, Any] = {}
    errors: list[str] = []
    for name, field in fields.items():
        key = field.alias or name
        if key not in kwargs:
            _set_default(inst, name, field)
            continue
        try:  # what __init__ would do before validating
            value = _convert(field, kwargs[key])
        except Exception as exc:
            errors.append(f"{path}.{name}: {exc or type(exc).__name__}")
            continue
        values[name] = value
        object.__setattr__(inst, name, value)
    for name, field in fields.items():
        if field.validator is None or name not in values:
            continue
        try:
            field.validator(inst, field, values[name])
        except AttributeError:
            continue  # it reads a field that is itself invalid or missing: reported already
        except Exception as exc:
            text = str(exc)
            errors.append(_attrs_message(path, text) or f"{path}.{name}: {text or type(exc).__name__}")
    return errors


def _convert(field: Any, value: Any) -> Any:
    """``value`` through the field's plain converter, if it has one."""
    converter = field.converter
    if converter is not None and not isinstance(converter, attrs.Converter):
        return converter(value)
    return value


def _set_default(inst: object, name: str, field: Any) -> None:
    """Give ``inst`` the default of a field that was not set (a field without one stays unset)."""
    if isinstance(field.default, attrs.Factory):  # type: ignore[arg-type]
        if not field.default.takes_self:
            object.__setattr__(inst, name, field.default.factory())
    elif field.default is not attrs.NOTHING:
        object.__setattr__(inst, name, field.default)


def check_recommended(obj: object, path: str, env: str) -> tuple[list[str], list[str]]:
    """Return (warnings, errors) for recommended fields left unset (errors only in production)."""
    warnings: list[str] = []
    errors: list[str] = []
    cls: Any = type(obj)
    if not attrs.has(cls):
        return warnings, errors
    for field in attrs.fields(cls):
        value = getattr(obj, field.name)
        if _RECOMMENDED in field.metadata and (value is None or value == "" or value == []):
            reason = f" ({field.metadata[_RECOMMENDED]})" if field.metadata[_RECOMMENDED] else ""
            if env == "production":
                errors.append(f"{path}.{field.name}: required when env = 'production'{reason}")
            else:
                warnings.append(f"{path}.{field.name} is recommended but not set{reason}")
        elif attrs.has(type(value)):
            w, e = check_recommended(value, f"{path}.{field.name}", env)
            warnings += w
            errors += e
    return warnings, errors


def unstructure(obj: object) -> Any:
    """Plain data for display; secrets become a mask."""
    cls: Any = type(obj)
    if attrs.has(cls):
        return {f.name: unstructure(getattr(obj, f.name)) for f in attrs.fields(cls)}
    if isinstance(obj, Secret):
        return MASK
    if isinstance(obj, Path | Enum):
        return str(obj) if isinstance(obj, Path) else obj.value
    if isinstance(obj, Mapping):
        return {k: unstructure(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        items = [unstructure(v) for v in obj]
        return tuple(items) if isinstance(obj, tuple) else items
    return obj


# --------------------------------------------------------------------------- loading


def load_toml(path: Path) -> dict[str, Any]:
    """Read a TOML file; a syntax error becomes a ``ConfigError`` naming file and line."""
    try:
        with path.open("rb") as fh:
            return tomllib.load(fh)
    except FileNotFoundError:
        raise ConfigError([f"{path}: config file not found"]) from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError([f"{path}: invalid TOML: {exc}"]) from None


def env_overrides(environ: Mapping[str, str]) -> list[tuple[tuple[str, ...], str, str]]:
    """``(key path, raw value, variable name)`` for every ``KERNEL__A__B=...`` variable."""
    out = []
    for var, raw in sorted(environ.items()):
        if var.startswith(ENV_PREFIX) and len(var) > len(ENV_PREFIX):
            parts = tuple(p.lower() for p in var[len(ENV_PREFIX) :].split("__"))
            if all(parts):
                out.append((parts, raw, var))
    return out


def field_type(cls: Any, parts: tuple[str, ...]) -> Any:
    """The annotated type at ``parts`` inside attrs class ``cls``, or ``None`` when unknown."""
    t: Any = cls
    for part in parts:
        t = _unwrap_optional(t)
        if not (isinstance(t, type) and attrs.has(t)):
            return None
        fields, hints = _fields_of(t)
        t = hints.get(next((name for name, f in fields.items() if (f.alias or name) == part), part))
    return t


def _unwrap_optional(t: Any) -> Any:
    if get_origin(t) in (typing.Union, types.UnionType):
        args = [a for a in get_args(t) if a is not type(None)]
        if len(args) == 1:
            return args[0]
    return t


def coerce_env_value(raw: str, target: Any) -> Any:
    """Turn an environment string into the value a field of type ``target`` expects.

    Strings (and secrets) stay strings; anything else is read as a TOML value
    (``60``, ``true``, ``["a", "b"]``), falling back to the raw string so the
    structuring step reports a precise type error.
    """
    inner = _unwrap_optional(target)
    if inner in (str, Secret, Path) or target is None:
        return raw
    if get_origin(inner) is Literal and all(isinstance(a, str) for a in get_args(inner)):
        return raw
    try:
        return tomllib.loads(f"v = {raw}")["v"]
    except tomllib.TOMLDecodeError:
        return raw


def set_path(data: dict[str, Any], parts: tuple[str, ...], value: Any) -> None:
    """Set ``data[a][b][c] = value`` creating tables on the way."""
    node = data
    for part in parts[:-1]:
        child = node.get(part)
        if not isinstance(child, dict):
            child = {}
            node[part] = child
        node = child
    node[parts[-1]] = value


def resolve_config_path(path: str | os.PathLike[str] | None, environ: Mapping[str, str]) -> Path:
    """``--config`` wins, then ``KERNEL_CONFIG``, then ``./kernel.toml``."""
    if path is not None:
        return Path(path)
    if environ.get("KERNEL_CONFIG"):
        return Path(environ["KERNEL_CONFIG"])
    return Path("kernel.toml")
