"""Every exception the kernel raises, each carrying the data needed to act on it."""

from __future__ import annotations

from collections.abc import Sequence


class KernelError(Exception):
    """Base class of all kernel errors."""


class PluginLoadError(KernelError):
    """A plugin's entry point could not be imported or is not a valid plugin."""

    def __init__(self, name: str, distribution: str | None, cause: BaseException | str) -> None:
        self.name = name
        self.distribution = distribution
        self.cause = cause
        dist = f" (distribution {distribution!r})" if distribution else ""
        reason = cause if isinstance(cause, str) else f"{type(cause).__name__}: {cause}"
        super().__init__(f"plugin {name!r}{dist} failed to load: {reason}")


class ConfigError(KernelError):
    """The configuration is invalid; ``errors`` lists every problem with its key path."""

    def __init__(self, errors: Sequence[str]) -> None:
        self.errors = list(errors)
        lines = "\n".join(f"  - {e}" for e in self.errors)
        noun = "error" if len(self.errors) == 1 else "errors"
        super().__init__(f"{len(self.errors)} configuration {noun}:\n{lines}")


class DependencyError(ConfigError):
    """The enabled plugins cannot be ordered: missing dependencies or a cycle."""


class ServiceNotFoundError(KernelError, LookupError):
    """Nothing is registered under the requested name or type."""

    def __init__(self, key: str, hint: str = "") -> None:
        self.key = key
        self.hint = hint
        super().__init__(f"no service registered for {key}" + (f": {hint}" if hint else ""))


class DuplicateServiceError(KernelError):
    """A second registration was attempted for a name or type that is taken."""

    def __init__(self, key: str, existing: str | None, new: str | None) -> None:
        self.key = key
        self.existing_provider = existing
        self.new_provider = new
        super().__init__(
            f"service {key} is already registered by {_who(existing)}; {_who(new)} tried to register it again"
        )


def _who(provider: str | None) -> str:
    return f"plugin {provider!r}" if provider else "the host"


class BootError(KernelError):
    """A plugin failed while the kernel was booting; what had started was shut down."""

    def __init__(self, phase: str, plugin: str, cause: BaseException) -> None:
        self.phase = phase
        self.plugin = plugin
        self.cause = cause
        super().__init__(
            f"boot failed in phase {phase!r} of plugin {plugin!r}: {type(cause).__name__}: {cause}"
        )


class TeardownError(KernelError):
    """One plugin's teardown failed (raised inside a ``ShutdownError`` group)."""

    def __init__(self, plugin: str, cause: BaseException) -> None:
        self.plugin = plugin
        self.cause = cause
        super().__init__(f"teardown of plugin {plugin!r} failed: {type(cause).__name__}: {cause}")


class ShutdownError(ExceptionGroup[TeardownError]):
    """Every teardown ran; these are the ones that failed, in shutdown order."""
