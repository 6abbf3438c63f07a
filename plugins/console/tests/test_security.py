"""Who may use the console, CSRF refusal, escaping, config errors and the production rule."""

from __future__ import annotations

import base64
from collections.abc import Callable
from typing import Any

import httpx
import pytest
from kernel_eventbus import EventBus, EventMetadata, NonRetryableError
from kernel_queue import QueueManager

from kernel import ConfigError
from kernel.testing import make_kernel, wait_until

pytestmark = pytest.mark.anyio

Client = Callable[..., httpx.AsyncClient]


async def test_loopback_only_by_default(boot: Any, client: Client) -> None:
    async with boot() as kernel, client(kernel) as local, client(kernel, host="203.0.113.7") as remote:
        assert (await local.get("/console")).status_code == 200
        refused = await remote.get("/console")
        assert refused.status_code == 403
        assert "loopback clients only" in refused.text
        assert (await remote.post("/console/action/queue.pause", data={"queue": "x"})).status_code == 403


async def test_bearer_token(boot: Any, client: Client) -> None:
    async with (
        boot(loopback_only=False, token="s3cret-token") as kernel,
        client(kernel, host="203.0.113.7") as http,
    ):
        missing = await http.get("/console")
        assert missing.status_code == 401
        assert missing.headers["www-authenticate"].startswith("Bearer")
        wrong = await http.get("/console", headers={"Authorization": "Bearer nope"})
        assert wrong.status_code == 401
        ok = await http.get("/console", headers={"Authorization": "bearer s3cret-token"})
        assert ok.status_code == 200
        assert "s3cret-token" not in ok.text


async def test_basic_auth(boot: Any, client: Client) -> None:
    basic = boot(loopback_only=False, username="ops", password="pa55word")
    async with basic as kernel, client(kernel, host="203.0.113.7") as http:
        missing = await http.get("/console")
        assert missing.status_code == 401
        assert missing.headers["www-authenticate"].startswith("Basic")
        bad = base64.b64encode(b"ops:wrong").decode()
        assert (await http.get("/console", headers={"Authorization": f"Basic {bad}"})).status_code == 401
        good = await http.get("/console", auth=("ops", "pa55word"))
        assert good.status_code == 200
        assert "pa55word" not in good.text


async def test_post_without_or_with_a_wrong_csrf_token_is_refused(
    boot: Any, client: Client, token_of: Any, qname: str
) -> None:
    async with boot() as kernel:
        qm = kernel.get(QueueManager)
        await qm.add_job(qname, "noop", {})
        async with client(kernel) as http:
            # no cookie and no token
            assert (await http.post("/console/action/queue.pause", data={"queue": qname})).status_code == 403
            token = await token_of(http)  # sets the cookie
            wrong = await http.post("/console/action/queue.pause", data={"queue": qname, "csrf": "0" * 64})
            assert wrong.status_code == 403
            assert "CSRF" in wrong.text
            no_field = await http.post("/console/action/queue.pause", data={"queue": qname})
            assert no_field.status_code == 403
            cross_site = await http.post(
                "/console/action/queue.pause",
                data={"queue": qname, "csrf": token},
                headers={"Origin": "https://evil.example"},
            )
            assert cross_site.status_code == 403
            assert not await qm.is_paused(qname)
            # the token of another browser (another cookie) is refused too
            async with client(kernel) as other:
                other_token = await token_of(other)
            stolen = await http.post(
                "/console/action/queue.pause", data={"queue": qname, "csrf": other_token}
            )
            assert stolen.status_code == 403
            assert not await qm.is_paused(qname)
            # with its own token the same POST works
            done = await http.post("/console/action/queue.pause", data={"queue": qname, "csrf": token})
            assert done.status_code == 303
            assert await qm.is_paused(qname)


