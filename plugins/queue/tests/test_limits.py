"""Size limits, retention of finished jobs and job data in log lines, against a real redis-server."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import anyio
import pytest
from kernel_queue import InvalidJobOptionError, JobContext, JobDataError, JobTooLargeError, QueueManager
from kernel_queue._manager import QUEUES_KEY
from kernel_queue._queue import KernelJob
from kernel_queue._scripts import MAX_TOKENS
from kernel_redis.testing import redis_server, redis_url  # noqa: F401
from saq.job import Job, Status

from kernel import ConfigError
from kernel.logging._setup import ConsoleFormatter, JsonFormatter
from kernel.testing import boot_kernel, make_kernel

MiB = 1_048_576


async def poll(check: Callable[[], Awaitable[bool]], within: float = 15.0) -> None:
    """Await ``check()`` until true; fail the test after ``within`` seconds."""
    with anyio.fail_after(within):
        while True:
            if await check():
                return
            await anyio.sleep(0.02)


async def queue_keys(manager: QueueManager, qname: str) -> list[str]:
    """Every Redis key of queue ``qname`` (its sets and its job records)."""
    return sorted([k.decode() async for k in manager.redis.scan_iter(match=f"saq:*{qname}*")])


@pytest.fixture
def settings() -> dict[str, Any]:
    """``[plugins.queue]`` overrides of a test (on top of the fast test timers)."""
    return {}


@pytest.fixture
async def qm(
    redis_url: str,  # noqa: F811
    fast_config: dict[str, Any],
    settings: dict[str, Any],
    qname: str,
) -> AsyncIterator[QueueManager]:
    """A booted manager; removes every key of ``qname`` afterwards."""
    async with boot_kernel(
        "redis", "queue", config={"redis": {"url": redis_url}, "queue": {**fast_config, **settings}}
    ) as k:
        manager = k.get(QueueManager)
        try:
            yield manager
        finally:
            await manager.close()
            keys = await queue_keys(manager, qname)
            if keys:
                await manager.redis.delete(*keys)
            await manager.redis.srem(QUEUES_KEY, qname)


async def assert_nothing_stored(manager: QueueManager, qname: str) -> None:
    assert await queue_keys(manager, qname) == []
    assert not await manager.redis.sismember(QUEUES_KEY, qname)


# ---------------------------------------------------------------------- payload size


@pytest.mark.parametrize(
    ("key", "value", "problem"),
    [
        ("max_payload_bytes", 0, "must be >= 1"),
        ("failed_retention", float("inf"), "must be seconds from 0 to 315360000"),
        ("completed_retention", -1.0, "must be seconds from 0"),
        ("log_data_chars", -5, "must be >= 0"),
    ],
)
def test_bad_limits_are_config_errors_naming_the_key(key: str, value: float, problem: str) -> None:
    with pytest.raises(ConfigError, match=rf"plugins\.queue\.{key}.*{problem}"):
        make_kernel("redis", "queue", config={"queue": {key: value}})


@pytest.mark.anyio
async def test_default_limit_rejects_a_large_job_with_a_typed_error_and_stores_nothing(
    qm: QueueManager, qname: str
) -> None:
    with pytest.raises(JobTooLargeError) as caught:
        await qm.add_job(qname, "import", {"rows": "x" * (2 * MiB)})
    assert qm.config.max_payload_bytes == MiB
    message = str(caught.value)
    assert f"job 'import' on queue '{qname}': data is 2,097,163 bytes" in message
    assert "limit of 1,048,576 bytes (plugins.queue.max_payload_bytes)" in message
    assert (caught.value.size, caught.value.limit) == (2_097_163, MiB)
    assert isinstance(caught.value, ValueError)
    await assert_nothing_stored(qm, qname)
    # Just under the limit is fine.
    jid = await qm.add_job(qname, "import", "x" * (MiB - 2))
    info = await qm.get_job(qname, jid)
    assert info is not None and len(info.data) == MiB - 2


@pytest.mark.anyio
@pytest.mark.parametrize("settings", [{"max_payload_bytes": 1000}])
async def test_limit_is_configurable_and_exact_in_json_bytes(qm: QueueManager, qname: str) -> None:
    await qm.add_job(qname, "n", "x" * 998)  # "xxx…" is 1000 bytes of JSON
    with pytest.raises(JobTooLargeError, match="1,001 bytes"):
        await qm.add_job(qname, "n", "x" * 999)
    # Non-ASCII text counts as stored: escaped, 6 bytes per character.
    with pytest.raises(JobTooLargeError, match="1,202 bytes"):
        await qm.add_job(qname, "n", "é" * 200)
    assert (await qm.get_queue_stats(qname))["waiting"] == 1


@pytest.mark.anyio
@pytest.mark.parametrize("settings", [{"max_payload_bytes": 1000}])
async def test_bulk_add_checks_every_job_and_a_rejected_batch_stores_nothing(
    qm: QueueManager, qname: str
) -> None:
    jobs = [
        {"name": "n", "data": {"i": 1}},
        {"name": "n", "data": {"i": 2}},
        {"name": "big", "data": {"blob": "y" * 2000}},
    ]
    with pytest.raises(JobTooLargeError, match=r"^jobs\[2\]: job 'big' on queue .*max_payload_bytes"):
        await qm.add_bulk_jobs(qname, jobs)
    await assert_nothing_stored(qm, qname)
    assert len(await qm.add_bulk_jobs(qname, jobs[:2])) == 2


@pytest.mark.anyio
@pytest.mark.parametrize("settings", [{"max_payload_bytes": 1000}])
async def test_recurring_job_data_is_checked_when_scheduled(qm: QueueManager, qname: str) -> None:
    with pytest.raises(JobTooLargeError, match=r"recurring job 'tick' on queue .*max_payload_bytes"):
        await qm.schedule_recurring_job(qname, "tick", {"blob": "z" * 2000}, "* * * * *")
    await assert_nothing_stored(qm, qname)


@pytest.mark.anyio
@pytest.mark.parametrize("settings", [{"max_payload_bytes": 1000}])
async def test_the_limit_counts_the_data_alone_not_the_whole_job_record(qm: QueueManager, qname: str) -> None:
    # The stored record (name, id, options and data) is far over the limit; the data is not.
    long_id = "i" * 1500
    jid = await qm.add_job(qname, "n" * 1500, "x" * 998, job_id=long_id, attempts=3)
    info = await qm.get_job(qname, jid)
    assert info is not None and info.data == "x" * 998 and info.max_attempts == 3
    with pytest.raises(JobTooLargeError, match="1,001 bytes"):
        await qm.add_job(qname, "n" * 1500, "x" * 999)
    jids = await qm.add_bulk_jobs(qname, [{"name": "b" * 1500, "data": "x" * 998}])
    assert len(jids) == 1
    assert (await qm.get_queue_stats(qname))["waiting"] == 2


@pytest.mark.anyio
@pytest.mark.parametrize("settings", [{"max_payload_bytes": 1000}])
async def test_bad_data_is_reported_before_bad_options(qm: QueueManager, qname: str) -> None:
    with pytest.raises(JobDataError, match=f"job 'n' on queue '{qname}': data must be JSON"):
        await qm.add_job(qname, "n", {"when": object()}, priority=0)
    with pytest.raises(JobTooLargeError, match="data is 2,002 bytes"):
        await qm.add_job(qname, "n", "y" * 2000, job_id="")
    with pytest.raises(JobDataError, match=r"^jobs\[1\]: job 'n' on queue"):
        await qm.add_bulk_jobs(
            qname, [{"name": "n"}, {"name": "n", "data": {1j}, "attempts": 0}, {"name": "n", "delay": -1}]
        )
    # Good data: the option's own error.
    with pytest.raises(InvalidJobOptionError, match="priority must be"):
        await qm.add_job(qname, "n", {"ok": 1}, priority=0)
    await assert_nothing_stored(qm, qname)


@pytest.mark.anyio
async def test_the_stored_record_is_saqs_serialization(qm: QueueManager, qname: str) -> None:
    jid = await qm.add_job(
        qname,
        "n",
        {"a": [1, 2.5, None]},
        priority=7,
        attempts=2,
        backoff={"type": "exponential", "delay": 1},
        delay=60,
        timeout=5,
    )
    q = qm.get_queue(qname)
    job = await q.job(jid)
    assert isinstance(job, KernelJob)
    stored = await qm.redis.get(job.id)
    assert stored.decode() == q.serialize(job)
    assert job.to_dict() == Job.to_dict(job)


@pytest.mark.anyio
async def test_wake_tokens_stop_at_the_cap_and_a_known_job_id_is_not_enqueued_again(
    qm: QueueManager, qname: str
) -> None:
    q = qm.get_queue(qname)
    await qm.add_bulk_jobs(qname, [{"name": "n", "data": i} for i in range(MAX_TOKENS + 5)])
    assert await qm.redis.llen(q.keys.wake) == MAX_TOKENS
    await qm.add_job(qname, "n", 1)
    assert await qm.redis.llen(q.keys.wake) == MAX_TOKENS
    first = await qm.add_job(qname, "n", "first", job_id="once")
    again = await qm.add_job(qname, "n", "second", job_id="once")
    info = await qm.get_job(qname, "once")
    assert first == again == "once" and info is not None and info.data == "first"
    assert (await qm.get_queue_stats(qname))["waiting"] == MAX_TOKENS + 7


def test_kernel_job_to_dict_is_saqs() -> None:
    class Ambiguous:
        def __eq__(self, other: object) -> bool:
            raise ValueError("truth value is ambiguous")

    jobs = [
        KernelJob("f"),
        KernelJob("f", kwargs={"data": None}, key="k", timeout=0, retries=0, ttl=0, meta={}),
        KernelJob(
            "f",
            kwargs={"data": {"x": 1}},
            scheduled=5,
            progress=0.5,
            attempts=2,
            result=[1],
            error="boom",
            status=Status.FAILED,
            priority=3,
            meta={"max_attempts": 4},
            worker_id="w",
        ),
        KernelJob("f", result=Ambiguous()),
    ]
    for job in jobs:
        assert job.to_dict() == Job.to_dict(job)
        assert list(job.to_dict()) == list(Job.to_dict(job))


@pytest.mark.anyio
@pytest.mark.parametrize("settings", [{"max_payload_bytes": 1000}])
async def test_a_result_over_the_limit_fails_the_job_and_is_not_stored(qm: QueueManager, qname: str) -> None:
    async def proc(job: JobContext) -> str:
        return "r" * 5000

    jid = await qm.add_job(qname, "n", {})
    await qm.create_worker(qname, proc)

    async def failed() -> bool:
        info = await qm.get_job(qname, jid)
        return info is not None and info.state == "failed"

    await poll(failed)
    info = await qm.get_job(qname, jid)
    assert info is not None and info.result is None
    assert info.failed_reason is not None
    assert "result is 5,002 bytes as JSON, over the limit of 1,000 bytes" in info.failed_reason
    assert await qm.redis.strlen(qm.get_queue(qname).job_id(jid)) < 1000


# ---------------------------------------------------------------------- retention


async def finish_two(qm: QueueManager, qname: str) -> tuple[str, str]:
    """Run one job that completes and one that fails; their ids once both are finished."""

    async def proc(job: JobContext) -> str:
        if job.name == "bad":
            raise RuntimeError("boom")
        return "ok"

    good = await qm.add_job(qname, "good", {})
    bad = await qm.add_job(qname, "bad", {})
    await qm.create_worker(qname, proc)

    async def both_done() -> bool:
        counts = await qm.get_counts(qname)
        return counts.get("completed") == 1 and counts.get("failed") == 1

    await poll(both_done)
    return good, bad


@pytest.mark.anyio
async def test_finished_jobs_expire_by_default(qm: QueueManager, qname: str) -> None:
    good, bad = await finish_two(qm, qname)
    q = qm.get_queue(qname)
    completed_ms = await qm.redis.pttl(q.job_id(good))
    failed_ms = await qm.redis.pttl(q.job_id(bad))
    # 1 day and 7 days, minus the time the test took (generous).
    assert 86_400_000 - 60_000 < completed_ms <= 86_400_000
    assert 604_800_000 - 60_000 < failed_ms <= 604_800_000


@pytest.mark.anyio
@pytest.mark.parametrize("settings", [{"completed_retention": 1.0, "failed_retention": 1.5}])
async def test_expired_jobs_leave_the_records_and_the_stats(qm: QueueManager, qname: str) -> None:
    good, bad = await finish_two(qm, qname)

    async def gone() -> bool:
        stats = await qm.get_queue_stats(qname)
        return (
            await qm.get_job(qname, good) is None
            and await qm.get_job(qname, bad) is None
            and stats["completed"] == 0
            and stats["failed"] == 0
        )

    await poll(gone)
    q = qm.get_queue(qname)
    assert await qm.redis.zcard(q.keys.completed) == 0 and await qm.redis.zcard(q.keys.failed) == 0
    assert await qm.get_counts(qname) == {"completed": 1, "failed": 1}  # lifetime totals stay


@pytest.mark.anyio
@pytest.mark.parametrize("settings", [{"completed_retention": 0, "failed_retention": 0}])
async def test_zero_retention_keeps_finished_jobs_until_cleaned(qm: QueueManager, qname: str) -> None:
    good, bad = await finish_two(qm, qname)
    q = qm.get_queue(qname)
    assert await qm.redis.pttl(q.job_id(good)) == -1
    assert await qm.redis.pttl(q.job_id(bad)) == -1
    assert await qm.clean_queue(qname, 0, 0, "completed") == [good]


# ---------------------------------------------------------------------- job data in logs


PERSONAL = "alice.doe@example.com"


def log_output(records: list[logging.LogRecord]) -> str:
    """The records as the kernel's console and JSON handlers would write them."""
    console, as_json = ConsoleFormatter(), JsonFormatter()
    return "\n".join(f"{console.format(r)}\n{as_json.format(r)}" for r in records)


