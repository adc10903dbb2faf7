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
    problems : list of CartKineticsError
        Every problem found when one error reports several (see :meth:`collected`); the
        error itself names the first.
    """

    #: how many problems one collected error lists
    MAX_LISTED = 50

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
        self.problems: list[CartKineticsError] = [self]
        self.detail = message
        where = []
        if source is not None:
            where.append(str(source))
        if row is not None:
            where.append(f"row {row}")
        if column is not None:
            where.append(f"column '{column}'")
        prefix = ", ".join(where)
        super().__init__(f"{prefix}: {message}" if prefix else message)


    @property
    def where(self) -> str:
        """``row R, column 'C'`` (what is known of the place), without the source."""
        parts = []
        if self.row is not None:
            parts.append(f"row {self.row}")
        if self.column is not None:
            parts.append(f"column '{self.column}'")
        return ", ".join(parts)

    @classmethod
    def collected(cls, problems: list[CartKineticsError], source: str | None) -> CartKineticsError:
        """One error listing several problems of one input (the first ``MAX_LISTED``)."""
        if len(problems) == 1:
            return problems[0]
        # in the order of the file, whatever pass of the reader found them
        problems = sorted(problems, key=lambda p: (p.row is None, p.row or 0))
        first = problems[0]
        shown = problems[: cls.MAX_LISTED]
        lines = [f"{len(problems)} problems (fix them all, then read again):"]
        lines += [f"  {p.where or '-'}: {p.detail}" for p in shown]
        if len(problems) > len(shown):
            lines.append(f"  ... and {len(problems) - len(shown)} more")
        err = cls("\n".join(lines), source=source)
        err.row, err.column = first.row, first.column
        err.problems = list(problems)
        return err


class SolverError(RuntimeError):
    """Raised only where a caller asked for an exception instead of a status code."""
