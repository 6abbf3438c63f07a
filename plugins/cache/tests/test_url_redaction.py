"""No error of the cache plugin shows a password of its ``url``, for any input."""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, given, settings
from kernel_cache import CacheConfig

from kernel import redact_url
from kernel._config import structure
from kernel.testing import assert_no_password, urls_with_passwords

PROPERTY = settings(
    max_examples=300, deadline=None, database=None, suppress_health_check=[HealthCheck.too_slow]
)


def errors(url: str) -> str:
    _cfg, found = structure({"backend": "redis", "url": url}, CacheConfig, "plugins.cache")
    return "\n".join(found)


@pytest.mark.parametrize(
    ("url", "parts"),
    [
        ("redis://:XyZzy#Qwrt@host:6379/0", ["XyZzy", "Qwrt"]),  # urllib quoted 'XyZzy' as a bad port
        ("Pw9Secret:rest@host", ["Pw9Secret", "rest"]),  # was printed as the scheme
        ("redis://:XyZzy/Qwrt@host:6379/0", ["XyZzy", "Qwrt"]),
        ("redis://:XyZzyQwrt", ["XyZzyQwrt"]),  # no '@': looks like a port
    ],
)
def test_bad_urls_are_refused_without_their_password(url: str, parts: list[str]) -> None:
    text = errors(url)
    assert text.startswith("plugins.cache.url: must ")
    assert redact_url(url) in text
    for part in parts:
        assert part.lower() not in text.lower()


def test_good_urls_pass() -> None:
    for url in (
        "redis://:pw@localhost:6379/1",
        "rediss://u:p%2Fw@cache.example.com/0",
        "unix:///run/r.sock?db=2",
        "redis+cluster://:pw@c1:7000,c2:7000",
        "rediss+cluster://c1:7000",
        "redis+sentinel://s1:26379,s2:26379/mymaster/2",
        "rediss+sentinel://u:p%40w@s1:26379/mymaster",
    ):
        assert errors(url) == ""


@PROPERTY
@given(urls_with_passwords(("redis", "rediss", "unix", "http", "redis+cluster", "redis+sentinel")))
def test_no_message_ever_shows_the_password(case: tuple[str, str]) -> None:
    url, password = case
    assert_no_password(errors(url), password)
