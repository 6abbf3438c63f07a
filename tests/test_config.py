"""TOML + environment config: strict types, every error at once, secrets never shown."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Literal

import attrs
import pytest

from kernel import ConfigError, Kernel, Plugin, Secret, recommended
from kernel._config import coerce_env_value, env_overrides
from kernel.testing import make_kernel


@attrs.define(frozen=True)
class Inner:
    port: int = 6379
    hosts: list[str] = attrs.field(factory=list)


@attrs.define(frozen=True)
class CacheConfig:
    default_ttl: int = attrs.field(default=3600, validator=attrs.validators.gt(0))
    backend: Literal["memory", "redis"] = "memory"
    ratio: float = 0.5
    enabled: bool = True
    password: Secret | None = None
    inner: Inner = attrs.field(factory=Inner)


class CachePlugin(Plugin):
    name = "cache"
    config_class = CacheConfig


@attrs.define(frozen=True)
class AppConfig:
    jwt_secret: Secret = attrs.field(validator=lambda _i, _a, v: _min_len(v))
    session_secret: Secret | None = recommended(reason="sessions are unsigned without it")
    name: str = "demo"


def _min_len(v: Secret) -> None:
    if len(v) < 8:
        raise ValueError("'jwt_secret' must be at least 8 characters")


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "kernel.toml"
    path.write_text(text)
    return path


def load(tmp_path: Path, text: str, environ: dict[str, str] | None = None, **kw: object) -> Kernel:
    return Kernel.from_config(
        write(tmp_path, text),
        environ=environ or {},
        **kw,  # type: ignore[arg-type]
    )


def test_a_valid_file_structures_into_the_plugin_class(tmp_path: Path) -> None:
    k = Kernel.from_dict(
        {
            "kernel": {"plugins": ["cache"], "env": "test"},
            "plugins": {
                "cache": {"default_ttl": 60, "backend": "redis", "ratio": 1, "inner": {"hosts": ["a", "b"]}}
            },
        },
        environ={},
        plugins=[CachePlugin],
        entry_points=False,
    )
    cfg = k.plugin("cache").ctx.config
    assert cfg == CacheConfig(default_ttl=60, backend="redis", ratio=1.0, inner=Inner(hosts=["a", "b"]))
    assert isinstance(cfg.ratio, float)


def test_every_error_in_every_table_is_reported_at_once_with_key_paths(tmp_path: Path) -> None:
    text = """
[kernel]
plugins = ["cache"]

[plugins.cache]
default_ttl = "abc"
backend = "memcached"
enabled = "yes"
typo_key = 1

[plugins.cache.inner]
port = 1.5
hosts = ["a", 2]

