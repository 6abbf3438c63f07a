"""The console in a real browser: Debian's chromium driven by playwright, against a served kernel.

The kernel (metrics, redis, eventbus on Redis Streams, queue, console) boots in uvicorn's lifespan
on a free loopback port; the browser loads each page, clicks through actions, and the tests check
their effect on the real system. Screenshots go to ``$KERNEL_CONSOLE_SCREENSHOTS`` when set
(``docs/images/console`` regenerates the docs' pictures), else to the test's temporary directory.

Without a browser these tests fail when ``$CI`` is set (never a silent skip in CI) and skip otherwise.
"""

from __future__ import annotations

import asyncio
import os
import shutil
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

import attrs
import pytest
from console_models import Note, NoteRepository
from console_stack import QUEUE_FAST, delete_test_keys
from kernel_cache import CacheManager
from kernel_eventbus import EventBus, EventMetadata, NonRetryableError
from kernel_queue import JobContext, QueueManager, list_jobs
from kernel_redis import connect
from kernel_repository import RepositoryManager
from kernel_repository.testing import mongo_server, mongo_uri, unique_database  # noqa: F401

from kernel import Kernel
from kernel.testing import boot_kernel, make_kernel, wait_until
from kernel.web import KernelApp, LifespanMiddleware

if TYPE_CHECKING:
    from playwright.async_api import Browser, Page

pytestmark = pytest.mark.anyio

CHROMIUM_ENV = "KERNEL_CHROMIUM"
"""Path of the browser to drive (default ``/usr/bin/chromium``, Debian's package)."""
SCREENSHOTS_ENV = "KERNEL_CONSOLE_SCREENSHOTS"
PLUGINS = ("errors", "metrics", "redis", "eventbus", "cache", "repository", "queue", "console")
NOTES = "console_models:NoteRepository"
XSS = "<script>window.__xss = 'script'</script><img src=x onerror=\"window.__xss = 'img'\">"


def chromium_or_fail() -> str:
    """The browser executable; without one: fail under CI, skip elsewhere, saying how to install it."""
    path = os.environ.get(CHROMIUM_ENV) or "/usr/bin/chromium"
    problem = None
    try:
        import playwright  # noqa: F401
    except ImportError:
        problem = "playwright is not installed (pip install 'milo-kernel-console[test]')"
    if problem is None and not (os.path.isfile(path) and os.access(path, os.X_OK)):
        found = shutil.which("chromium")
        if found and CHROMIUM_ENV not in os.environ:
            return found
        problem = f"no chromium at {path}: apt-get install -y chromium (or set {CHROMIUM_ENV})"
    if problem is not None:
        if os.environ.get("CI"):
            pytest.fail(f"browser tests cannot run: {problem}", pytrace=False)
        pytest.skip(f"browser tests skipped: {problem}")
    return path


@attrs.define
class Served:
    """A kernel served by uvicorn, and a browser page on it."""

    kernel: Kernel
    base: str
    page: Page
    shots: Path

    async def open(self, path: str) -> Page:
        """Load ``path`` (under the server) and wait for it."""
        response = await self.page.goto(self.base + path)
        assert response is not None and response.status == 200, (path, response and response.status)
        return self.page

    async def shot(self, name: str) -> Path:
        """A full-page screenshot ``<name>.png``."""
        target = self.shots / f"{name}.png"
        await self.page.screenshot(path=str(target), full_page=True)
        assert target.stat().st_size > 5000, f"{target} looks empty"
        return target


@pytest.fixture
async def browser() -> AsyncIterator[Browser]:
    """Chromium, headless, launched from the system's executable (never downloaded)."""
    path = chromium_or_fail()
    from playwright.async_api import async_playwright

    async with async_playwright() as p:
        launched = await p.chromium.launch(executable_path=path, args=["--no-sandbox"])
        try:
            yield launched
        finally:
            await launched.close()


@pytest.fixture
def shots(tmp_path: Path) -> Path:
    """Where screenshots go."""
    target = Path(os.environ.get(SCREENSHOTS_ENV) or tmp_path)
    target.mkdir(parents=True, exist_ok=True)
    return target