async def test_script_in_payload_and_error_is_escaped(boot: Any, client: Client, qname: str) -> None:
    script = "<script>alert('xss')</script>"
    async with boot() as kernel:
        bus = kernel.get(EventBus)

        async def reject(data: Any, meta: EventMetadata) -> None:
            raise NonRetryableError(f"bad input {data['name']}")

        bus.subscribe("user.created", reject, group="user.created:reject")
        meta = await bus.publish("user.created", {"name": script})
        await wait_until(bus.dead_letter_count, what="the event in the DLQ")
        qm = kernel.get(QueueManager)
        await qm.add_job(qname, "mail", {"body": script}, delay=3600)
        async with client(kernel) as http:
            pages = [
                await http.get("/console/events"),
                await http.get("/console/dlq", params={"id": meta.event_id}),
                await http.get("/console/queue", params={"name": qname, "state": "delayed", "text": script}),
            ]
        for page in pages:
            assert page.status_code == 200
            assert "<script>alert" not in page.text
        assert "bad input &lt;script&gt;alert(&#x27;xss&#x27;)&lt;/script&gt;" in pages[0].text
        assert "&lt;script&gt;alert(&#x27;xss&#x27;)&lt;/script&gt;" in pages[1].text
        assert "&lt;script&gt;" in pages[2].text  # the filter value echoed in the form, escaped
        assert "A filter shows the first 50 matches among the first 2,000 delayed jobs." in pages[2].text
        assert (
            "script-src" not in pages[0].headers["content-security-policy"]
        )  # default-src 'none': no scripts


async def test_head_answers_headers_only(boot: Any, client: Client) -> None:
    async with boot() as kernel, client(kernel) as http:
        head = await http.head("/console/events")
        assert head.status_code == 200 and head.content == b""
        assert head.headers["content-security-policy"].startswith("default-src 'none'")
        assert (await http.put("/console")).status_code == 405


async def test_unsigned_flash_message_is_not_shown(boot: Any, client: Client) -> None:
    async with boot() as kernel, client(kernel) as http:
        page = await http.get("/console", params={"flash": "call +1 555 0100 now", "ok": "1", "sig": "x"})
        assert page.status_code == 200
        assert "555 0100" not in page.text


async def test_secrets_in_error_text_are_redacted(boot: Any, client: Client) -> None:
    async with boot() as kernel:
        bus = kernel.get(EventBus)

        async def leak(data: Any, meta: EventMetadata) -> None:
            raise NonRetryableError("cannot reach redis://admin:HUNTER2PASS@db.internal:6379/0")

        bus.subscribe("order.paid", leak, group="order.paid:leak")
        await bus.publish("order.paid", {"n": 1})
        await wait_until(bus.dead_letter_count, what="the event in the DLQ")
        async with client(kernel) as http:
            page = await http.get("/console/events")
        assert "db.internal" in page.text
        assert "HUNTER2PASS" not in page.text


def test_config_errors_name_the_key() -> None:
    with pytest.raises(ConfigError, match=r"plugins\.console\.path"):
        make_kernel("console", config={"console": {"path": "console/"}})
    with pytest.raises(ConfigError, match=r"plugins\.console\.password: must be set too"):
        make_kernel("console", config={"console": {"username": "ops"}})
    with pytest.raises(ConfigError, match=r"plugins\.console\.page_size"):
        make_kernel("console", config={"console": {"page_size": 0}})


def test_production_refuses_an_open_console() -> None:
    with pytest.raises(
        ConfigError, match=r"plugins\.console\.loopback_only: the operator console /console is open"
    ):
        make_kernel("console", config={"console": {"loopback_only": False}}, settings={"env": "production"})
    # loopback only (the default), or authenticated, passes
    make_kernel("console", settings={"env": "production"})
    make_kernel(
        "console",
        config={"console": {"loopback_only": False, "token": "t0ken", "csrf_secret": "k3y"}},
        settings={"env": "production"},
    )
    # credentials without csrf_secret: a warning (several processes would refuse each other's forms)
    several = make_kernel(
        "console",
        config={"console": {"loopback_only": False, "username": "ops", "password": "pw"}},
        settings={"env": "production"},
    )
    assert any("plugins.console.csrf_secret" in w for w in several.warnings), several.warnings
