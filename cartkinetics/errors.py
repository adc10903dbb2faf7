"""The library's one exception type for bad input."""

from __future__ import annotations


class CartKineticsError(ValueError):
    """Bad input: names the source (file), the row and the column where possible.

    Attributes
    ----------
    source : str or None
        File path or ``"<DataFrame>"``.
    row : int or None
        1-based data row (the header is row 0, as a spreadsheet user counts data lines).
    column : str or None
        Column name as written in the input.
    """

    def __init__(
        self,
        message: str,
        *,
        source: str | None = None,
        row: int | None = None,
        column: str | None = None,
    ) -> None:
        self.source = source
        self.row = row
        self.column = column
        where = []
        if source is not None:
            where.append(str(source))
        if row is not None:
            where.append(f"row {row}")
        if column is not None:
            where.append(f"column '{column}'")
        prefix = ", ".join(where)
        super().__init__(f"{prefix}: {message}" if prefix else message)


class SolverError(RuntimeError):
    """Raised only where a caller asked for an exception instead of a status code."""
