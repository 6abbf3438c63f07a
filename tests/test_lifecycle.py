"""Boot in order, shut down in reverse, unwind half-failed boots, report every teardown failure."""

from __future__ import annotations

import contextvars
import logging
from collections.abc import AsyncIterator
from typing import Any

import anyio
import attrs
import pytest
import sniffio

from kernel import (
    BootError,
    CheckIssue,
    ConfigError,
    Kernel,
    KernelError,
    Plugin,
    PluginContext,
    ShutdownError,
    TeardownError,
    hookimpl,
)
from kernel.testing import boot_kernel, make_kernel, wait_until

EVENTS: list[str] = []


def make(
    name: str,
    *,
    requires: tuple[str, ...] = (),
    fail_setup: bool = False,
    fail_teardown: bool = False,
    fail_register: bool = False,
) -> type[Plugin]:
    class P(Plugin):
        @hookimpl
        def kernel_register(self, ctx: PluginContext[Any]) -> None:
            EVENTS.append(f"{name}:register")
            if fail_register:
                raise RuntimeError(f"{name} register exploded")

        @hookimpl
        async def kernel_lifespan(self, ctx: PluginContext[Any]) -> AsyncIterator[None]:
            EVENTS.append(f"{name}:start")
            if fail_setup:
                raise RuntimeError(f"{name} setup exploded")
            yield
            EVENTS.append(f"{name}:stop")
            if fail_teardown:
                raise RuntimeError(f"{name} teardown exploded")

    P.name = name
    P.requires = requires
    P.__name__ = P.__qualname__ = name.title()
    return P


@pytest.fixture(autouse=True)
def _reset() -> None:
    EVENTS.clear()


@pytest.mark.anyio
async def test_boot_in_dependency_order_and_shutdown_in_exact_reverse() -> None:
    plugins = [make("c", requires=("b",)), make("b", requires=("a",)), make("a")]
    async with boot_kernel(*plugins, entry_points=False) as k:
        assert k.booted
        EVENTS.append("body")
    assert not k.booted
    assert EVENTS == [
        "a:register",
        "b:register",
        "c:register",
        "a:start",
        "b:start",
        "c:start",
        "body",
        "c:stop",
        "b:stop",
        "a:stop",
    ]


@pytest.mark.anyio
async def test_the_kernel_runs_on_the_backend_under_test(anyio_backend: str) -> None:
    """conftest runs every async kernel test on asyncio and trio: the lifecycle uses anyio only."""
    seen: list[str] = []

    class Probe(Plugin):
        name = "probe"

        @hookimpl
        async def kernel_lifespan(self, ctx: PluginContext[Any]) -> AsyncIterator[None]:
            seen.append(sniffio.current_async_library())
            await anyio.lowlevel.checkpoint()  # a real switch through the running event loop
            yield
            seen.append(sniffio.current_async_library())

    async with boot_kernel(Probe, entry_points=False):
        pass
    assert seen == [anyio_backend, anyio_backend]


@pytest.mark.anyio
async def test_half_failed_boot_unwinds_what_started_and_names_phase_plugin_and_cause() -> None:
    k = make_kernel(
        make("a"), make("b", requires=("a",), fail_setup=True), make("c", requires=("b",)), entry_points=False
    )
    with pytest.raises(BootError) as exc_info:
        async with k:
            pytest.fail("body must not run")
    err = exc_info.value
    assert (err.phase, err.plugin) == ("start", "b")
    assert isinstance(err.cause, RuntimeError)
    assert str(err) == "boot failed in phase 'start' of plugin 'b': RuntimeError: b setup exploded"
    assert EVENTS == ["a:register", "b:register", "c:register", "a:start", "b:start", "a:stop"]
    assert not k.booted


