"""A string that never shows its value."""

from __future__ import annotations

import hmac
from typing import Final

MASK: Final = "**********"


class Secret:
    """Holds a sensitive string; ``repr``, ``str`` and formatting print a mask.

    Read the value explicitly with :meth:`get_secret_value` where it is used.

    >>> s = Secret("hunter2")
    >>> s, f"{s}"
    (Secret('**********'), '**********')
    >>> s.get_secret_value()
    'hunter2'
    """

    __slots__ = ("_value",)

    def __init__(self, value: str) -> None:
        if not isinstance(value, str):
            raise TypeError(f"expected str, got {type(value).__name__}")
        self._value = value

    def get_secret_value(self) -> str:
        """Return the real value."""
        return self._value

    def __repr__(self) -> str:
        return f"Secret({MASK!r})"

    def __str__(self) -> str:
        return MASK

    def __format__(self, spec: str) -> str:
        return MASK

    def __bool__(self) -> bool:
        return bool(self._value)

    def __len__(self) -> int:
        return len(self._value)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Secret):
            return NotImplemented
        return hmac.compare_digest(self._value.encode(), other._value.encode())

    def __hash__(self) -> int:
        return hash(("Secret", self._value))

    def __reduce__(self) -> tuple[type[Secret], tuple[str]]:
        return (Secret, (self._value,))
