"""Dependency order, and the errors that explain why an order is impossible."""

from __future__ import annotations

from pathlib import Path

import pytest

from kernel import ConfigError, DependencyError, Plugin
from kernel.testing import make_kernel


def plugin(name: str, requires: tuple[str, ...] = (), optional: tuple[str, ...] = ()) -> type[Plugin]:
    return type(name.title(), (Plugin,), {"name": name, "requires": requires, "optional": optional})


def test_requires_start_first_and_ties_keep_config_order() -> None:
    k = make_kernel(
        plugin("queue", requires=("redis", "eventbus")),
        plugin("eventbus", requires=("redis",)),
        plugin("metrics"),
        plugin("redis"),
        entry_points=False,
    )
    assert k.load_order == ["metrics", "redis", "eventbus", "queue"]


def test_optional_dependencies_order_first_when_present_and_are_skipped_when_absent() -> None:
    cache = plugin("cache", optional=("metrics",))
    with_metrics = make_kernel(cache, plugin("metrics"), entry_points=False)
    assert with_metrics.load_order == ["metrics", "cache"]
    without = make_kernel(cache, entry_points=False)
    assert without.load_order == ["cache"]


def test_cycle_is_reported_with_its_full_path() -> None:
    with pytest.raises(DependencyError) as exc_info:
        make_kernel(
            plugin("cache", requires=("eventbus",)),
            plugin("eventbus", requires=("metrics",)),
            plugin("metrics", requires=("cache",)),
            entry_points=False,
        )
    assert "dependency cycle: cache -> eventbus -> metrics -> cache" in exc_info.value.errors


def test_cycle_through_an_optional_dependency_is_still_a_cycle() -> None:
    with pytest.raises(DependencyError) as exc_info:
        make_kernel(plugin("a", requires=("b",)), plugin("b", optional=("a",)), entry_points=False)
    assert "dependency cycle: a -> b -> a" in exc_info.value.errors


def test_self_dependency_is_a_cycle() -> None:
    with pytest.raises(DependencyError) as exc_info:
        make_kernel(plugin("a", requires=("a",)), entry_points=False)
    assert "dependency cycle: a -> a" in exc_info.value.errors


def test_missing_dependency_says_how_to_install_it() -> None:
    with pytest.raises(DependencyError) as exc_info:
        make_kernel(plugin("queue", requires=("eventbus",)), entry_points=False)
    assert exc_info.value.errors == [
        "plugin 'queue' requires 'eventbus', which is not installed (pip install milo-kernel-eventbus)"
    ]


def test_install_hint_can_be_declared_by_the_plugin() -> None:
    p = type("P", (Plugin,), {"name": "p", "requires": ("x",), "install_hints": {"x": "acme-x"}})
    with pytest.raises(DependencyError) as exc_info:
        make_kernel(p, entry_points=False)
    assert "(pip install acme-x)" in exc_info.value.errors[0]


def test_installed_but_not_enabled_dependency_says_enable_it(test_plugins_path: Path) -> None:
    with pytest.raises(DependencyError) as exc_info:
        make_kernel("kt_beta")
    assert exc_info.value.errors == [
        "plugin 'kt_beta' requires 'kt_alpha', which is installed but not enabled "
        "(add it to [kernel] plugins)"
    ]


def test_all_dependency_problems_are_reported_together() -> None:
    with pytest.raises(DependencyError) as exc_info:
        make_kernel(
            plugin("a", requires=("missing1",)),
            plugin("b", requires=("missing2",)),
            entry_points=False,
        )
    assert len(exc_info.value.errors) == 2


def test_enabled_but_not_installed_is_an_error() -> None:
    # only first-party plugins are published as milo-kernel-<name>; other names are not guessed
    with pytest.raises(ConfigError) as exc_info:
        make_kernel("nope_not_here")
    assert exc_info.value.errors == [
        "kernel.plugins: plugin 'nope_not_here' is enabled but not installed (no installed distribution "
        "has a 'kernel.plugins' entry point named 'nope_not_here': install the one that provides it)"
    ]
    with pytest.raises(ConfigError) as exc_info:
        make_kernel("redis", entry_points=False)
    assert exc_info.value.errors == [
        "kernel.plugins: plugin 'redis' is enabled but not installed (pip install milo-kernel-redis)"
    ]


def test_install_hints_cover_optional_plugins_and_third_party_requirements() -> None:
    p = type("P", (Plugin,), {"name": "p", "optional": ("x",), "install_hints": {"x": "acme-x"}})
    with pytest.raises(ConfigError) as exc_info:
        make_kernel(p, "x", entry_points=False)
    assert exc_info.value.errors == [
        "kernel.plugins: plugin 'x' is enabled but not installed (pip install acme-x)"
    ]
    with pytest.raises(DependencyError) as exc_info:
        make_kernel(plugin("a", requires=("acme_thing",)), entry_points=False)
    assert exc_info.value.errors == [
        "plugin 'a' requires 'acme_thing', which is not installed (no installed distribution has a "
        "'kernel.plugins' entry point named 'acme_thing': install the one that provides it)"
    ]


def test_listing_a_plugin_twice_is_an_error() -> None:
    a = plugin("a")
    with pytest.raises(ConfigError) as exc_info:
        make_kernel(a, a, entry_points=False)
    assert "kernel.plugins: 'a' is listed more than once" in exc_info.value.errors