@pytest.mark.anyio
async def test_failure_in_register_phase_is_reported_as_such() -> None:
    with pytest.raises(BootError) as exc_info:
        async with boot_kernel(make("a"), make("b", fail_register=True), entry_points=False):
            pass
    assert (exc_info.value.phase, exc_info.value.plugin) == ("register", "b")
    assert "a:start" not in EVENTS


@pytest.mark.anyio
async def test_every_teardown_runs_and_failures_are_raised_together() -> None:
    plugins = [
        make("a", fail_teardown=True),
        make("b", requires=("a",)),
        make("c", requires=("b",), fail_teardown=True),
    ]
    with pytest.raises(ShutdownError) as exc_info:
        async with boot_kernel(*plugins, entry_points=False):
            pass
    assert EVENTS[-3:] == ["c:stop", "b:stop", "a:stop"]
    failures = exc_info.value.exceptions
    assert [f.plugin for f in failures] == ["c", "a"]
    assert all(isinstance(f, TeardownError) for f in failures)
    assert "c teardown exploded" in str(failures[0])


@pytest.mark.anyio
async def test_teardown_failure_after_a_body_error_does_not_hide_the_body_error() -> None:
    with pytest.raises(ValueError, match="body failed") as exc_info:
        async with boot_kernel(make("a", fail_teardown=True), entry_points=False):
            raise ValueError("body failed")
    assert "a:stop" in EVENTS
    assert any("kernel shutdown also failed" in n for n in exc_info.value.__notes__)


@pytest.mark.anyio
async def test_half_failed_boot_whose_unwind_fails_still_raises_boot_error() -> None:
    with pytest.raises(BootError) as exc_info:
        async with boot_kernel(make("a", fail_teardown=True), make("b", fail_setup=True), entry_points=False):
            pass
    assert exc_info.value.plugin == "b"
    assert "a:stop" in EVENTS
    notes = getattr(exc_info.value.cause, "__notes__", [])
    assert any("while unwinding the failed boot" in n for n in notes)


@pytest.mark.anyio
async def test_cancellation_during_boot_unwinds_started_plugins() -> None:
    class Slow(Plugin):
        name = "slow"

        @hookimpl
        async def kernel_lifespan(self) -> AsyncIterator[None]:
            EVENTS.append("slow:start")
            await anyio.sleep(30)
            yield

    k = make_kernel(make("a"), Slow, entry_points=False)
    with anyio.move_on_after(0.1):
        await k.start()
    assert EVENTS == ["a:register", "a:start", "slow:start", "a:stop"]


@pytest.mark.anyio
async def test_hung_teardown_is_bounded_by_shutdown_timeout() -> None:
    class Hang(Plugin):
        name = "hang"

        @hookimpl
        async def kernel_lifespan(self) -> AsyncIterator[None]:
            yield
            await anyio.sleep(30)

    with pytest.raises(ShutdownError) as exc_info:
        async with boot_kernel(make("a"), Hang, settings={"shutdown_timeout": 0.2}, entry_points=False):
            pass
    assert "a:stop" in EVENTS  # the next teardown still ran
    assert isinstance(exc_info.value.exceptions[0].cause, TimeoutError)


@pytest.mark.anyio
async def test_lifespan_must_yield_exactly_once() -> None:
    class NoYield(Plugin):
        name = "noyield"

        @hookimpl
        async def kernel_lifespan(self) -> AsyncIterator[None]:
            if False:
                yield

    with pytest.raises(BootError, match="returned without yielding"):
        async with boot_kernel(NoYield, entry_points=False):
            pass

    class TwoYields(Plugin):
        name = "twoyields"

        @hookimpl
        async def kernel_lifespan(self) -> AsyncIterator[None]:
            yield
            yield

    with pytest.raises(ShutdownError) as exc_info:
        async with boot_kernel(TwoYields, entry_points=False):
            pass
    assert "yielded more than once" in str(exc_info.value.exceptions[0])


