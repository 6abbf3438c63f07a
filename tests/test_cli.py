"""The ``kernel`` command, run as a real subprocess against real installed plugins."""

from __future__ import annotations

import json
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest


def run(args: list[str], env: dict[str, str], cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "kernel", *args],
        env=env,
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=60,
    )


GOOD = """
[kernel]
plugins = ["kt_gamma", "kt_beta", "kt_alpha"]
env = "test"

[plugins.kt_alpha]
greeting = "hey"
token = "tok-VERYSECRET"
"""


@pytest.fixture
def good(tmp_path: Path) -> Path:
    path = tmp_path / "kernel.toml"
    path.write_text(GOOD)
    return path


def test_plugins_lists_installed_enabled_versions_and_load_order(
    good: Path, cli_env: dict[str, str], tmp_path: Path
) -> None:
    result = run(["--config", str(good), "plugins"], cli_env, tmp_path)
    assert result.returncode == 0, result.stderr
    out = result.stdout
    assert "load order: kt_alpha -> kt_beta -> kt_gamma" in out
    assert "kt_beta: after kt_alpha" in out
    assert "kt_gamma: after kt_beta" in out
    line = next(row for row in out.splitlines() if row.startswith("kt_beta "))
    assert "2.0.0" in line and "kt-plugins 1.2.3" in line and "yes (#2)" in line
    broken = next(row for row in out.splitlines() if row.startswith("kt_broken "))
    assert "load error" in broken and "no" in broken
    dup = next(row for row in out.splitlines() if row.startswith("kt_dup "))
    assert "conflict" in dup and "kt-dup-one" in dup and "kt-dup-two" in dup


def test_plugins_json(good: Path, cli_env: dict[str, str], tmp_path: Path) -> None:
    result = run(["--config", str(good), "plugins", "--json"], cli_env, tmp_path)
    data = json.loads(result.stdout)
    assert data["load_order"] == ["kt_alpha", "kt_beta", "kt_gamma"]
    alpha = next(p for p in data["plugins"] if p["name"] == "kt_alpha")
    assert alpha["enabled"] and alpha["distribution"] == "kt-plugins"


def test_check_accepts_a_good_config(good: Path, cli_env: dict[str, str], tmp_path: Path) -> None:
    result = run(["--config", str(good), "check"], cli_env, tmp_path)
    assert result.returncode == 0, result.stderr
    assert "config OK" in result.stdout
    assert "kt_alpha -> kt_beta -> kt_gamma" in result.stdout


def test_check_reports_every_error_on_stderr_with_exit_2(cli_env: dict[str, str], tmp_path: Path) -> None:
    bad = tmp_path / "bad.toml"
    bad.write_text(
        '[kernel]\nplugins = ["kt_alpha", "kt_beta", "kt_gamma", "kt_broken"]\n\n'
        '[plugins.kt_alpha]\nretries = "three"\ncolour = "blue"\n'
    )
    result = run(["--config", str(bad), "check"], cli_env, tmp_path)
    assert result.returncode == 2
    err = result.stderr
    assert "plugins.kt_alpha.retries: expected int, got 'three'" in err
    assert "plugins.kt_alpha.colour: unknown key" in err
    assert "plugin 'kt_broken' (distribution 'kt-plugins') failed to load" in err
    assert result.stdout == ""


def test_check_reports_a_dependency_cycle_and_missing_plugins(
    cli_env: dict[str, str], tmp_path: Path
) -> None:
    bad = tmp_path / "bad.toml"
    bad.write_text('[kernel]\nplugins = ["kt_beta", "not_installed"]\n')
    result = run(["--config", str(bad), "check"], cli_env, tmp_path)
    assert result.returncode == 2
    assert "requires 'kt_alpha', which is installed but not enabled" in result.stderr
    # a third-party name gets no guessed milo-kernel-<name> distribution (issue 11, item 6)
    assert (
        "'not_installed' is enabled but not installed (no installed distribution has a "
        "'kernel.plugins' entry point named 'not_installed': install the one that provides it)"
    ) in (result.stderr)


def test_config_show_masks_secrets_and_applies_env(
    good: Path, cli_env: dict[str, str], tmp_path: Path
) -> None:
    env = {**cli_env, "KERNEL__PLUGINS__KT_ALPHA__RETRIES": "7"}
    result = run(["--config", str(good), "config", "show"], env, tmp_path)
    assert result.returncode == 0, result.stderr
    assert "VERYSECRET" not in result.stdout + result.stderr
    assert 'token = "**********"' in result.stdout
    assert "retries = 7" in result.stdout
    assert "[plugins.kt_alpha]" in result.stdout
    as_json = run(["--config", str(good), "config", "show", "--json"], env, tmp_path)
    data = json.loads(as_json.stdout)
    assert data["plugins"]["kt_alpha"] == {
        "greeting": "hey",
        "retries": 7,
        "token": "**********",
        "boot_delay": 0.0,
        "background": False,
    }


