"""Output helpers for commands (the kernel's and plugins'): plain-text tables and a progress bar.

Deliberately tiny and dependency-free: the CLI must start fast (a table library costs more import
time than these lines: ``rich.table`` ~70 ms), and the output stays plain text that scripts and
tests can read.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from typing import TextIO

__all__ = ["ProgressBar", "print_table"]


def print_table(rows: Sequence[Sequence[str]], out: TextIO | None = None, *, rule: bool = True) -> None:
    """Print ``rows`` (the first is the header) as left-aligned columns two spaces apart.

    ``rule`` draws a line of dashes under the header. Trailing spaces are stripped.
    """
    if not rows:
        return
    out = out if out is not None else sys.stdout
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    for n, row in enumerate(rows):
        print("  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip(), file=out)
        if n == 0 and rule:
            print("  ".join("-" * w for w in widths), file=out)


class ProgressBar:
    """A ``progress(done, total)`` callback: one bar redrawn in place on a terminal, lines otherwise.

    On a terminal: ``<label> [#####.....] done/total (pct%)``, ended with a newline when
    ``done`` reaches ``total`` (or by :meth:`close`). Not on a terminal (a pipe, a log), each
    update is a line: the same one, or without the bar when ``piped_bar`` is false; with
    ``piped_step`` > 0 only when the percentage crosses a multiple of it, and at the end.
    """

    def __init__(
        self,
        label: str,
        out: TextIO | None = None,
        *,
        width: int = 30,
        piped_bar: bool = True,
        piped_step: int = 0,
    ) -> None:
        self.label, self.out, self.width = label, out if out is not None else sys.stderr, width
        self.piped_bar, self.piped_step = piped_bar, piped_step
        self.tty = self.out.isatty()
        self._last_pct = -1
        self._open = False  # a terminal line is drawn and not yet ended

    def __call__(self, done: int, total: int) -> None:
        """Show ``done`` of ``total`` (``total`` 0 counts as complete)."""
        pct = 100 if total <= 0 else done * 100 // total
        filled = self.width if total <= 0 else min(self.width, done * self.width // total)
        bar = f"[{'#' * filled}{'.' * (self.width - filled)}] "
        finished = done >= total
        if self.tty:
            self.out.write(f"\r{self.label} {bar}{done}/{total} ({pct}%)" + ("\n" if finished else ""))
            self._open = not finished
        elif self.piped_step <= 0 or finished or pct // self.piped_step != self._last_pct // self.piped_step:
            shown = bar if self.piped_bar else ""
            self.out.write(f"{self.label} {shown}{done}/{total} ({pct}%)\n")
        self._last_pct = pct
        self.out.flush()

    def close(self) -> None:
        """End a terminal line left open (the work stopped before ``done`` reached ``total``)."""
        if self._open:
            self.out.write("\n")
            self.out.flush()
            self._open = False