@pytest.mark.anyio
async def test_a_kernel_cannot_boot_twice_concurrently() -> None:
    async with boot_kernel(make("a"), entry_points=False) as k:
        with pytest.raises(KernelError, match="already booted"):
            await k.start()


@pytest.mark.anyio
async def test_a_kernel_can_be_booted_again_after_shutdown() -> None:
    k = make_kernel(make("a"), entry_points=False)
    async with k:
        pass
    async with k:
        pass
    assert EVENTS.count("a:start") == 2


@pytest.mark.anyio
async def test_boot_and_shutdown_times_are_logged(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.DEBUG, logger="kernel"):
        async with boot_kernel(make("a"), entry_points=False):
            pass
    starts = [r for r in caplog.records if r.getMessage() == "plugin a started"]
    stops = [r for r in caplog.records if r.getMessage() == "plugin a stopped"]
    assert starts and isinstance(starts[0].start_ms, float)
    assert stops and isinstance(stops[0].stop_ms, float)
    booted = [r for r in caplog.records if r.getMessage().startswith("kernel booted")]
    assert booted and isinstance(booted[0].boot_ms, float)


def test_misnamed_hook_is_rejected_before_boot() -> None:
    class Typo(Plugin):
        name = "typo"

        @hookimpl
        def kernel_lifespna(self) -> None:
            pass

    with pytest.raises(KernelError, match="kernel_lifespna"):
        make_kernel(Typo, entry_points=False)


def test_hook_with_unknown_argument_is_rejected_before_boot() -> None:
    class BadArgs(Plugin):
        name = "badargs"

        @hookimpl
        def kernel_register(self, ctx: Any, nope: Any) -> None:
            pass

    with pytest.raises(KernelError, match="nope"):
        make_kernel(BadArgs, entry_points=False)


@pytest.mark.anyio
async def test_shutdown_removes_plugin_services_so_a_reboot_registers_them_again() -> None:
    class Svc(Plugin):
        name = "svc"

        @hookimpl
        def kernel_register(self, ctx: PluginContext[Any]) -> None:
            ctx.provide(object(), name="early", types=())

        @hookimpl
        async def kernel_lifespan(self, ctx: PluginContext[Any]) -> AsyncIterator[None]:
            ctx.provide(object(), name="late", types=())
            yield

    k = make_kernel(Svc, entry_points=False)
    async with k:
        first = k.registry.get("late")
    assert "late" not in k.registry and "early" not in k.registry
    async with k:
        assert k.registry.get("late") is not first


# ---------------------------------------------------------------- task groups held across a lifespan's yield


def holds_task_group(name: str, *, hang: bool = False, fail_bg: bool = False) -> type[Plugin]:
    """A plugin whose lifespan keeps a task group (with a background task) open across its ``yield``."""

    class P(Plugin):
        ran = anyio.Event()
        failed = anyio.Event()

        @hookimpl
        async def kernel_lifespan(self) -> AsyncIterator[None]:
            async def background() -> None:
                EVENTS.append(f"{name}:bg running")
                P.ran.set()
                try:
                    if fail_bg:
                        P.failed.set()
                        raise RuntimeError(f"{name} background exploded")
                    await anyio.sleep_forever()
                finally:
                    EVENTS.append(f"{name}:bg ended")

            EVENTS.append(f"{name}:start")
            async with anyio.create_task_group() as tg:
                tg.start_soon(background)
                yield
                EVENTS.append(f"{name}:stop")
                if hang:
                    await anyio.sleep(30)
                tg.cancel_scope.cancel()

    P.name = name
    P.__name__ = P.__qualname__ = name.title()
    return P


