"""Retry policy: how many retries, the exponential backoff, and what is not worth retrying."""

from __future__ import annotations

import random

import attrs

from ._errors import NonRetryableError


def _non_negative(_inst: object, attr: attrs.Attribute[float], value: float) -> None:
    if value < 0:
        raise ValueError(f"{attr.name} must be >= 0, got {value!r}")


@attrs.frozen
class RetryPolicy:
    """``max_retries`` retries after the first attempt; retry n waits ``base_delay * factor ** (n - 1)``.

    The default: 3 retries after 1 s, 2 s and 4 s. ``jitter`` (0..1)
    spreads each delay uniformly by up to that fraction either way, so many
    consumers failing together do not retry in lockstep.
    """

    max_retries: int = attrs.field(default=3, validator=attrs.validators.ge(0))
    base_delay: float = attrs.field(default=1.0, validator=_non_negative)
    factor: float = attrs.field(default=2.0, validator=attrs.validators.ge(1.0))
    max_delay: float = attrs.field(default=300.0, validator=_non_negative)
    jitter: float = attrs.field(default=0.0, validator=[attrs.validators.ge(0.0), attrs.validators.le(1.0)])
    non_retryable: tuple[type[BaseException], ...] = attrs.field(default=(), converter=tuple)
    """Exception types that go straight to the dead-letter queue."""

    def delay(self, retry: int) -> float:
        """Seconds to wait before retry number ``retry`` (1-based)."""
        d = min(self.base_delay * self.factor ** (retry - 1), self.max_delay)
        if self.jitter:
            d *= 1 + random.uniform(-self.jitter, self.jitter)
        return d

    def retryable(self, exc: BaseException) -> bool:
        """False for :class:`NonRetryableError`, ``exc.retryable = False`` and ``non_retryable`` types."""
        if isinstance(exc, NonRetryableError) or getattr(exc, "retryable", True) is False:
            return False
        return not isinstance(exc, self.non_retryable)

    def should_retry(self, exc: BaseException, attempt: int) -> bool:
        """Whether a failure of delivery ``attempt`` (1-based) is retried."""
        return attempt <= self.max_retries and self.retryable(exc)
