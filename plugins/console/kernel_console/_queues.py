"""Queues: counts by state, paused state, job lists with filters, job detail, and their actions."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import TYPE_CHECKING

from ._chart import failure_rate, throughput_svg
from ._html import Safe, badge, dl, h, join, link, pre, pretty, scrub, table
from ._http import BadRequest, Confirm, Done, NotFound, Page, PageHandler, Request

if TYPE_CHECKING:
    from kernel_queue import JobInfo, QueueManager

STATES = ("waiting", "delayed", "active", "failed", "completed")
CLEANABLE = ("completed", "failed", "waiting", "delayed")
SCAN = 2000
"""Jobs a name or text filter looks at (from the front of the state's list)."""


def when(epoch: float | None) -> str:
    """Epoch seconds as UTC text."""
    if not epoch:
        return ""
    return datetime.fromtimestamp(epoch, UTC).strftime("%Y-%m-%d %H:%M:%S")


def _short(text: str | None, limit: int = 100) -> str:
    """The last line of an error (a traceback's exception line), cut to ``limit`` characters."""
    lines = [line for line in scrub(text or "").splitlines() if line.strip()]
    text = lines[-1].strip() if lines else ""
    return text if len(text) <= limit else text[: limit - 1] + "…"


class QueuesSection:
    """The ``queues`` pages and actions, on the queue plugin's :class:`~kernel_queue.QueueManager`."""

    key = "queues"
    actions = frozenset(
        {"queue.pause", "queue.resume", "queue.retry-failed", "queue.clean", "job.retry", "job.remove"}
    )

    def __init__(self, manager: QueueManager, page_size: int) -> None:
        self.qm = manager
        self.page_size = page_size

    async def _known(self, name: str) -> str:
        if not name or name not in await self.qm.queue_names():
            raise NotFound(f"no queue {name!r}")
        return name

    def pages(self) -> dict[str, PageHandler]:
        """``/queues``, ``/queue?name=`` and ``/job?queue=&id=``."""
        return {"/queues": self.index, "/queue": self.queue, "/job": self.job}

    # ------------------------------------------------------------------ pages

    async def index(self, req: Request) -> Page:
        """Every known queue with its counts."""
        from kernel_queue import finished_per_interval

        rows: list[list[object]] = []
        for name in await self.qm.queue_names():
            s = await self.qm.get_queue_stats(name)
            totals = await self.qm.get_counts(name)
            hour = await finished_per_interval(self.qm, name)
            paused = badge("paused", "warn") if s["paused"] else badge("running", "ok")
            toggle = req.post(
                "queue.resume" if s["paused"] else "queue.pause",
                "resume" if s["paused"] else "pause",
                {"queue": name},
            )
            rows.append(
                [
                    link(req.href("/queue", name=name), name),
                    paused,
                    *(s[k] for k in ("waiting", "active", "delayed", "completed", "failed")),
                    totals.get("completed", 0),
                    totals.get("failed", 0),
                    throughput_svg(hour, width=120, height=24),
                    failure_rate(hour),
                    toggle,
                ]
            )
        headers = [
            "queue",
            "state",
            "waiting",
            "active",
            "delayed",
            "completed",
            "failed",
            "done (lifetime)",
            "failed (lifetime)",
            "last hour",
            "failure rate (1 h)",
            "",
        ]
        return Page("Queues", table(headers, rows, empty="no queues known to this Redis"), self.key)

    async def queue(self, req: Request) -> Page:
        """One queue: counts, controls, the job list of one state with filters."""
        from kernel_queue import LISTABLE, finished_per_interval, list_jobs

        name = await self._known(req.arg("name"))
        state = next((s for s in LISTABLE if s == req.arg("state", "failed")), None)
        if state is None:
            raise BadRequest(f"state must be one of {', '.join(STATES)}")
        s = await self.qm.get_queue_stats(name)
        hour = await finished_per_interval(self.qm, name)
        page = req.page_number()
        fn, text = req.arg("fn"), req.arg("text")
        filtered = bool(fn or text)
        jobs = await list_jobs(
            self.qm,
            name,
            state,
            offset=0 if filtered else (page - 1) * self.page_size,
            limit=self.page_size,
            name=fn or None,
            text=text or None,
            scan=SCAN,
        )
        cards = join(
            h(
                '<div class="card"><a href="{href}">{k}</a><b>{v}</b></div>',
                href=req.href("/queue", name=name, state=k),
                k=k,
                v=s[k],
            )
            for k in STATES
        )
        controls = [
            badge("paused", "warn") if s["paused"] else badge("running", "ok"),
            req.post(
                "queue.resume" if s["paused"] else "queue.pause",
                "resume queue" if s["paused"] else "pause queue",
                {"queue": name},
            ),
            req.post("queue.retry-failed", f"retry all failed ({s['failed']})", {"queue": name}),
            req.post(
                "queue.clean",
                "clean",
                {"queue": name},
                danger=True,
                extra=Safe(
                    '<select name="status" aria-label="jobs to clean">'
                    + join(h('<option value="{v}">{v}</option>', v=v) for v in CLEANABLE)
                    + "</select> "
                ),
            ),
        ]
        filters = h(
            '<form method="get" class="filters" action="{action}">'
            '<input type="hidden" name="name" value="{name}">'
            '<input type="hidden" name="state" value="{state}">'
            '<label>job name <input name="fn" value="{fn}"></label><label>text <input name="text" '
            'value="{text}"></label><button type="submit">filter</button></form>',
            action=req.href("/queue"),
            name=name,
            state=state,
            fn=fn,
            text=text,
        )
        rows = [self._job_row(req, j) for j in jobs]
        headers = ["job", "name", "state", "attempts", "created (UTC)", "finished (UTC)", "error", ""]
        if filtered:  # matches are not paged: say how far the filter looked
            more = h(
                '<p class="empty">A filter shows the first {n} matches '
                "among the first {scan} {state} jobs.</p>",
                n=self.page_size,
                scan=f"{SCAN:,}",
                state=state,
            )
        elif len(jobs) == self.page_size:
            more = link(req.href("/queue", name=name, state=state, page=page + 1), "next page →")
        else:
            more = Safe("")
        chart = h(
            "<h2>Last hour</h2><p>{done} completed, {failed} failed (failure rate {rate}), per 5 minutes "
            "(green completed, red failed; from the finished jobs Redis keeps):</p>{svg}",
            done=sum(c.completed for c in hour),
            failed=sum(c.failed for c in hour),
            rate=failure_rate(hour),
            svg=throughput_svg(hour),
        )
        body = h(
            '<div class="cards">{cards}</div><p>{controls}</p>{chart}'
            "<h2>{state} jobs</h2>{filters}{table}{more}",
            cards=cards,
            controls=join(controls, " "),
            chart=chart,
            state=state,
            filters=filters,
            table=table(
                headers, rows, empty=f"no {state} jobs" + (" matching the filter" if fn or text else "")
            ),
            more=more,
        )
        return Page(f"Queue {name}", body, self.key)

    def _job_row(self, req: Request, j: JobInfo) -> list[object]:
        actions = []
        if j.state == "failed":
            actions.append(req.post("job.retry", "retry", {"queue": j.queue, "id": j.id}))
        if j.state != "active":
            actions.append(req.post("job.remove", "remove", {"queue": j.queue, "id": j.id}, danger=True))
        return [
            link(req.href("/job", queue=j.queue, id=j.id), j.id),
            j.name,
            j.state,
            f"{j.attempts}/{j.max_attempts}",
            when(j.created_at),
            when(j.finished_at),
            _short(j.failed_reason),
            join(actions),
        ]

    async def job(self, req: Request) -> Page:
        """One job's detail."""
        name = await self._known(req.arg("queue"))
        j = await self.qm.get_job(name, req.arg("id"))
        if j is None:
            raise NotFound(f"no job {req.arg('id')!r} on queue {name!r}")
        facts = dl(
            [
                ("queue", link(req.href("/queue", name=name), name)),
                ("id", j.id),
                ("name", j.name),
                ("state", j.state),
                ("progress", f"{j.progress:.0%}"),
                (
                    "attempts",
                    f"{j.attempts} (failures {j.failures} of {j.max_attempts} allowed, stalls {j.stalls})",
                ),
                ("priority", j.priority or "none"),
                ("created (UTC)", when(j.created_at)),
                ("scheduled for (UTC)", when(j.scheduled_for)),
                ("finished (UTC)", when(j.finished_at)),
            ]
        )
        row = self._job_row(req, j)
        body = h(
            "{facts}<p>{actions}</p><h2>Data</h2>{data}<h2>Result</h2>{result}<h2>Error</h2>{trace}{error}",
            facts=facts,
            actions=row[-1],
            data=pre(pretty(j.data)),
            result=pre(pretty(j.result)),
            trace=h('<p class="trace">trace id <code>{t}</code></p>', t=j.trace_id) if j.trace_id else "",
            error=pre(scrub(j.failed_reason or "none")),
        )
        return Page(f"Job {j.id}", body, self.key)

    # ------------------------------------------------------------------ actions

    async def act(self, req: Request, action: str) -> Done | Confirm:
        """Run ``action`` (``queue.*`` / ``job.*``) with the posted form."""
        name = await self._known(req.field("queue"))
        handler = {
            "queue.pause": self._pause,
            "queue.resume": self._resume,
            "queue.retry-failed": self._retry_all,
            "queue.clean": self._clean,
            "job.retry": self._retry,
            "job.remove": self._remove,
        }.get(action)
        if handler is None:
            raise NotFound(f"no action {action!r}")
        return await handler(req, name)

    async def _pause(self, req: Request, name: str) -> Done:
        await self.qm.pause_queue(name)
        return Done(f"queue {name} paused: workers take no new jobs from it", f"queue {name}")

    async def _resume(self, req: Request, name: str) -> Done:
        await self.qm.resume_queue(name)
        return Done(f"queue {name} resumed", f"queue {name}")

    async def _retry_all(self, req: Request, name: str) -> Done | Confirm:
        target = f"queue {name} failed jobs"
        if req.field("confirm") != "yes":
            failed = (await self.qm.get_queue_stats(name))["failed"]
            return Confirm(
                "Retry all failed jobs",
                f"Re-queue {failed} failed job(s) of queue {name}?",
                target,
                {"queue": name},
            )
        n = await self.qm.retry_failed(name)
        return Done(f"{n} failed job(s) of queue {name} re-queued", target)

    async def _clean(self, req: Request, name: str) -> Done | Confirm:
        status = req.field("status")
        if status not in CLEANABLE:
            raise BadRequest(f"status must be one of {', '.join(CLEANABLE)}")
        target = f"queue {name} {status} jobs"
        if req.field("confirm") != "yes":
            count = (await self.qm.get_queue_stats(name))[status]
            question = f"Delete all {count} {status} job(s) of queue {name}? This cannot be undone."
            return Confirm("Clean a queue", question, target, {"queue": name, "status": status})
        removed = await self.qm.clean_queue(name, limit=0, status=status)  # type: ignore[arg-type]
        return Done(f"{len(removed)} {status} job(s) of queue {name} deleted", target)

    async def _retry(self, req: Request, name: str) -> Done:
        from kernel_queue import QueueError

        job_id = req.field("id")
        try:
            await self.qm.retry_failed(name, job_id)
        except QueueError as exc:
            return Done(f"job {job_id} not retried: {exc}", f"job {name}/{job_id}", ok=False)
        return Done(f"job {job_id} re-queued", f"job {name}/{job_id}")

    async def _remove(self, req: Request, name: str) -> Done:
        from kernel_queue import QueueError, remove_job

        job_id = req.field("id")
        try:
            removed = await remove_job(self.qm, name, job_id)
        except QueueError as exc:
            return Done(f"job {job_id} not removed: {exc}", f"job {name}/{job_id}", ok=False)
        if not removed:
            return Done(f"job {job_id} not removed: no such job", f"job {name}/{job_id}", ok=False)
        return Done(f"job {job_id} removed", f"job {name}/{job_id}")