@pytest.mark.anyio
async def test_a_task_group_held_across_the_yield_lives_as_long_as_the_kernel() -> None:
    tgp = holds_task_group("tgp")
    async with boot_kernel(make("a"), tgp, make("b", requires=("tgp",)), entry_points=False) as k:
        with anyio.fail_after(10):
            await tgp.ran.wait()  # the background task runs while the kernel is up
        EVENTS.append("body")
        assert k.booted
    assert EVENTS.index("tgp:start") < EVENTS.index("tgp:bg running") < EVENTS.index("body")
    assert [e for e in EVENTS if e != "tgp:bg running"] == [
        "a:register",
        "b:register",
        "a:start",
        "tgp:start",
        "b:start",
        "body",
        "b:stop",
        "tgp:stop",
        "tgp:bg ended",
        "a:stop",
    ]


@pytest.mark.anyio
async def test_a_hung_teardown_holding_a_task_group_times_out_and_the_next_plugins_still_stop() -> None:
    with pytest.raises(ShutdownError) as exc_info:
        async with boot_kernel(
            make("a"),
            holds_task_group("hang", hang=True),
            settings={"shutdown_timeout": 0.2},
            entry_points=False,
        ):
            pass
    assert EVENTS[-3:] == ["hang:stop", "hang:bg ended", "a:stop"]  # cancelled, then the next one
    [failure] = exc_info.value.exceptions
    assert failure.plugin == "hang" and isinstance(failure.cause, TimeoutError)


@pytest.mark.anyio
async def test_a_failed_background_task_ends_its_lifespan_and_is_reported_at_shutdown(
    caplog: pytest.LogCaptureFixture,
) -> None:
    async def run() -> None:
        async with boot_kernel(make("a"), bad, make("b", requires=("bad",)), entry_points=False) as k:
            await wait_until(lambda: "bad:bg ended" in EVENTS, what="the background task to fail")
            await wait_until(
                lambda: any("lifespan of plugin 'bad' ended" in r.getMessage() for r in caplog.records),
                what="the failure to be logged",
            )
            assert k.booted  # the other plugins keep running
            EVENTS.append("body")

    bad = holds_task_group("bad", fail_bg=True)
    with caplog.at_level(logging.ERROR, logger="kernel"), pytest.raises(ShutdownError) as exc_info:
        await run()
    assert EVENTS[-2:] == ["b:stop", "a:stop"]  # every other plugin still stops, in reverse
    assert "bad:stop" not in EVENTS  # its lifespan was unwound by the failure, not resumed normally
    [failure] = exc_info.value.exceptions
    assert failure.plugin == "bad"
    assert "bad background exploded" in repr(failure.cause)


@pytest.mark.anyio
async def test_a_failed_boot_unwinds_a_plugin_holding_a_task_group() -> None:
    k = make_kernel(
        holds_task_group("tgp"), make("b", requires=("tgp",), fail_setup=True), entry_points=False
    )
    with pytest.raises(BootError) as exc_info:
        async with k:
            pytest.fail("body must not run")
    assert (exc_info.value.phase, exc_info.value.plugin) == ("start", "b")
    assert isinstance(exc_info.value.cause, RuntimeError)
    assert EVENTS[-2:] == ["tgp:stop", "tgp:bg ended"]
    assert not k.booted


@pytest.mark.anyio
async def test_a_cancelled_scope_around_the_kernel_still_stops_plugins_one_by_one_in_reverse() -> None:
    tgp = holds_task_group("tgp")
    with anyio.move_on_after(0.2) as scope:
        async with boot_kernel(make("a"), tgp, make("b", requires=("tgp",)), entry_points=False):
            await anyio.sleep_forever()
    assert scope.cancelled_caught
    assert EVENTS[-4:] == ["b:stop", "tgp:stop", "tgp:bg ended", "a:stop"]


