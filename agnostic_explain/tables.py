"""Name-indexed rows and aligned text tables, shared by the layer, weight and activation summaries."""

from __future__ import annotations

__all__ = ["NamedRows", "format_shape", "text_table"]


class NamedRows:
    """Mixin for a frozen dataclass whose field ``_rows`` holds rows that have a ``name``.

    Iterating yields the rows; ``table[i]`` picks by position, ``table["name"]`` by name.
    """

    _rows = "rows"

    def _all(self) -> tuple:
        return getattr(self, self._rows)

    def __iter__(self):
        return iter(self._all())

    def __len__(self) -> int:
        return len(self._all())

    def __contains__(self, name) -> bool:
        return any(row.name == name for row in self._all())

    def __getitem__(self, key):
        if isinstance(key, str):
            for row in self._all():
                if row.name == key:
                    return row
            raise KeyError(key)
        return self._all()[key]


def text_table(rows: list, *, right=()) -> list[str]:
    """Lines of an aligned table: the header row, a rule, then the rows.

    Columns whose index is in ``right`` are right-aligned, so that digits line up.

    >>> print("\\n".join(text_table([("name", "size"), ("a", "10"), ("bcd", "2")], right={1})))
    name  size
    ----  ----
    a       10
    bcd      2
    """
    widths = [max(len(row[column]) for row in rows) for column in range(len(rows[0]))]

    def line(cells) -> str:
        return "  ".join(
            cell.rjust(width) if column in right else cell.ljust(width)
            for column, (cell, width) in enumerate(zip(cells, widths))
        ).rstrip()

    lines = [line(row) for row in rows]
    lines.insert(1, "  ".join("-" * width for width in widths))
    return lines


def format_shape(shape) -> str:
    """``(batch,3,224,224)``; ``?`` for an unknown dimension or rank."""
    if shape is None:
        return "?"
    return "(" + ",".join("?" if dim is None else str(dim) for dim in shape) + ")"
