"""No error or log line of the repository plugin shows a password of its ``uri``, for any input."""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, given, settings
from kernel_repository import RepositoryConfig, redact_uri
from pymongo.uri_parser import parse_uri

from kernel import redact_url
from kernel._config import structure
from kernel.testing import assert_no_password, urls_with_passwords

PROPERTY = settings(
    max_examples=300, deadline=None, database=None, suppress_health_check=[HealthCheck.too_slow]
)


def errors(uri: str) -> str:
    _cfg, found = structure({"uri": uri}, RepositoryConfig, "plugins.repository")
    return "\n".join(found)


@pytest.mark.parametrize(
    ("uri", "parts"),
    [
        ("mongodb://:XyZzyQwrt", ["XyZzyQwrt"]),  # no '@': the driver quoted it as a bad port
        ("mongodb://u:XyZzy/Qwrt@host/db", ["XyZzy", "Qwrt"]),
        ("mongodb://u:XyZzy@Qwrt@host/db", ["XyZzy", "Qwrt"]),
        ("mongodb://host:XyZzy/db", ["XyZzy"]),
    ],
)
def test_bad_uris_are_refused_without_their_password(uri: str, parts: list[str]) -> None:
    text = errors(uri)
    assert text.startswith("plugins.repository.uri: must ")
    assert redact_url(uri) in text
    for part in parts:
        assert part not in text


def test_a_lone_user_info_is_masked_in_logs() -> None:
    assert redact_uri("mongodb://XyZzyQwrt@host/db?authSource=admin") == "mongodb://***@host/db"


@PROPERTY
@given(urls_with_passwords(("mongodb", "mongodb+srv", "http")))
def test_no_message_ever_shows_the_password(case: tuple[str, str]) -> None:
    uri, password = case
    text = errors(uri)
    assert_no_password(text, password)
    assert_no_password(redact_uri(uri), password)
    if not text and uri.startswith("mongodb://"):
        # What passes the config check reaches the driver: its errors name no password either.
        try:
            parse_uri(uri)
        except Exception as exc:  # any driver error is printed at boot
            assert_no_password(str(exc), password)