async def run_a_failing_job(
    qm: QueueManager, qname: str, caplog: pytest.LogCaptureFixture, data: dict[str, Any]
) -> str:
    """Add job ``signup`` with ``data``, let a processor fail it (logging at DEBUG), stop; its id."""

    async def proc(job: JobContext) -> None:
        raise RuntimeError("processor failed")

    caplog.set_level(logging.DEBUG)  # SAQ logs every job field at DEBUG
    jid = await qm.add_job(qname, "signup", data)
    await qm.create_worker(qname, proc)

    async def failed() -> bool:
        info = await qm.get_job(qname, jid)
        return info is not None and info.state == "failed"

    await poll(failed)
    await qm.stop_workers()
    return jid


@pytest.mark.anyio
@pytest.mark.parametrize("settings", [{"log_data_chars": 100}])
async def test_a_failing_job_does_not_put_its_data_in_the_logs(
    qm: QueueManager, qname: str, caplog: pytest.LogCaptureFixture
) -> None:
    notes = "n" * 50_000
    jid = await run_a_failing_job(qm, qname, caplog, {"notes": notes, "email": PERSONAL})
    errors = [r for r in caplog.records if r.name == "saq" and r.levelno == logging.ERROR]
    assert errors, "SAQ logs the failing job"
    assert "processor failed" in log_output(errors)
    output = log_output(caplog.records)
    assert jid in output and "signup" in output  # the job is still identifiable
    assert "n" * 101 not in output  # data cut to log_data_chars
    assert PERSONAL not in output
    assert "chars>" in output