[plugins.nosuch]
x = 1
"""
    # An invalid [kernel] table joins these too: test_an_invalid_kernel_table_does_not_hide_the_other_tables.
    with pytest.raises(ConfigError) as exc_info:
        load(tmp_path, text, plugins=[CachePlugin], entry_points=False)
    assert sorted(exc_info.value.errors) == sorted(
        [
            "plugins.cache.default_ttl: expected int, got 'abc'",
            "plugins.cache.backend: expected one of 'memory', 'redis', got 'memcached'",
            "plugins.cache.enabled: expected bool, got 'yes'",
            "plugins.cache.typo_key: unknown key",
            "plugins.cache.inner.port: expected int, got 1.5",
            "plugins.cache.inner.hosts[1]: expected str, got 2",
            "plugins.nosuch: no plugin named 'nosuch' is installed",
        ]
    )


def test_validator_errors_name_the_field(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as exc_info:
        load(tmp_path, "[kernel]\nhealth_timeout = -1\n")
    assert exc_info.value.errors == ["kernel.health_timeout: must be > 0: -1.0"]


def test_unknown_sections_and_kernel_keys_are_errors(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as exc_info:
        load(tmp_path, "[kernel]\nplugin = []\n\n[extra]\na = 1\n")
    errors = exc_info.value.errors
    assert "kernel.plugin: unknown key" in errors
    assert any(e.startswith("extra: unknown section") for e in errors)


def test_toml_syntax_errors_name_the_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as exc_info:
        load(tmp_path, "[kernel\n")
    assert str(tmp_path / "kernel.toml") in exc_info.value.errors[0]
    assert "invalid TOML" in exc_info.value.errors[0]


def test_missing_file_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="config file not found"):
        Kernel.from_config(tmp_path / "absent.toml", environ={})


def test_config_path_comes_from_kernel_config_env(tmp_path: Path) -> None:
    path = write(tmp_path, '[kernel]\nenv = "test"\n')
    k = Kernel.from_config(environ={"KERNEL_CONFIG": str(path)})
    assert k.config_path == path
    assert k.settings.env == "test"


def test_environment_overrides_are_typed_by_the_target_field(tmp_path: Path) -> None:
    environ = {
        "KERNEL__KERNEL__PLUGINS": '["cache"]',
        "KERNEL__KERNEL__ENV": "test",
        "KERNEL__PLUGINS__CACHE__DEFAULT_TTL": "60",
        "KERNEL__PLUGINS__CACHE__ENABLED": "false",
        "KERNEL__PLUGINS__CACHE__PASSWORD": "12345",  # digits, but the field is a secret string
        "KERNEL__PLUGINS__CACHE__INNER__HOSTS": '["x", "y"]',
        "UNRELATED": "1",
    }
    k = load(
        tmp_path, "[plugins.cache]\ndefault_ttl = 5\n", environ, plugins=[CachePlugin], entry_points=False
    )
    cfg = k.plugin("cache").ctx.config
    assert cfg.default_ttl == 60
    assert cfg.enabled is False
    assert cfg.password == Secret("12345")
    assert cfg.inner.hosts == ["x", "y"]
    assert k.settings.env == "test"


def test_a_bad_environment_override_names_the_path(tmp_path: Path) -> None:
    environ = {"KERNEL__PLUGINS__CACHE__DEFAULT_TTL": "sixty", "KERNEL__PLUGINS__CACHE__NOPE": "1"}
    with pytest.raises(ConfigError) as exc_info:
        load(tmp_path, '[kernel]\nplugins = ["cache"]\n', environ, plugins=[CachePlugin], entry_points=False)
    # the error names the variable, not only the key path it maps to (issue 11, item 3)
    assert sorted(exc_info.value.errors) == [
        "KERNEL__PLUGINS__CACHE__DEFAULT_TTL (from the environment): expected int, got 'sixty'",
        "KERNEL__PLUGINS__CACHE__NOPE (from the environment): unknown key",
    ]


def test_env_override_for_an_unknown_target_is_reported(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as exc_info:
        load(tmp_path, "", {"KERNEL__NOWHERE__X": "1"})
    assert exc_info.value.errors == ["nowhere.x: set by KERNEL__NOWHERE__X but matches no known setting"]


def test_env_override_parsing_rules() -> None:
    assert env_overrides({"KERNEL__A__B": "1", "KERNEL__": "x", "OTHER": "2"}) == [
        (("a", "b"), "1", "KERNEL__A__B")
    ]
    assert coerce_env_value("60", int) == 60
    assert coerce_env_value("60", str) == "60"
    assert coerce_env_value("true", bool) is True
    assert coerce_env_value("not toml", int) == "not toml"


def test_host_sections_are_validated_with_the_same_rules(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as exc_info:
        load(tmp_path, '[app]\njwt_secret = "short"\nnmae = "x"\n', sections={"app": AppConfig})
    # an unknown key no longer hides the validator error of another field (issue 11, item 3)
    assert sorted(exc_info.value.errors) == [
        "app.jwt_secret: must be at least 8 characters",
        "app.nmae: unknown key",
    ]
    with pytest.raises(ConfigError) as exc_info:
        load(tmp_path, '[app]\njwt_secret = "short"\n', sections={"app": AppConfig})
    assert exc_info.value.errors == ["app.jwt_secret: must be at least 8 characters"]
    k = load(tmp_path, '[app]\njwt_secret = "long-enough-secret"\n', sections={"app": AppConfig})
    assert k.section("app").jwt_secret.get_secret_value() == "long-enough-secret"


def test_missing_required_host_key_is_reported(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as exc_info:
        load(tmp_path, "[app]\n", sections={"app": AppConfig})
    assert exc_info.value.errors == ["app.jwt_secret: required key is missing"]


def test_host_sections_can_be_named_in_the_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "host_settings_mod.py").write_text(
        "import attrs\nfrom kernel import Secret\n"
        "@attrs.define\nclass App:\n"
        "    jwt_secret: Secret = attrs.field(validator=attrs.validators.min_len(8))\n"
        "SECTIONS = {'app': App}\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    text = '[kernel]\nhost_sections = "host_settings_mod:SECTIONS"\n\n[app]\njwt_secret = "x"\n'
    with pytest.raises(ConfigError) as exc_info:
        load(tmp_path, text)
    assert exc_info.value.errors == ["app.jwt_secret: length must be >= 8: 1"]
    with pytest.raises(ConfigError) as exc_info:
        load(tmp_path, '[kernel]\nhost_sections = "no_such_module:X"\n')
    assert exc_info.value.errors[0].startswith("kernel.host_sections: cannot import 'no_such_module:X'")


def test_recommended_settings_warn_in_development(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING, logger="kernel.config"):
        k = load(tmp_path, '[app]\njwt_secret = "long-enough-secret"\n', sections={"app": AppConfig})
    assert k.warnings == ("app.session_secret is recommended but not set (sessions are unsigned without it)",)
    assert k.warnings[0] in caplog.text


def test_recommended_settings_are_required_in_production(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as exc_info:
        load(
            tmp_path,
            '[kernel]\nenv = "production"\n\n[app]\njwt_secret = "long-enough-secret"\n',
            sections={"app": AppConfig},
        )
    assert exc_info.value.errors == [
        "app.session_secret: required when env = 'production' (sessions are unsigned without it)"
    ]


def test_secrets_never_show_in_repr_str_or_effective_config(tmp_path: Path) -> None:
    k = load(
        tmp_path,
        '[kernel]\nplugins = ["cache"]\n[plugins.cache]\npassword = "hunter2-secret"\n',
        plugins=[CachePlugin],
        entry_points=False,
    )
    cfg = k.plugin("cache").ctx.config
    assert "hunter2" not in repr(cfg)
    assert "hunter2" not in str(cfg.password)
    assert "hunter2" not in f"{cfg.password}"
    assert "hunter2" not in str(k.effective_config())
    assert cfg.password.get_secret_value() == "hunter2-secret"


def test_secret_rejects_non_strings_and_compares_by_value() -> None:
    with pytest.raises(TypeError):
        Secret(123)  # type: ignore[arg-type]
    assert Secret("a") == Secret("a")
    assert Secret("a") != Secret("b")
    assert "a" not in repr(Secret("a"))


def test_a_plugin_table_for_an_installed_but_disabled_plugin_is_ignored(test_plugins_path: Path) -> None:
    k = make_kernel(config={"kt_alpha": {"greeting": "hi"}})
    assert k.load_order == []


def test_env_override_for_an_installed_but_disabled_plugin_is_ignored(test_plugins_path: Path) -> None:
    k = make_kernel(environ={"KERNEL__PLUGINS__KT_ALPHA__RETRIES": "5"})
    assert k.load_order == []


# ---------------------------------------------------------------- issue 11, item 3: every error at once


@attrs.define(frozen=True)
class Limits:
    burst: int = attrs.field(default=1, validator=attrs.validators.gt(0))
    names: list[str] = attrs.field(factory=list, validator=attrs.validators.max_len(2))


@attrs.define(frozen=True)
class XConfig:
    greeting: str = "hello"
    max_name_length: int = attrs.field(default=20, validator=attrs.validators.gt(0))
    mode: Literal["a", "b"] = attrs.field(default="a", validator=attrs.validators.in_(("a", "b")))
    limits: Limits = attrs.field(factory=Limits)


class XPlugin(Plugin):
    name = "x"
    config_class = XConfig


def test_type_errors_do_not_hide_validator_errors_of_the_same_table(tmp_path: Path) -> None:
    text = """
