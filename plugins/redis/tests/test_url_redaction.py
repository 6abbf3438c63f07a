"""No error, log line or CLI output of the redis plugin shows a password of its ``url``, for any input."""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from kernel_redis import check_url, redact_url
from redis_messages import kernel_check, messages

from kernel.testing import assert_no_password, urls_with_passwords

PROPERTY = settings(
    max_examples=300, deadline=None, database=None, suppress_health_check=[HealthCheck.too_slow]
)

# The issue's inputs: an unencoded '/' or '#' in the password, a unix URL without a path.
ISSUE = [
    ("redis://:pa/ss@host:6379/0", "pa/ss"),
    ("redis://:Hash#Pass@host/0", "Hash#Pass"),
    ("unix://:secret@", "secret"),
]


@pytest.mark.parametrize(("url", "password"), ISSUE)
def test_the_reported_urls_are_refused_without_their_password(url: str, password: str) -> None:
    with pytest.raises(ValueError, match="'url'") as info:
        check_url(url)
    assert password not in str(info.value)
    assert redact_url(url) in str(info.value)


def test_an_unencoded_password_gets_a_hint() -> None:
    with pytest.raises(ValueError, match="must percent-encode"):
        check_url("redis://:pa/ss@host:6379/0")
    check_url("redis://:pa%2Fss@host:6379/0")  # the encoded form is fine


@PROPERTY
@given(urls_with_passwords(("redis", "rediss", "unix", "http")))
def test_no_message_ever_shows_the_password(case: tuple[str, str]) -> None:
    url, password = case
    for text in messages(url):
        assert_no_password(text, password)


@pytest.mark.parametrize("source", ["file", "environment"])
@pytest.mark.parametrize(("url", "password"), ISSUE)
def test_kernel_check_never_prints_the_password(tmp_path: Path, url: str, password: str, source: str) -> None:
    config = tmp_path / "kernel.toml"
    env = {}
    if source == "file":
        config.write_text(f'[kernel]\nplugins = ["redis"]\n\n[plugins.redis]\nurl = {url!r}\n')
    else:
        config.write_text('[kernel]\nplugins = ["redis"]\n')
        env["KERNEL__PLUGINS__REDIS__URL"] = url
    code, output = kernel_check(config, env)
    assert code == 2, output
    assert redact_url(url) in output
    assert password not in output