def test_secrets_never_appear_in_any_command_output(
    good: Path, cli_env: dict[str, str], tmp_path: Path
) -> None:
    for args in (["plugins"], ["check"], ["config", "show"], ["health"]):
        result = run(["--config", str(good), *args], cli_env, tmp_path)
        assert "VERYSECRET" not in result.stdout + result.stderr, args


def test_health_boots_prints_services_and_checks(good: Path, cli_env: dict[str, str], tmp_path: Path) -> None:
    result = run(["--config", str(good), "health"], cli_env, tmp_path)
    assert result.returncode == 0, result.stderr
    assert "kernel booted: kt_alpha -> kt_beta -> kt_gamma" in result.stdout
    assert "'greeter'" in result.stdout
    assert "kt_alpha.ok" in result.stdout


def test_default_config_path_is_kernel_toml_in_cwd(good: Path, cli_env: dict[str, str]) -> None:
    result = run(["check"], cli_env, good.parent)
    assert result.returncode == 0, result.stderr


def test_no_command_prints_help(good: Path, cli_env: dict[str, str], tmp_path: Path) -> None:
    result = run(["--config", str(good)], cli_env, tmp_path)
    assert result.returncode == 0
    assert "plugins" in result.stdout and "check" in result.stdout


def test_plugins_contribute_commands_that_run_on_a_booted_kernel(
    good: Path, cli_env: dict[str, str], tmp_path: Path
) -> None:
    helped = run(["--config", str(good), "--help"], cli_env, tmp_path)
    assert "greet someone [kt_alpha]" in helped.stdout
    result = run(["--config", str(good), "greet", "world"], cli_env, tmp_path)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "hey, world"
    assert run(["--config", str(good), "greet", "nobody"], cli_env, tmp_path).returncode == 3


def test_plugin_command_with_broken_config_exits_2(cli_env: dict[str, str], tmp_path: Path) -> None:
    bad = tmp_path / "kernel.toml"
    bad.write_text('[kernel]\nplugins = ["kt_alpha"]\n[plugins.kt_alpha]\nretries = "x"\n')
    result = run(["greet", "world"], cli_env, tmp_path)
    assert result.returncode == 2
    assert "plugins.kt_alpha.retries: expected int" in result.stderr


def test_a_plugin_command_argument_that_looks_like_a_builtin_is_just_an_argument(
    good: Path, cli_env: dict[str, str], tmp_path: Path
) -> None:
    result = run(["--config", str(good), "greet", "check"], cli_env, tmp_path)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "hey, check"


def test_a_plugin_command_runs_with_a_lifespan_holding_a_task_group(
    cli_env: dict[str, str], tmp_path: Path
) -> None:
    """The command's kernel is entered and exited at one nesting level (and so are its lifespans)."""
    config = tmp_path / "kernel.toml"
    config.write_text('[kernel]\nplugins = ["kt_alpha"]\n[plugins.kt_alpha]\nbackground = true\n')
    result = run(["--config", str(config), "greet", "world"], cli_env, tmp_path)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "hello, world"
    assert "kt_alpha: background stopped" in result.stderr
    assert "failed" not in result.stderr


