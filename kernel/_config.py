"""TOML + environment configuration, structured into attrs classes with every error collected."""

from __future__ import annotations

import importlib
import logging
import os
import re
import tomllib
import types
import typing
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, Literal, TypeVar, cast, get_args, get_origin

import attrs
import cattrs
from cattrs.cols import list_structure_factory, mapping_structure_factory
from cattrs.errors import ClassValidationError, ForbiddenExtraKeysError, IterableValidationError

from ._errors import ConfigError
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
    host_sections: str | None = None
    """``"module:attribute"`` naming a ``{table: attrs class}`` mapping for host sections."""


def import_sections(spec: str) -> dict[str, type[Any]]:
    """Import ``"module:attribute"`` and check it maps table names to attrs classes."""
    module_name, _, attr = spec.partition(":")
    if not module_name or not attr:
        raise ValueError(f"expected 'module:attribute', got {spec!r}")
    try:
        obj = getattr(importlib.import_module(module_name), attr)
    except (ImportError, AttributeError) as exc:
        raise ValueError(f"cannot import {spec!r}: {exc}") from exc
    if not isinstance(obj, Mapping) or not all(
        isinstance(k, str) and attrs.has(v) for k, v in obj.items()
    ):
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


def _strict(target: type, accepted: tuple[type, ...]) -> Callable[[Any, Any], Any]:
    def hook(value: Any, _: Any) -> Any:
        if isinstance(value, bool) and target is not bool:
            raise TypeError(f"expected {target.__name__}, got {_describe(value)}")
        if not isinstance(value, accepted):
            raise TypeError(f"expected {target.__name__}, got {_describe(value)}")
        return float(cast(float, value)) if target is float else value

    return hook


def _structure_secret(value: Any, _: Any) -> Secret:
    if isinstance(value, Secret):
        return value
    if not isinstance(value, str):
        raise TypeError(f"expected a secret string, got {type(value).__name__}")
    return Secret(value)


def _structure_literal(value: Any, t: Any) -> Any:
    options = get_args(t)
    if value not in options:
        allowed = ", ".join(repr(o) for o in options)
        raise ValueError(f"expected one of {allowed}, got {_describe(value)}")
    return value


def _structure_path(value: Any, _: Any) -> Path:
    if not isinstance(value, str):
        raise TypeError(f"expected a path string, got {_describe(value)}")
    return Path(value)


def _is_literal(t: Any) -> bool:
    return get_origin(t) is Literal


def _is_list(t: Any) -> bool:
    return t is list or get_origin(t) is list


def _is_mapping(t: Any) -> bool:
    return t is dict or get_origin(t) in (dict, Mapping)


def _list_factory(t: Any, conv: cattrs.Converter) -> Callable[[Any, Any], Any]:
    inner = list_structure_factory(t, conv)

    def hook(value: Any, tt: Any) -> Any:
        if not isinstance(value, list | tuple):
            raise TypeError(f"expected a list, got {_describe(value)}")
        return inner(value, tt)

    return hook


def _mapping_factory(t: Any, conv: cattrs.Converter) -> Callable[[Any, Any], Any]:
    inner = mapping_structure_factory(t, conv)

    def hook(value: Any, tt: Any) -> Any:
        if not isinstance(value, Mapping):
            raise TypeError(f"expected a table, got {_describe(value)}")
        return inner(value, tt)

    return hook


def make_converter() -> cattrs.Converter:
    """A converter that is strict about types, forbids unknown keys and reports every error."""
    conv = cattrs.Converter(forbid_extra_keys=True, detailed_validation=True)
    conv.register_structure_hook(int, _strict(int, (int,)))
    conv.register_structure_hook(float, _strict(float, (int, float)))
    conv.register_structure_hook(str, _strict(str, (str,)))
    conv.register_structure_hook(bool, _strict(bool, (bool,)))
    conv.register_structure_hook(Secret, _structure_secret)
    conv.register_structure_hook(Path, _structure_path)
    conv.register_structure_hook_func(_is_literal, _structure_literal)
    conv.register_structure_hook_factory(_is_list, _list_factory)
    conv.register_structure_hook_factory(_is_mapping, _mapping_factory)
    conv.register_unstructure_hook(Secret, lambda _s: MASK)
    conv.register_unstructure_hook(Path, str)
    return conv


CONVERTER = make_converter()


def _flatten(exc: BaseException, path: str, out: list[str]) -> None:
    """Append one ``key.path: message`` line to ``out`` for every error inside ``exc``."""
    if isinstance(exc, ClassValidationError):
        _flatten_class(exc, path, out)
    elif isinstance(exc, IterableValidationError):
        inoted, ibare = exc.group_exceptions()
        for sub, inote in inoted:
            _flatten(sub, f"{path}[{inote.index!r}]", out)
        for sub in ibare:
            _flatten(sub, path, out)
    elif isinstance(exc, ForbiddenExtraKeysError):
        for key in sorted(exc.extra_fields):
            out.append(f"{path}.{key}: unknown key")
    elif isinstance(exc, BaseExceptionGroup):
        for member in exc.exceptions:
            _flatten(member, path, out)
    else:
        out.append(_attrs_message(path, str(exc)) or f"{path}: {_message(exc)}")


