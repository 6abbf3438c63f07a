"""``kernel.redact_url``: no password or token is ever shown, for any input (property-based)."""

from __future__ import annotations

from typing import Literal

import attrs
import pytest
from hypothesis import HealthCheck, given, settings

from kernel import Secret, redact_url
from kernel._config import structure
from kernel.testing import assert_no_password, urls_with_passwords

SCHEMES = ("redis", "rediss", "unix", "mongodb", "mongodb+srv", "postgresql", "amqp")
PROPERTY = settings(
    max_examples=300, deadline=None, database=None, suppress_health_check=[HealthCheck.too_slow]
)


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("redis://:hunter2@host:6379/0", "redis://:***@host:6379/0"),
        ("redis://alice:hunter2@host/0", "redis://alice:***@host/0"),
        ("rediss://hunter2@host", "rediss://***@host"),
        ("redis://host:6379/0", "redis://host:6379/0"),
        ("redis://[::1]:6379/0", "redis://[::1]:6379/0"),
        ("unix:///s.sock?db=1&password=hunter2", "unix:///s.sock?db=1&password=***"),
        ("unix:///s.sock?db=1;x=2", "unix:///s.sock?db=1;x=2"),
        (
            "mongodb://u:hunter2@h1:1,h2:2/db?authSource=admin&w=1",
            "mongodb://u:***@h1:1,h2:2/db?authSource=***",
        ),
        # The inputs: an unencoded '/' or '#' in the password, no host, no path.
        ("redis://:pa/ss@host:6379/0", "redis://***"),
        ("redis://:Hash#Pass@host/0", "redis://***"),
        ("unix://:secret@", "unix://:***@"),
        # A password without its '@' looks like a port that is not a number.
        ("redis://:secret", "redis://***"),
        ("redis://host:secret/0", "redis://***"),
        # Not a URL: nothing tells where a password would be.
        ("pa:ss@host", "***"),
        ("hunter2", "***"),
    ],
)
def test_redact_url(url: str, expected: str) -> None:
    assert redact_url(url) == expected


def test_a_secret_is_redacted_and_anything_else_refused() -> None:
    assert redact_url(Secret("redis://:hunter2@host/0")) == "redis://:***@host/0"
    with pytest.raises(TypeError, match="expected a URL string, got int"):
        redact_url(42)  # type: ignore[arg-type]


@PROPERTY
@given(urls_with_passwords(SCHEMES))
def test_no_url_ever_shows_its_password(case: tuple[str, str]) -> None:
    url, password = case
    assert_no_password(redact_url(url), password)
    assert_no_password(redact_url(Secret(url)), password)


@attrs.define(frozen=True)
class Table:
    backend: Literal["memory", "redis"] = "memory"
    hosts: list[int] = attrs.field(factory=list)


@PROPERTY
@given(urls_with_passwords(SCHEMES))
def test_config_errors_never_show_a_password(case: tuple[str, str]) -> None:
    # A URL typed into the wrong key is echoed by the type errors: only redacted.
    url, password = case
    for data in ({"backend": url}, {"hosts": [url]}, {"hosts": url}, {"backend": [url]}):
        _obj, errors = structure(data, Table, "plugins.x")
        assert errors
        assert_no_password("\n".join(errors), password)