@pytest.mark.skipif(sys.platform == "win32", reason="POSIX signals")
@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_a_signal_during_boot_unwinds_the_started_plugins_and_exits_cleanly(
    cli_env: dict[str, str], tmp_path: Path, sig: signal.Signals
) -> None:
    config = tmp_path / "kernel.toml"
    config.write_text(
        '[kernel]\nplugins = ["kt_gamma", "kt_alpha"]\nlog_level = "DEBUG"\n'
        "[plugins.kt_alpha]\nboot_delay = 60\n"
    )
    proc = subprocess.Popen(
        [sys.executable, "-m", "kernel", "--config", str(config), "greet", "x"],
        env=cli_env,
        cwd=tmp_path,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert proc.stderr is not None
    try:
        seen: list[str] = []
        for line in proc.stderr:  # wait until kt_alpha is in the middle of its boot
            seen.append(line)
            if "kt_alpha: booting" in line:
                break
        else:
            raise AssertionError("".join(seen))
        t0 = time.monotonic()
        proc.send_signal(sig)
        out, err = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    err = "".join(seen) + err
    assert time.monotonic() - t0 < 10  # not the 60 s boot
    assert proc.returncode == 0, err
    assert "kt_alpha: boot unwound" in err
    assert "stopped by a signal during boot" in err
    assert out == ""  # the command never ran
    started = re.findall(r"plugin (\w+) started", err)
    stopped = re.findall(r"plugin (\w+) stopped", err)
    assert started == ["kt_gamma"], err  # gamma had booted before alpha
    assert sorted(started) == sorted(stopped), err  # every plugin that had started was stopped


def closed_port() -> int:
    """A loopback port nothing listens on (bound, then released)."""
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.mark.first_party
def test_every_command_fails_with_one_error_line_when_mongodb_is_unreachable(
    cli_env: dict[str, str], tmp_path: Path
) -> None:
    config = tmp_path / "kernel.toml"
    config.write_text(
        '[kernel]\nplugins = ["errors", "redis", "eventbus", "queue", "repository"]\n'
        '[plugins.redis]\nurl = "embedded"\n'
        f'[plugins.repository]\nuri = "mongodb://127.0.0.1:{closed_port()}/app"\n'
        "server_selection_timeout = 0.5\nconnect_timeout = 0.5\n"
    )
    for args in (["health"], ["dlq", "list"], ["queue", "stats"]):
        result = run(args, cli_env, tmp_path)
        assert result.returncode == 1, (args, result.stderr)
        errors = [line for line in result.stderr.splitlines() if line.startswith("error: ")]
        assert len(errors) == 1, (args, result.stderr)
        assert "cannot reach MongoDB" in errors[0]
        assert "Traceback" not in result.stderr and "ExceptionGroup" not in result.stderr, args


@pytest.mark.first_party
def test_plugins_without_a_config_lists_what_is_installed_and_exits_0(
    cli_env: dict[str, str], tmp_path: Path
) -> None:
    result = run(["plugins"], cli_env, tmp_path)  # tmp_path has no kernel.toml
    assert result.returncode == 0, result.stderr
    assert "no config found" in result.stdout
    assert "kernel.toml" in result.stdout
    assert any(row.startswith("eventbus ") for row in result.stdout.splitlines())
    assert "error" not in result.stderr
    as_json = run(["plugins", "--json"], cli_env, tmp_path)
    assert as_json.returncode == 0, as_json.stderr
    data = json.loads(as_json.stdout)
    assert data["errors"] == [] and data["config"] is None


@pytest.mark.first_party
def test_help_lists_every_installed_plugins_commands_without_a_config(
    cli_env: dict[str, str], tmp_path: Path
) -> None:
    helped = run(["--help"], cli_env, tmp_path)
    assert helped.returncode == 0, helped.stderr
    for command in ("dlq", "queue", "worker", "repo", "greet"):
        assert re.search(rf"^\s+{command}\s", helped.stdout, flags=re.M), (command, helped.stdout)
    assert "not enabled" in helped.stdout
    dlq = run(["dlq", "--help"], cli_env, tmp_path)
    assert dlq.returncode == 0, dlq.stderr
    assert "list" in dlq.stdout and "replay" in dlq.stdout


@pytest.mark.first_party
def test_a_command_of_a_plugin_that_is_not_enabled_says_how_to_enable_it(
    cli_env: dict[str, str], tmp_path: Path, good: Path
) -> None:
    empty = tmp_path / "empty"  # no kernel.toml here
    empty.mkdir()
    missing = run(["dlq", "list"], cli_env, empty)
    assert missing.returncode == 2, missing.stderr
    assert "'dlq'" in missing.stderr and "'eventbus'" in missing.stderr
    assert "no config found" in missing.stderr
    assert 'plugins = [..., "eventbus"]' in missing.stderr and "[kernel]" in missing.stderr
    queue = run(["queue", "stats"], cli_env, empty)
    assert queue.returncode == 2
    assert 'plugins = [..., "redis", "queue"]' in queue.stderr  # what queue requires comes along
    configured = run(["--config", str(good), "dlq", "list"], cli_env, tmp_path)
    assert configured.returncode == 2
    assert str(good) in configured.stderr and 'plugins = [..., "eventbus"]' in configured.stderr
    assert "Traceback" not in missing.stderr + queue.stderr + configured.stderr


@pytest.mark.first_party
@pytest.mark.parametrize("flag", ["--config", "-c"])
def test_global_options_are_accepted_after_the_command(
    good: Path, cli_env: dict[str, str], tmp_path: Path, flag: str
) -> None:
    elsewhere = tmp_path / "cwd"
    elsewhere.mkdir()
    check = run(["check", flag, str(good)], cli_env, elsewhere)
    assert check.returncode == 0, check.stderr
    assert "config OK" in check.stdout
    show = run(["config", "show", flag, str(good)], cli_env, elsewhere)
    assert show.returncode == 0, show.stderr
    assert "[plugins.kt_alpha]" in show.stdout
    greet = run(["greet", "world", flag, str(good)], cli_env, elsewhere)
    assert greet.returncode == 0, greet.stderr
    assert greet.stdout.strip() == "hey, world"
    nested = run(["dlq", "list", flag, str(good)], cli_env, elsewhere)  # past a nested sub-command too
    assert nested.returncode == 2
    assert "not enabled" in nested.stderr and "unrecognized arguments" not in nested.stderr
    assert f"{flag} " in run(["check", "--help"], cli_env, elsewhere).stdout
