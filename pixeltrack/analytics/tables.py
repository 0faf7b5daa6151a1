"""Rows on a terminal: a table when it fits the width, else one record per block, every value shown."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from rich.console import Console
from rich.measure import Measurement
from rich.table import Table
from rich.text import Text

_CONTROL = {c: f"\\x{c:02x}" for c in (*range(0x20), *range(0x7f, 0xa0)) if c not in (0x09,)}


def printable(text: str) -> str:
    """`text` with C0 and C1 control characters (ESC among them) written as \\xNN."""
    return text.translate(_CONTROL)


def _cell(value: Any) -> Text:
    # Text, not markup: a user agent or a path is the internet's to choose ("[/]" would raise, and
    # "[link=…]" would print a hyperlink); control characters are shown, not sent to the terminal.
    return Text(printable("NULL" if value is None else str(value)))


def wide_table(columns: Sequence[str], rows: Sequence[Sequence[Any]], title: str = "",
               right: Sequence[bool] = ()) -> Table:
    """One rich Table of the rows, every cell as text (`right[i]`: column i right-aligned)."""
    table = Table(title=Text(title) if title else None, title_justify="left")
    for i, c in enumerate(columns):
        table.add_column(_cell(c), justify="right" if i < len(right) and right[i] else "left")
    for row in rows:
        table.add_row(*(_cell(v) for v in row))
    return table


def records(columns: Sequence[str], rows: Sequence[Sequence[Any]], title: str = "") -> list[Table]:
    """Each row as a block of `column │ value` lines; long values wrap, nothing is cut."""
    blocks: list[Table] = []
    for n, row in enumerate(rows, 1):
        heading = f"{title} · row {n} of {len(rows)}" if title else f"row {n} of {len(rows)}"
        block = Table(title=Text(heading), title_justify="left", show_header=False, expand=False,
                      show_edge=False, pad_edge=False, box=None)
        block.add_column(style="bold", no_wrap=True, max_width=32, overflow="fold")
        block.add_column(overflow="fold")
        for c, v in zip(columns, row, strict=True):
            block.add_row(_cell(c), _cell(v))
        blocks.append(block)
    return blocks


def fits(console: Console, table: Table) -> bool:
    """Whether `table` shows at the console's width with no cell wrapped or cut."""
    unbounded = console.options.update_width(1 << 20)
    return Measurement.get(console, unbounded, table).maximum <= console.width


def print_rows(columns: Sequence[str], rows: Sequence[Sequence[Any]], console: Console | None = None,
               title: str = "", right: Sequence[bool] = ()) -> None:
    """A table at the console's width when it fits, else a vertical block per row (psql's \\x)."""
    console = console if console is not None else Console()
    table = wide_table(columns, rows, title, right)
    if fits(console, table):
        console.print(table)
        return
    if not rows:
        console.print(Text(printable("no rows; columns: " + ", ".join(columns))))
        return
    for block in records(columns, rows, title):
        console.print(block)
        console.print()