@pytest.mark.anyio
async def test_a_boot_cancelled_just_as_a_setup_finishes_unwinds_that_plugin_too() -> None:
    outer = anyio.CancelScope()

    class Canceller(Plugin):
        name = "canceller"

        @hookimpl
        async def kernel_lifespan(self) -> AsyncIterator[None]:
            EVENTS.append("canceller:start")
            outer.cancel()  # the boot is cancelled while this setup runs; it then yields at once
            yield
            EVENTS.append("canceller:stop")

    k = make_kernel(make("a"), Canceller, entry_points=False)
    with outer:
        await k.start()
    assert outer.cancelled_caught
    assert EVENTS == ["a:register", "a:start", "canceller:start", "canceller:stop", "a:stop"]
    assert not k.booted


@pytest.mark.anyio
async def test_a_contextvar_set_in_a_lifespan_does_not_leak_into_the_caller() -> None:
    var: contextvars.ContextVar[str] = contextvars.ContextVar("lifespan_var", default="unset")
    seen: list[str] = []

    class Setter(Plugin):
        name = "setter"

        @hookimpl
        async def kernel_lifespan(self) -> AsyncIterator[None]:
            var.set("lifespan")
            yield
            seen.append(var.get())  # the lifespan keeps its own context from setup to teardown

    var.set("caller")
    async with boot_kernel(Setter, entry_points=False):
        assert var.get() == "caller"
    assert seen == ["lifespan"]


# ---------------------------------------------------------------- kernel_check (issue 11, items 4 and 5)

CHECKS: list[tuple[str, Any, frozenset[str], int]] = []


@attrs.define(frozen=True)
class CheckedConfig:
    mode: str = "fine"
    size: int = attrs.field(default=1, validator=attrs.validators.gt(0))


class Checked(Plugin):
    """Turns ``mode`` into findings: ``error``, ``production``, ``warning``, ``boom``, ``junk``."""

    name = "checked"
    config_class = CheckedConfig
    optional = ("acme_x",)
    install_hints = {"acme_x": "acme-x"}

    @hookimpl
    def kernel_check(
        self, ctx: PluginContext[CheckedConfig], enabled: frozenset[str], processes: int
    ) -> list[CheckIssue]:
        CHECKS.append((ctx.name, ctx.config, enabled, processes))
        mode = ctx.config.mode
        if mode == "boom":
            raise RuntimeError("the check itself broke")
        if mode == "junk":
            return ["not an issue"]  # type: ignore[list-item]
        issues = {
            "error": [CheckIssue.error("mode", "cannot work like this")],
            "production": [CheckIssue.production("", "fine for a laptop only")],
            "warning": [CheckIssue.warning("size", "just so you know")],
            "needs": [] if "partner" in enabled else [CheckIssue.error("mode", "needs the partner plugin")],
            "many": [CheckIssue.error("mode", f"{processes} processes")] if processes > 1 else [],
            "needs_x": [CheckIssue.error("mode", "mode = 'needs_x' needs acme_x", needs="acme_x")],
            "needs_partner": [CheckIssue.error("mode", "mode = 'needs_partner' needs it", needs="partner")],
        }
        return issues.get(mode, [])

    @hookimpl
    def kernel_register(self, ctx: PluginContext[CheckedConfig]) -> None:
        EVENTS.append("checked:register")

    @hookimpl
    async def kernel_lifespan(self, ctx: PluginContext[CheckedConfig]) -> AsyncIterator[None]:
        EVENTS.append("checked:start")
        yield


class Partner(Plugin):
    name = "partner"


def checked(mode: str, env: str = "test", *extra: type[Plugin], **kw: Any) -> Kernel:
    return Kernel.from_dict(
        {
            "kernel": {"plugins": ["checked", *(p.name for p in extra)], "env": env},
            "plugins": {"checked": {"mode": mode}},
        },
        environ={},
        plugins=[Checked, *extra],
        entry_points=False,
        **kw,
    )


