"""Discovery through real, pip-installed entry points."""

from __future__ import annotations

from pathlib import Path

import pytest

from kernel import ConfigError, Kernel, PluginLoadError
from kernel._discovery import discover


@pytest.fixture(autouse=True)
def _plugins(test_plugins_path: Path) -> None:
    """Every test here sees the kt-* test distributions."""


def test_installed_plugins_are_found_with_their_distribution() -> None:
    d = discover()
    alpha = d.installed["kt_alpha"]
    assert alpha.distribution == "kt-plugins"
    assert alpha.dist_version == "1.2.3"
    assert alpha.value == "kt_plugins.alpha:AlphaPlugin"
    assert alpha.load().version == "1.0.0"


def test_discovery_imports_nothing_until_load() -> None:
    d = discover()
    broken = d.installed["kt_broken"]
    assert broken.error is None  # not imported yet
    with pytest.raises(PluginLoadError) as exc_info:
        broken.load()
    err = exc_info.value
    assert err.name == "kt_broken"
    assert err.distribution == "kt-plugins"
    assert isinstance(err.cause, ImportError)
    assert "kt_broken needs a library that is not installed" in str(err)


def test_two_distributions_claiming_one_name_are_named_both() -> None:
    d = discover()
    assert "kt_dup" not in d.installed
    message = str(d.conflict_error("kt_dup"))
    assert "'kt-dup-one'" in message
    assert "'kt-dup-two'" in message


def test_enabling_a_conflicting_name_is_a_config_error() -> None:
    with pytest.raises(ConfigError) as exc_info:
        Kernel.from_dict({"kernel": {"plugins": ["kt_dup"]}}, environ={})
    assert any("kt-dup-one" in e and "kt-dup-two" in e for e in exc_info.value.errors)


def test_an_import_failure_does_not_take_other_plugins_down() -> None:
    # kt_broken is installed but not enabled: the kernel boots the others fine.
    kernel = Kernel.from_dict({"kernel": {"plugins": ["kt_alpha", "kt_beta"]}}, environ={})
    assert kernel.load_order == ["kt_alpha", "kt_beta"]


def test_enabling_a_broken_plugin_reports_name_distribution_and_cause() -> None:
    with pytest.raises(ConfigError) as exc_info:
        Kernel.from_dict({"kernel": {"plugins": ["kt_alpha", "kt_broken"]}}, environ={})
    (error,) = exc_info.value.errors
    assert "plugin 'kt_broken'" in error
    assert "'kt-plugins'" in error
    assert "ImportError" in error


@pytest.mark.parametrize(
    ("name", "fragment"),
    [
        ("kt_notaplugin", "must name a kernel.Plugin subclass or instance"),
        ("kt_misnamed", "declares name 'kt_alpha'"),
    ],
)
def test_invalid_entry_points_are_explained(name: str, fragment: str) -> None:
    with pytest.raises(ConfigError) as exc_info:
        Kernel.from_dict({"kernel": {"plugins": [name]}}, environ={})
    assert fragment in exc_info.value.errors[0]
    assert name in exc_info.value.errors[0]


def test_explicit_plugin_objects_win_over_installed_ones() -> None:
    from kernel import Plugin

    class FakeAlpha(Plugin):
        name = "kt_alpha"
        version = "9.9.9"

    kernel = Kernel.from_dict({"kernel": {"plugins": ["kt_alpha"]}}, environ={}, plugins=[FakeAlpha])
    assert kernel.plugin("kt_alpha").plugin.version == "9.9.9"