@pytest.fixture
async def serve(
    redis_url: str,
    mongo_uri: str,  # noqa: F811 - the imported fixture
    prefix: str,
    qname: str,
    browser: Browser,
    shots: Path,
) -> AsyncIterator[Callable[..., AbstractAsyncContextManager[Served]]]:
    """``async with serve(**console) as s``: the stack served on a free port, a browser page on it."""
    import uvicorn

    database = unique_database("conb")

    @asynccontextmanager
    async def make(**console: Any) -> AsyncIterator[Served]:
        config = {
            "redis": {"url": redis_url},
            "eventbus": {"adapter": "redis", "prefix": prefix, "read_block": 0.1, "max_retries": 0},
            "queue": dict(QUEUE_FAST),
            "repository": {"uri": mongo_uri, "database": database, "repositories": [NOTES]},
            "console": console,
        }
        kernel = make_kernel(*PLUGINS, config=config)
        app = LifespanMiddleware(KernelApp(kernel), kernel)  # boots the kernel in the server's lifespan
        server = uvicorn.Server(
            uvicorn.Config(app, host="127.0.0.1", port=0, lifespan="on", log_config=None, access_log=False)
        )
        task = asyncio.create_task(server.serve())
        try:
            await wait_until(lambda: server.started or task.done(), what="uvicorn to start")
            assert server.started, "the server did not start"
            port = server.servers[0].sockets[0].getsockname()[1]
            context = await browser.new_context(viewport={"width": 1280, "height": 860})
            page = await context.new_page()
            dialogs: list[str] = []
            page.on("dialog", lambda d: dialogs.append(d.message))
            try:
                yield Served(kernel, f"http://127.0.0.1:{port}", page, shots)
            finally:
                await context.close()
            assert not dialogs, f"a page opened a dialog: {dialogs}"
        finally:
            server.should_exit = True
            await task

    yield make
    client = connect(redis_url)  # any topology
    try:
        await delete_test_keys(client, prefix, qname)
    finally:
        await client.aclose()
    async with boot_kernel("errors", "repository", config={"repository": {"uri": mongo_uri}}) as k:
        await k.get(RepositoryManager).client.drop_database(database)


async def dead_letters(bus: EventBus, n: int) -> None:
    """Wait until the DLQ holds ``n`` entries."""

    async def reached() -> bool:
        return await bus.dead_letter_count() == n

    await wait_until(reached, what=f"{n} dead letters")


async def dead_lettered(
    bus: EventBus, event: str, group: str, payloads: list[dict[str, Any]]
) -> tuple[list[Any], Callable[[], None]]:
    """Subscribe ``group`` with a handler that fails until healed, publish ``payloads`` and wait until
    each is a dead letter. Returns what the handler received once healed, and the heal function."""
    healthy = False
    delivered: list[Any] = []

    async def handler(data: Any, meta: EventMetadata) -> None:
        if not healthy:
            raise RuntimeError(f"{group} offline")
        delivered.append(data)

    def heal() -> None:
        nonlocal healthy
        healthy = True

    bus.subscribe(event, handler, group=group)
    for payload in payloads:
        await bus.publish(event, payload)
    await dead_letters(bus, len(payloads))
    return delivered, heal


async def test_every_page_renders_and_is_captured(serve: Any, qname: str) -> None:
    async with serve() as s:
        bus, qm = s.kernel.get(EventBus), s.kernel.get(QueueManager)

        async def reject(data: Any, meta: EventMetadata) -> None:
            raise NonRetryableError(f"no customer {data.get('customer')!r}")

        bus.subscribe("invoice.sent", reject, group="invoice.sent:billing")
        for n in range(3):
            await bus.publish("invoice.sent", {"customer": f"c-{n}", "total": 10 * n}, source="billing")
        await dead_letters(bus, 3)

        async def work(job: JobContext) -> str:
            if job.data.get("fail"):
                raise RuntimeError(f"mail server refused {job.data['to']}")
            return "sent"

        await qm.create_worker(qname, work)
        for n in range(4):
            await qm.add_job(qname, "send-mail", {"to": f"user{n}@example.com", "fail": n == 3})
        await qm.add_job(qname, "send-digest", {"week": 48}, delay=3600)

        async def settled() -> bool:
            s_ = await qm.get_queue_stats(qname)
            return bool(s_["completed"] == 3 and s_["failed"] == 1)

        await wait_until(settled, what="three completed jobs and one failed")
        failed_id = (await list_jobs(qm, qname, "failed"))[0].id

        page = await s.open("/console")
        assert await page.locator("h1").inner_text() == "Overview"
        assert await page.locator("svg[aria-label='plugin dependency graph'] g.node").count() == len(PLUGINS)
        await s.shot("overview")
        page = await s.open("/console/queues")
        assert await page.get_by_role("link", name=qname).count() == 1
        await s.shot("queues")
        page = await s.open(f"/console/queue?name={qname}&state=failed")
        assert "mail server refused user3@example.com" in await page.locator("table").inner_text()
        await s.shot("queue")
        page = await s.open(f"/console/job?queue={qname}&id={failed_id}")
        assert "user3@example.com" in await page.locator("pre").first.inner_text()
        await s.shot("job")
        page = await s.open("/console/events")
        assert await page.locator("tbody tr").count() == 4  # 1 subscription + 3 dead letters
        await s.shot("events")
        entry = (await bus.get_dead_letter_queue(1))[0]
        page = await s.open(f"/console/dlq?id={entry.event_id}")
        assert entry.metadata.trace_id and entry.metadata.trace_id in await page.content()
        await s.shot("dlq-entry")
        await qm.stop_workers()

        sessions = s.kernel.get(CacheManager).namespace("sessions")
        profiles = s.kernel.get(CacheManager).namespace("profiles")
        for n in range(4):
            await sessions.set(f"user:{n}", {"n": n})
            await profiles.set(f"p:{n}", {"n": n})
            await sessions.get(f"user:{n}")
            await profiles.get(f"p:{n + 2}")
        page = await s.open("/console/cache")
        assert "sessions" in await page.locator("table").inner_text()
        await s.shot("cache")
        notes = s.kernel.get(RepositoryManager).repository(NoteRepository)
        await notes.create(Note(text="first"))
        await notes.collection.insert_one({"body": "stored at v1", "schema_version": 1})
        page = await s.open("/console/repository")
        assert "console_notes" in await page.locator("table").inner_text()
        await s.shot("repository")


