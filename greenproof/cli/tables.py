"""The tables every ``greenproof`` command prints: readable at 80 columns and when piped.

On a terminal a table is a rich table whose headers never wrap or shrink into
``aud…`` (each column is at least as wide as its header, key columns never wrap,
the rest fold their cells); when the output is not a terminal (``| cat``, a file,
a test's runner) it is plain text: a title line, a header line and one line per
row, the columns aligned and none ever cut, so ``grep`` and ``awk`` see whole
values.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Col:
    """One column: its (short) header, alignment, and whether it is a key that never wraps."""

    header: str
    justify: str = "left"  # "left" | "right"
    key: bool = False


def _plain_cell(cell: Any) -> str:
    from rich.text import Text

    if isinstance(cell, Text):
        return cell.plain
    return Text.from_markup(str(cell)).plain


def plain_lines(title: str | None, columns: Sequence[Col], rows: Sequence[Sequence[Any]], *,
                show_header: bool = True, caption: str | None = None) -> list[str]:
    """The table as aligned plain text, two spaces between columns, nothing cut."""
    cells = [[_plain_cell(c) for c in row] for row in rows]
    head = [c.header for c in columns] if show_header else None
    widths = [max([len(head[i]) if head else 0, *(len(r[i]) for r in cells)]) for i in range(len(columns))]

    def line(values: Sequence[str]) -> str:
        parts = [v.rjust(w) if col.justify == "right" else v.ljust(w)
                 for v, w, col in zip(values, widths, columns, strict=True)]
        return "  ".join(parts).rstrip()

    out = [title] if title else []
    if head:
        out.append(line(head))
        out.append("  ".join("-" * w for w in widths))
    out.extend(line(r) for r in cells)
    if caption:
        out.append(caption)
    return out


def rich_table(columns: Sequence[Col], rows: Sequence[Sequence[Any]], *, show_header: bool = True) -> Any:
    """A rich table that keeps its headers whole at 80 columns (see the module doc); its title
    and caption are printed as lines of their own, so that they never squeeze into its width."""
    from rich.table import Table

    # no vertical rules and one space between columns: ten columns' headers fit in 80
    table = Table(show_header=show_header, box=None, pad_edge=False, collapse_padding=True,
                  header_style="bold underline")
    for col in columns:
        table.add_column(col.header, justify=col.justify, no_wrap=col.key,  # type: ignore[arg-type]
                         overflow="ellipsis" if col.key else "fold",
                         min_width=max(len(w) for w in col.header.split()) if show_header else None)
    for row in rows:
        table.add_row(*(str(c) if isinstance(c, int) else c for c in row))
    return table


def _fits(console: Any, table: Any) -> bool:
    """Whether every column gets at least its header's width (else rich would drop columns)."""
    widths = table._calculate_column_widths(console, console.options.update_width(console.width))
    if sum(widths) > console.width:  # the widths include the padding between columns
        return False
    return all(w >= c.min_width for w, c in zip(widths, table.columns, strict=True) if c.min_width)


def print_table(title: str | None, columns: Sequence[Col], rows: Sequence[Sequence[Any]], *,
                show_header: bool = True, caption: str | None = None, console: Any = None) -> None:
    """Print a table: rich on a terminal wide enough for its headers, aligned plain text
    otherwise (a terminal too narrow soft-wraps whole lines: no column is dropped); a blank
    line after."""
    from rich.console import Console
    from rich.text import Text

    console = console or Console()
    table = rich_table(columns, rows, show_header=show_header) if console.is_terminal else None
    if table is not None and _fits(console, table):
        if title:
            console.print(Text(title, style="bold"))
        console.print(table)
        if caption:
            console.print(Text(caption, style="dim"))
        console.print()
    else:
        console.file.write("\n".join(plain_lines(title, columns, rows, show_header=show_header,
                                                 caption=caption)) + "\n\n")
