"""The shared service registry."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from kernel import DuplicateServiceError, Plugin, PluginContext, Registry, ServiceNotFoundError, hookimpl
from kernel.testing import boot_kernel, make_kernel


class Cache:
    pass


class Base:
    pass


class Impl(Base):
    pass


def test_register_by_type_and_name_and_get_both_ways() -> None:
    r = Registry()
    c = Cache()
    r.register(c, name="cache", provider="cache")
    assert r.get(Cache) is c
    assert r.get("cache") is c
    assert r.get("cache", Cache) is c
    assert r.provider_of(Cache) == "cache"


def test_register_under_an_interface() -> None:
    r = Registry()
    impl = Impl()
    r.register(impl, types=Base)
    assert r.get(Base) is impl
    assert Impl not in r


def test_duplicate_registration_names_both_providers() -> None:
    r = Registry()
    r.register(Cache(), name="cache", provider="cache")
    with pytest.raises(DuplicateServiceError) as exc_info:
        r.register(Cache(), name="other", provider="rogue")
    assert str(exc_info.value) == (
        "service Cache is already registered by plugin 'cache'; plugin 'rogue' tried to register it again"
    )
    assert "other" not in r  # a failed registration registers nothing


def test_miss_and_wrong_type_are_clear() -> None:
    r = Registry()
    with pytest.raises(ServiceNotFoundError, match="no service registered for 'nope'"):
        r.get("nope")
    r.register(1, name="one")
    with pytest.raises(TypeError, match="service 'one' is a int, not a str"):
        r.get("one", str)
    assert r.find("nope") is None


def test_overrides_shadow_registrations_and_are_undone() -> None:
    r = Registry()
    real, fake = Cache(), Cache()
    r.register(real, name="cache")
    with r.override(Cache, fake):
        assert r.get(Cache) is fake
        assert r.get("cache") is real
    assert r.get(Cache) is real


def test_unregister_removes_every_key_of_the_service() -> None:
    r = Registry()
    r.register(Cache(), name="cache")
    r.unregister("cache")
    assert "cache" not in r
    assert Cache not in r


class Provider(Plugin):
    name = "provider"
    provides = ("thing",)

    @hookimpl
    async def kernel_lifespan(self, ctx: PluginContext[object]) -> AsyncIterator[None]:
        ctx.provide("real thing", name="thing", types=())
        yield


class Consumer(Plugin):
    name = "consumer"
    requires = ("provider",)
    seen: list[str] = []

    @hookimpl
    async def kernel_lifespan(self, ctx: PluginContext[object]) -> AsyncIterator[None]:
        Consumer.seen.append(ctx.registry.get("thing"))
        yield


@pytest.mark.anyio
async def test_services_flow_between_plugins_and_test_overrides_win() -> None:
    Consumer.seen = []
    async with boot_kernel(Consumer, Provider, entry_points=False) as k:
        assert k.registry.provider_of("thing") == "provider"
    async with boot_kernel(Consumer, Provider, overrides={"thing": "fake thing"}, entry_points=False):
        pass
    assert Consumer.seen == ["real thing", "fake thing"]


@pytest.mark.anyio
async def test_a_miss_explains_which_plugin_would_provide_it() -> None:
    async with boot_kernel(Consumer, Provider, entry_points=False) as k:
        with pytest.raises(ServiceNotFoundError) as exc_info:
            k.registry.get("nothing")
        assert "no enabled plugin registers it" in str(exc_info.value)
    async with boot_kernel(Provider, entry_points=False) as k:
        k.registry.unregister("thing")
        with pytest.raises(ServiceNotFoundError, match="plugin 'provider' provides it"):
            k.registry.get("thing")


# ---------------------------------------------------------------- issue 11, item 6: misses name the provider


def test_a_miss_names_the_installed_but_disabled_plugin_and_its_distribution(test_plugins_path: Path) -> None:
    from kt_plugins.alpha import Greeter

    k = make_kernel("kt_gamma")  # kt_alpha, which provides the greeter, is installed but not enabled
    expected = (
        "plugin 'kt_alpha' (installed from kt-plugins) provides it but is not enabled: "
        "add 'kt_alpha' to [kernel] plugins"
    )
    for key in ("greeter", Greeter):
        with pytest.raises(ServiceNotFoundError) as exc_info:
            k.registry.get(key)
        assert exc_info.value.hint == expected


def test_a_miss_of_an_optional_plugin_that_is_not_installed_uses_its_install_hint() -> None:
    p = type("P", (Plugin,), {"name": "p", "optional": ("acme_x",), "install_hints": {"acme_x": "acme-x"}})
    k = make_kernel(p, entry_points=False)
    with pytest.raises(ServiceNotFoundError) as exc_info:
        k.registry.get("acme_x")
    assert exc_info.value.hint == "plugin 'acme_x' would provide it but is not installed (pip install acme-x)"
    with pytest.raises(ServiceNotFoundError) as exc_info:
        k.registry.get("nothing")
    assert exc_info.value.hint == (
        "no enabled plugin registers it, and no installed plugin declares it in provides"
    )
