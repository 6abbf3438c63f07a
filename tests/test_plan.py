"""Config assembly is its own step: ``build_plan`` returns a frozen plan, ``Kernel.from_plan`` runs it."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import attrs
import pytest

from kernel import CheckIssue, ConfigError, DependencyError, Kernel, Plugin, PluginContext, Registry, hookimpl
from kernel._plan import KernelPlan, build_plan


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


def test_a_plan_is_frozen_ordered_and_typed() -> None:
    doc: dict[str, Any] = {
        "kernel": {"plugins": ["web", "db"]},
        "plugins": {"db": {"pool": 1}},
        "app": {"title": "t"},
    }
    plan = build_plan(
        doc,
        environ={"KERNEL__PLUGINS__DB__URL": "pg://h/db"},
        sections={"app": AppSettings},
        plugins=[Db, Web],
        entry_points=False,
    )
    assert isinstance(plan, KernelPlan)
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


def test_build_plan_reports_every_error_at_once_and_runs_no_lifecycle_code() -> None:
    doc = {"kernel": {"plugins": ["db", "web"], "env": "staging"}, "plugins": {"db": {"pool": "x"}}}
    with pytest.raises(ConfigError) as info:
        build_plan(doc, environ={}, plugins=[Db, Web], entry_points=False)
    text = str(info.value)
    assert "kernel.env" in text
    assert "plugins.db.pool" in text
    with pytest.raises(DependencyError, match="web"):
        build_plan({"kernel": {"plugins": ["web"]}}, environ={}, plugins=[Db, Web], entry_points=False)


@pytest.mark.anyio
async def test_a_kernel_runs_its_plan() -> None:
    registry = Registry()
    doc: dict[str, Any] = {"kernel": {"plugins": ["db", "web"]}, "plugins": {"db": {"pool": 3}}}
    plan = build_plan(doc, environ={}, plugins=[Db, Web], entry_points=False, registry=registry)
    kernel = Kernel.from_plan(plan, registry=registry)
    assert kernel.load_order == plan.load_order
    assert kernel.plugin("db").ctx.config is plan.plugins[0].config
    async with kernel:
        assert kernel.registry.get("db.config") == DbConfig(pool=3)
    same = Kernel.from_dict(doc, environ={}, plugins=[Db, Web], entry_points=False)
    assert same.effective_config() == kernel.effective_config()