def _flatten_class(exc: ClassValidationError, path: str, out: list[str]) -> None:
    noted, bare = exc.group_exceptions()
    for sub, note in noted:
        if isinstance(sub, KeyError):
            out.append(f"{path}.{note.name}: required key is missing")
        else:
            _flatten(sub, f"{path}.{note.name}", out)
    for sub in bare:
        _flatten(sub, path, out)


# attrs validators word their errors "'field' must be ...".
_ATTRS_MSG = re.compile(r"^(Length of )?'([A-Za-z_]\w*)' (must .*)$", re.DOTALL)


def _attrs_message(path: str, text: str) -> str | None:
    """``path.field: must …`` for an attrs validator's message, else ``None``."""
    m = _ATTRS_MSG.match(text)
    if m is None:
        return None
    prefix = "length " if m.group(1) else ""
    return f"{path}.{m.group(2)}: {prefix}{m.group(3)}"


def _message(exc: BaseException) -> str:
    text = str(exc)
    if isinstance(exc, TypeError) and "missing 1 required" in text:
        return "required key is missing"
    return text or type(exc).__name__


def structure(
    data: Mapping[str, Any], cls: type[T], path: str, converter: cattrs.Converter = CONVERTER
) -> tuple[T | None, list[str]]:
    """Structure ``data`` into ``cls``; return the instance or every error with its key path.

    attrs classes are structured field by field, so one run reports every type error,
    unknown key, missing key *and* every failing validator of the table (cattrs alone
    runs the validators only once every field structured).
    """
    obj, _values, errors = structure_partial(data, cls, path, converter)
    return obj, errors


def structure_partial(
    data: Mapping[str, Any], cls: type[T], path: str, converter: cattrs.Converter = CONVERTER
) -> tuple[T | None, dict[str, Any], list[str]]:
    """Like :func:`structure`, plus the init arguments of the fields that were valid.

    The kernel uses them to carry on with a partly invalid ``[kernel]`` table, so the
    errors of the other tables show up in the same run.
    """
    if not isinstance(data, Mapping):
        return None, {}, [f"{path}: expected a table, got {_describe(data)}"]
    if not attrs.has(cls):
        try:
            return converter.structure(dict(data), cls), {}, []
        except Exception as exc:  # cattrs raises ExceptionGroups of anything a hook raised
            return None, {}, _errors_of(exc, path)
    fields, hints = _fields_of(cls)
    kwargs, errors = _structure_fields(data, fields, hints, path, converter)
    construct_error: Exception | None = None
    if not errors:
        try:
            return cast(T, cls(**kwargs)), kwargs, []
        except Exception as exc:  # a validator or __attrs_post_init__
            construct_error = exc
    errors += _validator_errors(cls, fields, kwargs, path)
    if not errors and construct_error is not None:
        errors = _errors_of(construct_error, path)
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
    converter: cattrs.Converter,
) -> tuple[dict[str, Any], list[str]]:
    """Structure each field of ``data`` on its own: ``({init argument: value}, errors)``."""
    errors = [f"{path}.{key}: unknown key" for key in data if key not in fields]
    kwargs: dict[str, Any] = {}
    for name, field in fields.items():
        if name not in data:
            if field.default is attrs.NOTHING:
                errors.append(f"{path}.{name}: required key is missing")
            continue
        value, errs = _structure_value(data[name], hints[name], f"{path}.{name}", converter)
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


def _structure_value(
    value: Any, t: Any, path: str, converter: cattrs.Converter
) -> tuple[Any, list[str]]:
    inner = _unwrap_optional(t)
    if isinstance(inner, type) and attrs.has(inner) and not (inner is not t and value is None):
        obj, errs = structure(value, inner, path, converter)
        return obj, errs
    try:
        return converter.structure(value, t), []
    except Exception as exc:
        return None, _errors_of(exc, path)


def _errors_of(exc: BaseException, path: str) -> list[str]:
    errors: list[str] = []
    _flatten(exc, path, errors)
    return errors or [f"{path}: {_message(exc)}"]


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
            reason = field.metadata[_RECOMMENDED]
            msg = f"{path}.{field.name} is recommended but not set" + (f" ({reason})" if reason else "")
            if env == "production":
                errors.append(f"{path}.{field.name}: required when env = 'production'"
                              + (f" ({reason})" if reason else ""))
            else:
                warnings.append(msg)
        elif attrs.has(type(value)):
            w, e = check_recommended(value, f"{path}.{field.name}", env)
            warnings += w
            errors += e
    return warnings, errors


def unstructure(obj: object) -> Any:
    """Plain data for display; secrets become a mask."""
    return CONVERTER.unstructure(obj)


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
            parts = tuple(p.lower() for p in var[len(ENV_PREFIX):].split("__"))
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
        try:
            hints = typing.get_type_hints(t)
        except Exception:
            return None
        names = {f.name: (f.alias or f.name) for f in attrs.fields(t)}
        by_alias = {alias: name for name, alias in names.items()}
        name = by_alias.get(part, part)
        if name not in hints:
            return None
        t = hints[name]
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