[kernel]
plugins = ["x"]

[plugins.x]
greeting = 42
max_name_length = 0
colour = "red"

[plugins.x.limits]
burst = -1
names = ["a", "b", "c"]
"""
    with pytest.raises(ConfigError) as exc_info:
        load(tmp_path, text, plugins=[XPlugin], entry_points=False)
    assert sorted(exc_info.value.errors) == [
        "plugins.x.colour: unknown key",
        "plugins.x.greeting: expected str, got 42",
        "plugins.x.limits.burst: must be > 0: -1",
        "plugins.x.limits.names: length must be <= 2: 3",
        "plugins.x.max_name_length: must be > 0: 0",
    ]


def test_an_invalid_kernel_table_does_not_hide_the_other_tables(tmp_path: Path) -> None:
    text = """
[kernel]
plugins = ["x"]
env = "prod"
health_timeout = -1

[plugins.x]
max_name_length = 0

[plugins.nosuch]
a = 1

[app]
name = 3
"""
    with pytest.raises(ConfigError) as exc_info:
        load(tmp_path, text, plugins=[XPlugin], entry_points=False, sections={"app": AppConfig})
    assert sorted(exc_info.value.errors) == sorted(
        [
            "kernel.env: expected one of 'development', 'test', 'production', got 'prod'",
            "kernel.health_timeout: must be > 0: -1.0",
            "plugins.x.max_name_length: must be > 0: 0",
            "plugins.nosuch: no plugin named 'nosuch' is installed",
            "app.jwt_secret: required key is missing",
            "app.name: expected str, got 3",
        ]
    )


def test_errors_from_environment_variables_name_the_variable(tmp_path: Path) -> None:
    environ = {
        "KERNEL__PLUGINS__X__COLOUR": "red",
        "KERNEL__PLUGINS__X__MAX_NAME_LENGTH": "0",
        "KERNEL__PLUGINS__X__LIMITS__NAMES": '["a", 2]',
        "KERNEL__KERNEL__HEALTH_TIMEOUT": "-1",
        "KERNEL__APP__NAME": "fine",
    }
    with pytest.raises(ConfigError) as exc_info:
        load(
            tmp_path,
            '[kernel]\nplugins = ["x"]\n[plugins.x]\ngreeting = 1\n',
            environ,
            plugins=[XPlugin],
            entry_points=False,
            sections={"app": AppConfig},
        )
    assert sorted(exc_info.value.errors) == sorted(
        [
            "KERNEL__PLUGINS__X__COLOUR (from the environment): unknown key",
            "KERNEL__PLUGINS__X__MAX_NAME_LENGTH (from the environment): must be > 0: 0",
            "KERNEL__PLUGINS__X__LIMITS__NAMES (from the environment) at [1]: expected str, got 2",
            "KERNEL__KERNEL__HEALTH_TIMEOUT (from the environment): must be > 0: -1.0",
            "plugins.x.greeting: expected str, got 1",  # from the file: named by its key path
            "app.jwt_secret: required key is missing",
        ]
    )


@attrs.define(frozen=True)
class Converted:
    level: int = attrs.field(default=10, converter=abs, validator=attrs.validators.le(100))
    name: str = "x"


def test_validators_see_converted_values_when_another_field_failed() -> None:
    from kernel._config import structure

    assert structure({"level": -50, "name": 1}, Converted, "t") == (None, ["t.name: expected str, got 1"])
    assert structure({"level": -500, "name": 1}, Converted, "t") == (
        None,
        ["t.name: expected str, got 1", "t.level: must be <= 100: 500"],
    )


@attrs.define
class _Item:
    port: int = 0


@attrs.define
class _Shapes:
    flags: dict[str, str | bool] = attrs.field(factory=dict)
    key: int | str = 0
    names: tuple[str, ...] = ()
    items: list[_Item] = attrs.field(factory=list)


def test_unions_tuples_and_tables_in_lists_are_structured_strictly() -> None:
    """A union accepts any of its members; a string is not a list; a list item must be a table."""
    from kernel._config import structure

    ok, errors = structure({"flags": {"a": "x", "b": True}, "key": "k", "names": ["n"]}, _Shapes, "t")
    assert errors == []
    assert ok == _Shapes(flags={"a": "x", "b": True}, key="k", names=("n",))
    bad = {"flags": {"a": 1}, "key": 1.5, "names": "ab", "items": [{"port": 1}, 3]}
    _, errors = structure(bad, _Shapes, "t")
    assert errors == [
        "t.flags['a']: expected str or bool, got 1",
        "t.key: expected int or str, got 1.5",
        "t.names: expected a list, got 'ab'",
        "t.items[1]: expected a table, got 3",
    ]
