"""The shared command helpers: tables, the progress bar and ``"module:attribute"`` imports."""

from __future__ import annotations

import io

import pytest

from kernel.config import import_object
from kernel.console import ProgressBar, print_table


class Terminal(io.StringIO):
    """A stream that says it is a terminal."""

    def isatty(self) -> bool:
        return True


def test_table_aligns_columns_with_a_rule_under_the_header() -> None:
    out = io.StringIO()
    print_table([["name", "n"], ["alpha", "1"], ["b", "22"]], out)
    assert out.getvalue().splitlines() == ["name   n", "-----  --", "alpha  1", "b      22"]


def test_table_without_rule_and_nothing_for_no_rows() -> None:
    out = io.StringIO()
    print_table([["q", "waiting"], ["emails", "3"]], out, rule=False)
    print_table([], out)
    assert out.getvalue().splitlines() == ["q       waiting", "emails  3"]


def test_progress_bar_piped_prints_a_line_per_update() -> None:
    out = io.StringIO()
    bar = ProgressBar("people -> v3:", out, width=4)
    bar(0, 2)
    bar(1, 2)
    bar(2, 2)
    bar.close()
    assert out.getvalue().splitlines() == [
        "people -> v3: [....] 0/2 (0%)",
        "people -> v3: [##..] 1/2 (50%)",
        "people -> v3: [####] 2/2 (100%)",
    ]


def test_progress_bar_piped_in_steps_without_the_bar() -> None:
    out = io.StringIO()
    bar = ProgressBar("replaying", out, piped_bar=False, piped_step=50)
    for done in range(1, 11):
        bar(done, 10)
    lines = ["replaying 1/10 (10%)", "replaying 5/10 (50%)", "replaying 10/10 (100%)"]
    assert out.getvalue().splitlines() == lines


def test_progress_bar_on_a_terminal_redraws_one_line() -> None:
    out = Terminal()
    bar = ProgressBar("replaying", out, width=2)
    bar(1, 2)
    bar.close()  # stopped early: close ends the line
    bar(2, 2)  # a finished bar ends its own line; close adds nothing more
    bar.close()
    assert out.getvalue() == "\rreplaying [#.] 1/2 (50%)\n\rreplaying [##] 2/2 (100%)\n"


def test_progress_bar_total_zero_is_complete() -> None:
    out = io.StringIO()
    ProgressBar("empty", out, width=2)(0, 0)
    assert out.getvalue() == "empty [##] 0/0 (100%)\n"


def test_import_object_imports_module_attribute() -> None:
    assert import_object("kernel.console:print_table") is print_table


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ("no_colon", "expected 'module:function', got 'no_colon'"),
        (":attr", "expected 'module:function'"),
        ("no_such_module_x:f", "cannot import 'no_such_module_x:f': No module named 'no_such_module_x'"),
        ("kernel.console:missing", "cannot import 'kernel.console:missing'"),
    ],
)
def test_import_object_names_the_bad_spec(spec: str, message: str) -> None:
    with pytest.raises(ValueError, match="^" + message.replace("(", r"\(")) as info:
        import_object(spec, expects="function")
    assert spec in str(info.value)