def test_the_check_hook_sees_its_config_the_enabled_set_and_the_process_count() -> None:
    EVENTS.clear()
    CHECKS.clear()
    k = checked("fine", "test", Partner, processes=3)
    seen = CHECKS
    assert seen == [("checked", CheckedConfig("fine"), frozenset({"checked", "partner"}), 3)]
    assert EVENTS == []  # nothing registered or started: checks run while the config is validated
    assert k.warnings == ()
    with pytest.raises(ConfigError) as exc_info:
        checked("needs")
    assert exc_info.value.errors == ["plugins.checked.mode: needs the partner plugin"]
    checked("needs", "test", Partner)
    checked("many")
    with pytest.raises(ConfigError) as exc_info:
        checked("many", processes=2)
    assert exc_info.value.errors == ["plugins.checked.mode: 2 processes"]


def test_check_errors_fail_in_every_env_and_production_rules_only_in_production() -> None:
    for env in ("development", "test", "production"):
        with pytest.raises(ConfigError) as exc_info:
            checked("error", env)
        assert exc_info.value.errors == ["plugins.checked.mode: cannot work like this"]
    with pytest.raises(ConfigError) as exc_info:
        checked("production", "production")
    assert exc_info.value.errors == [
        "plugins.checked: fine for a laptop only (not allowed when env = 'production')"
    ]
    assert checked("production", "development").warnings == (
        "plugins.checked: fine for a laptop only (an error when env = 'production')",
    )
    assert checked("warning", "production").warnings == ("plugins.checked.size: just so you know",)


def test_check_findings_join_every_other_error_and_broken_checks_are_reported() -> None:
    other = type("Other", (Plugin,), {"name": "other", "config_class": CheckedConfig})
    with pytest.raises(ConfigError) as exc_info:
        Kernel.from_dict(
            {
                "kernel": {"plugins": ["checked", "other"]},
                "plugins": {"checked": {"mode": "error"}, "other": {"size": 0, "mode": 1}},
            },
            environ={},
            plugins=[Checked, other],
            entry_points=False,
        )
    assert sorted(exc_info.value.errors) == [
        "plugins.checked.mode: cannot work like this",
        "plugins.other.mode: expected str, got 1",
        "plugins.other.size: must be > 0: 0",
    ]
    with pytest.raises(ConfigError) as exc_info:
        checked("boom")
    assert exc_info.value.errors == [
        "plugins.checked: kernel_check failed: RuntimeError: the check itself broke"
    ]
    with pytest.raises(ConfigError) as exc_info:
        checked("junk")
    assert exc_info.value.errors == ["plugins.checked: kernel_check returned str, not a kernel.CheckIssue"]
    CHECKS.clear()
    with pytest.raises(ConfigError) as exc_info:
        Kernel.from_dict(
            {"kernel": {"plugins": ["checked"]}, "plugins": {"checked": {"size": -1}}},
            environ={},
            plugins=[Checked],
            entry_points=False,
        )
    assert exc_info.value.errors == ["plugins.checked.size: must be > 0: -1"]
    assert CHECKS == []  # an invalid table is not checked


def test_check_issue_rejects_an_unknown_severity() -> None:
    with pytest.raises(ValueError, match="severity"):
        CheckIssue("x", "", "fatal")  # type: ignore[arg-type]


def test_a_check_that_needs_a_plugin_says_how_to_get_it() -> None:
    with pytest.raises(ConfigError) as exc_info:
        checked("needs_x")  # not installed: the install_hints of the plugin (for an optional plugin)
    assert exc_info.value.errors == [
        "plugins.checked.mode: mode = 'needs_x' needs acme_x "
        "(plugin 'acme_x' is not installed: pip install acme-x)"
    ]
    with pytest.raises(ConfigError) as exc_info:  # installed, not enabled
        Kernel.from_dict(
            {"kernel": {"plugins": ["checked"]}, "plugins": {"checked": {"mode": "needs_partner"}}},
            environ={},
            plugins=[Checked, Partner],
            entry_points=False,
        )
    assert exc_info.value.errors == [
        "plugins.checked.mode: mode = 'needs_partner' needs it (add 'partner' to [kernel] plugins)"
    ]
