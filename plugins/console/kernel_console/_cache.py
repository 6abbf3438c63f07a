"""Cache: namespaces with their counters and hit ratio; invalidate a key, a literal prefix or a glob
(with a count of the matching keys before the confirmation)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from ._html import Safe, h, join, table
from ._http import BadRequest, Confirm, Done, Page, PageHandler, Request

if TYPE_CHECKING:
    from kernel_cache import CacheManager

MODES = {"key": "exact key", "prefix": "keys starting with (literal)", "glob": "glob pattern (* ? [...])"}


class CacheSection:
    """The ``cache`` page and its invalidation action, on the cache plugin's ``CacheManager``."""

    key = "cache"
    actions = frozenset({"cache.invalidate"})

    def __init__(self, manager: CacheManager) -> None:
        self.cache = manager

    def pages(self) -> dict[str, PageHandler]:
        """``/cache``."""
        return {"/cache": self.index}

    async def index(self, req: Request) -> Page:
        """Every namespace this process used, with its counters since start."""
        stats = sorted(self.cache.all_stats().values(), key=lambda s: s.namespace)
        rows = [
            [s.namespace, s.hits, s.misses, f"{s.hit_rate:.1%}", s.sets, s.deletes, s.errors] for s in stats
        ]
        options = join(h('<option value="{v}">{t}</option>', v=v, t=t) for v, t in MODES.items())
        namespaces = join(h('<option value="{n}">{n}</option>', n=s.namespace) for s in stats)
        extra = h(
            '<label>namespace <select name="namespace">{ns}</select></label> <label>match '
            '<select name="mode">{options}</select></label> <label>key or pattern '
            '<input name="pattern" required></label> ',
            ns=namespaces,
            options=options,
        )
        invalidate = (
            req.post("cache.invalidate", "invalidate", danger=True, extra=extra) if stats else Safe("")
        )
        body = h(
            "<p>Counters of this process since it started (hit ratio = hits / (hits + misses)).</p>{table}"
            "<h2>Invalidate</h2><p>Deletes keys of one namespace only; a prefix is taken literally, a glob's "
            "<code>*</code>, <code>?</code> and <code>[...]</code> are wildcards. Asks for confirmation.</p>"
            "{invalidate}",
            table=table(
                ["namespace", "hits", "misses", "hit ratio", "sets", "deletes", "errors"],
                rows,
                empty="no cache namespace used in this process yet",
            ),
            invalidate=invalidate,
        )
        return Page("Cache", body, self.key)

    async def act(self, req: Request, action: str) -> Done | Confirm:
        """``cache.invalidate``: namespace, mode (key, prefix, glob), pattern; confirmed."""
        name, mode, pattern = req.field("namespace"), req.field("mode"), req.field("pattern")
        if name not in self.cache.all_stats():
            raise BadRequest(f"no cache namespace {name!r} in this process")
        if mode not in MODES or not pattern:
            raise BadRequest(f"mode must be one of {', '.join(MODES)} and the pattern non-empty")
        target = f"cache {name} {mode} {pattern!r}"
        if req.field("confirm") != "yes":
            question = (
                f"{await self._preview(name, mode, pattern)}. "
                f"Delete the keys of namespace {name} matching {MODES[mode]} {pattern!r}?"
            )
            return Confirm(
                "Invalidate cache keys",
                question,
                target,
                {"namespace": name, "mode": mode, "pattern": pattern},
            )
        ns = self.cache.namespace(name)
        if mode == "key":
            n = int(await ns.delete(pattern))
        elif mode == "prefix":
            n = await ns.invalidate_prefix(pattern)
        else:
            n = await ns.invalidate(pattern)
        return Done(f"{n} key(s) of namespace {name} deleted", target)

    async def _preview(self, name: str, mode: str, pattern: str) -> str:
        """How many keys the invalidation would delete now, counted as it would match them."""
        from kernel_cache import glob_escape

        ns = self.cache.namespace(name)
        if mode == "key":  # escaped: the exact key only (``has`` would say False on an outage)
            n = await ns.count_matching(glob_escape(pattern))
        elif mode == "prefix":
            n = await ns.count_prefix(pattern)
        else:
            n = await ns.count_matching(pattern)
        if n is None:
            return "The number of matching keys is unknown (the cache backend is unreachable)"
        return f"{n} key{'' if n == 1 else 's'} match{'es' if n == 1 else ''} now"