async def test_replay_from_the_dlq_delivers_the_event(serve: Any) -> None:
    async with serve() as s:
        bus = s.kernel.get(EventBus)
        delivered, heal = await dead_lettered(
            bus, "order.shipped", "order.shipped:warehouse", [{"order": "A-17"}]
        )
        heal()
        page = await s.open("/console/events")
        await page.get_by_role("button", name="replay", exact=True).click()
        await page.wait_for_load_state()
        assert "replayed to 1 subscription(s)" in await page.get_by_role("status").inner_text()
        await wait_until(lambda: delivered == [{"order": "A-17"}], what="the replayed event at its handler")
        assert await bus.dead_letter_count() == 0
        assert "the dead-letter queue is empty" in await page.content()


async def test_replay_all_shows_a_count_preview_first(serve: Any) -> None:
    async with serve() as s:
        bus = s.kernel.get(EventBus)
        delivered, heal = await dead_lettered(bus, "ping", "ping:console", [{"n": n} for n in range(3)])
        heal()
        page = await s.open("/console/events")
        await page.get_by_role("button", name="replay all").click()
        await page.wait_for_load_state()
        assert "Replay 3 dead-letter entries?" in await page.locator("main").inner_text()
        assert await bus.dead_letter_count() == 3
        await s.shot("confirm")
        await page.get_by_role("button", name="yes, do it").click()
        await page.wait_for_load_state()
        await wait_until(lambda: sorted(d["n"] for d in delivered) == [0, 1, 2], what="three replayed events")
        assert "3 dead-letter entries replayed" in await page.get_by_role("status").inner_text()


async def test_pause_stops_processing_and_retry_runs_a_failed_job(serve: Any, qname: str) -> None:
    broken = True
    ran: list[str] = []
    async with serve() as s:
        qm = s.kernel.get(QueueManager)

        async def work(job: JobContext) -> None:
            if broken and job.data["id"] == "flaky":
                raise RuntimeError("flaky dependency")
            ran.append(job.data["id"])

        await qm.create_worker(qname, work)
        job_id = await qm.add_job(qname, "task", {"id": "flaky"})

        async def failed() -> bool:
            return (await qm.get_queue_stats(qname))["failed"] == 1

        await wait_until(failed, what="the flaky job to fail")
        page = await s.open(f"/console/queue?name={qname}")
        await page.get_by_role("button", name="pause queue").click()
        await page.wait_for_load_state()
        assert "paused" in await page.get_by_role("status").inner_text()
        assert await qm.is_paused(qname)
        await qm.add_job(qname, "task", {"id": "while-paused"})
        broken = False
        await page.get_by_role("button", name="retry", exact=True).click()  # the failed job's row
        await page.wait_for_load_state()
        assert "re-queued" in await page.get_by_role("status").inner_text()
        stats = await qm.get_queue_stats(qname)
        assert stats["waiting"] == 2 and ran == []  # paused: nothing runs, both wait
        await page.get_by_role("button", name="resume queue").click()
        await page.wait_for_load_state()
        await wait_until(lambda: sorted(ran) == ["flaky", "while-paused"], what="both jobs after resume")
        info = await qm.get_job(qname, job_id)
        assert info is not None and info.state in ("active", "completed")
        await qm.stop_workers()


async def test_script_payloads_are_shown_as_text_and_never_run(serve: Any) -> None:
    async with serve() as s:
        bus = s.kernel.get(EventBus)

        async def reject(data: Any, meta: EventMetadata) -> None:
            raise NonRetryableError(f"rejected {data['comment']}")

        bus.subscribe("comment.posted", reject, group="comment.posted:moderation")
        meta = await bus.publish("comment.posted", {"comment": XSS})
        await dead_letters(bus, 1)
        for path in ("/console/events", f"/console/dlq?id={meta.event_id}", f"/console/events?text={XSS}"):
            page = await s.open(path)
            assert await page.evaluate("typeof window.__xss") == "undefined", path
            assert "<script>window.__xss = 'script'</script>" in await page.locator("main").inner_text(), path
            assert await page.locator("main script").count() == 0
            assert await page.locator("main img").count() == 0