@pytest.mark.anyio
@pytest.mark.parametrize("settings", [{"log_data_chars": 0}])
async def test_log_data_chars_zero_hides_job_data(
    qm: QueueManager, qname: str, caplog: pytest.LogCaptureFixture
) -> None:
    jid = await run_a_failing_job(qm, qname, caplog, {"email": PERSONAL})
    output = log_output(caplog.records)
    assert jid in output and "chars hidden>" in output
    assert PERSONAL not in output and "example.com" not in output


@pytest.mark.anyio
async def test_the_default_event_logger_cuts_results(
    qm: QueueManager,
    qname: str,
    caplog: pytest.LogCaptureFixture,
    subscribed: Callable[[QueueManager, str], Awaitable[None]],
) -> None:
    caplog.set_level(logging.INFO, logger="kernel.plugins.queue")
    listener = qm.listen_to_queue_events(qname)
    await subscribed(qm, qname)

    async def proc(job: JobContext) -> dict[str, str]:
        return {"notes": "m" * 5000, "email": PERSONAL}

    jid = await qm.add_job(qname, "n", {})
    await qm.create_worker(qname, proc)

    def completed_logged() -> list[logging.LogRecord]:
        return [r for r in caplog.records if getattr(r, "job_event", {}).get("event") == "completed"]

    async def logged() -> bool:
        return bool(completed_logged())

    await poll(logged)
    listener.cancel()
    output = log_output(completed_logged())
    assert jid in output
    assert "m" * 101 not in output and PERSONAL not in output
