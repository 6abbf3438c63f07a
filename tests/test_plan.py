"""Config assembly is its own step: ``build_plan`` returns a frozen plan, ``Kernel.from_plan`` runs it."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import attrs
import pytest

from kernel import CheckIssue, ConfigError, DependencyError, Kernel, Plugin, PluginContext, Registry, hookimpl
from kernel._discovery import discover
from kernel._plan import KernelPlan, build_plan
from kernel.config import KernelSettings


@attrs.define(frozen=True)
class DbConfig:
    url: str = "sqlite://"
    pool: int = 5


@attrs.define(frozen=True)
class AppSettings:
    title: str


class Db(Plugin):
    name = "db"
    config_class = DbConfig

    @hookimpl
    def kernel_check(self, ctx: PluginContext[DbConfig]) -> list[CheckIssue]:
        return [CheckIssue.warning("pool", "small pool")] if ctx.config.pool < 2 else []

    @hookimpl
    async def kernel_lifespan(self, ctx: PluginContext[DbConfig]) -> AsyncIterator[None]:
        ctx.provide(ctx.config, name="db.config")
        yield


class Web(Plugin):
    name = "web"
    requires = ("db",)


def plan_of(doc: dict[str, Any], registry: Registry | None = None, **kwargs: Any) -> KernelPlan:
    return build_plan(
        doc,
        kwargs.pop("environ", {}),
        discover([Db, Web], entry_points=False),
        registry or Registry(),
        **kwargs,
    )


def test_a_plan_is_frozen_ordered_and_typed() -> None:
    doc: dict[str, Any] = {
        "kernel": {"plugins": ["web", "db"], "env": "test"},
        "plugins": {"db": {"pool": 1}},
        "app": {"title": "t"},
    }
    seen: list[KernelSettings] = []
    plan = plan_of(
        doc,
        environ={"KERNEL__PLUGINS__DB__URL": "pg://h/db"},
        sections={"app": AppSettings},
        on_settings=seen.append,
    )
    assert [s.env for s in seen] == ["test"]  # the valid [kernel] table, once
    assert plan.load_order == ["db", "web"]
    assert plan.plugins[0].config == DbConfig(url="pg://h/db", pool=1)
    assert plan.sections["app"] == AppSettings("t")
    assert plan.warnings == ("plugins.db.pool: small pool",)
    assert plan.raw_config["plugins"]["db"]["url"] == "pg://h/db"  # the document after the environment
    assert doc["plugins"]["db"] == {"pool": 1}  # the caller's document is left alone
    with pytest.raises(attrs.exceptions.FrozenInstanceError):
        plan.warnings = ()  # type: ignore[misc]
    with pytest.raises(TypeError):
        plan.sections["app"] = AppSettings("other")  # type: ignore[index]


def test_build_plan_reports_every_error_at_once() -> None:
    seen: list[KernelSettings] = []
    doc = {"kernel": {"plugins": ["db", "web"], "env": "staging"}, "plugins": {"db": {"pool": "x"}}}
    with pytest.raises(ConfigError) as info:
        plan_of(doc, on_settings=seen.append)
    assert [e.split(":")[0] for e in info.value.errors] == ["kernel.env", "plugins.db.pool"]
    assert seen == []  # an invalid [kernel] table configures nothing
    with pytest.raises(DependencyError, match="web"):
        plan_of({"kernel": {"plugins": ["web"]}})


@pytest.mark.anyio
async def test_a_kernel_runs_its_plan() -> None:
    registry = Registry()
    doc: dict[str, Any] = {"kernel": {"plugins": ["db", "web"]}, "plugins": {"db": {"pool": 3}}}
    plan = plan_of(doc, registry)
    kernel = Kernel.from_plan(plan, registry=registry)
    assert kernel.load_order == plan.load_order
    assert kernel.plugin("db").ctx.config is plan.plugins[0].config
    async with kernel:
        assert kernel.registry.get("db.config") == DbConfig(pool=3)
    same = Kernel.from_dict(doc, environ={}, plugins=[Db, Web], entry_points=False)
    assert same.effective_config() == kernel.effective_config()