async def test_a_tampered_csrf_token_is_refused(serve: Any, qname: str) -> None:
    async with serve() as s:
        qm = s.kernel.get(QueueManager)
        await qm.add_job(qname, "task", {"n": 1})
        page = await s.open(f"/console/queue?name={qname}&state=waiting")
        pause = page.locator("form[action$='/action/queue.pause']")
        await pause.locator("input[name=csrf]").evaluate("el => { el.value = 'f'.repeat(64) }")
        async with page.expect_navigation() as nav:
            await pause.get_by_role("button").click()
        response = await nav.value
        assert response is not None and response.status == 403
        assert "CSRF" in await page.locator("body").inner_text()
        assert not await qm.is_paused(qname)
        # cookies are HttpOnly and SameSite=Strict
        cookies = await page.context.cookies()
        assert cookies and all(c["httpOnly"] and c["sameSite"] == "Strict" for c in cookies)


async def test_cache_invalidation_asks_then_deletes(serve: Any) -> None:
    async with serve() as s:
        sessions = s.kernel.get(CacheManager).namespace("sessions")
        for key in ("user:1", "user:2", "team:1"):
            await sessions.set(key, 1)
        page = await s.open("/console/cache")
        await page.get_by_label("namespace").select_option("sessions")
        await page.get_by_label("match").select_option("glob")
        await page.get_by_label("key or pattern").fill("user:*")
        await page.get_by_role("button", name="invalidate").click()
        await page.wait_for_load_state()
        question = await page.locator("main").inner_text()
        assert "namespace sessions matching glob pattern (* ? [...]) 'user:*'?" in question
        assert await sessions.has("user:1")
        await page.get_by_role("button", name="yes, do it").click()
        await page.wait_for_load_state()
        assert "2 key(s) of namespace sessions deleted" in await page.get_by_role("status").inner_text()
        assert not await sessions.has("user:1") and await sessions.has("team:1")


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def test_console_of_the_example_service(browser: Browser, tmp_path: Path, shots: Path) -> None:
    """The example service (examples/service: a web and a worker process on an embedded Redis and
    wire server) serves the console: its pages show the service's own plugins, queue and events."""
    import tomllib

    import anyio
    import httpx

    from examples.service.run import CONFIG, Stack

    enabled = tomllib.loads(CONFIG.read_text(encoding="utf-8"))["kernel"]["plugins"]

    stack = Stack(web=1, workers=1, port=_free_port(), log_dir=tmp_path)
    await anyio.to_thread.run_sync(stack.start)
    try:
        base = f"http://127.0.0.1:{stack.port}"
        async with httpx.AsyncClient(base_url=base) as http:
            created = await http.post("/users", json={"name": "Ada <script>", "email": "ada@example.org"})
            assert created.status_code == 201, created.text
            user_id = created.json()["id"]
            assert (await http.get(f"/users/{user_id}")).status_code == 200  # a cache read

            async def notified() -> bool:
                page = await http.get(
                    "/console/queue", params={"name": "notifications", "state": "completed"}
                )
                return page.status_code == 200 and "send-notification" in page.text

            await wait_until(notified, timeout=60, what="the notification job of the new user")
        context = await browser.new_context(viewport={"width": 1280, "height": 860})
        page = await context.new_page()
        try:
            await page.goto(f"{base}/console")
            graph = page.locator("svg[aria-label='plugin dependency graph'] g.node")
            assert await graph.count() == len(enabled)  # one box per plugin the example enables
            await s_shot(page, shots, "example-overview")
            await page.goto(f"{base}/console/queue?name=notifications&state=completed")
            assert "send-notification" in await page.locator("table").inner_text()
            await page.goto(f"{base}/console/events")
            assert "user.created" in await page.locator("table").first.inner_text()
            await page.goto(f"{base}/console/cache")
            assert "user" in await page.locator("table").inner_text()
            await page.goto(f"{base}/console/repository")
            assert "UserRepository" in await page.locator("table").inner_text()
            assert await page.evaluate("typeof window.__xss") == "undefined"
        finally:
            await context.close()
    finally:
        await anyio.to_thread.run_sync(stack.stop)


async def s_shot(page: Page, shots: Path, name: str) -> None:
    """A full-page screenshot ``<name>.png`` of ``page``."""
    target = shots / f"{name}.png"
    await page.screenshot(path=str(target), full_page=True)
    assert target.stat().st_size > 5000
