"""Read a table file as text cells, the way lab sheets and NONMEM files are really written.

One loader serves every reader of the library (kinetics, patient covariates, cohort
outcomes), so that a file that opens for one opens for all:

* **Excel** (``.xlsx``, ``.xlsm``): the first sheet, or ``sheet=``, read with openpyxl;
* **text**: the separator is detected from the header line -- comma, semicolon, tab, or runs of
  spaces (the layout NONMEM writes in its ``$TABLE`` output). A ``TABLE NO. n`` banner line
  before the header is skipped, and a header written with a leading ``#`` (NONMEM's
  ``IGNORE=#`` convention) is read without it. A preamble above the header is skipped and a
  note says so: ``#`` comment lines (``# Lab export ...``) when the line after them looks like
  a header (column names, no numbers) or one of them is the ``#ID TIME DV`` header, and title
  lines followed by a blank line when the line after the blank has more column names. A
  title line directly above the header is refused, naming it. In a semicolon-separated file
  numbers written with a decimal comma (``12,5``) are read as ``12.5`` and the loader says so.
* **comment records**: a data line whose first field starts with ``#`` or ``@`` (NONMEM's
  ``IGNORE=#`` / ``IGNORE=@``) is not data; it is returned as a comment with its row number so
  that the caller can account for it.

Every cell stays text (``"<50"``, ``"BLQ"`` and ``"01"`` survive); blank lines are skipped but
keep their place in the row numbering. Row numbers are 1-based data rows counted from the line
after the header (the header is row 0), as a spreadsheet user counts data lines.
"""

from __future__ import annotations

import csv
import io
import re
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from cartkinetics.errors import CartKineticsError

EXCEL_SUFFIXES = (".xlsx", ".xlsm")
_SEPARATOR_NAMES = {",": "comma", ";": "semicolon", "\t": "tab", " ": "whitespace"}
_DECIMAL_COMMA = re.compile(r"^[+-]?\d+,\d+(?:[eE][+-]?\d+)?$")
_THOUSANDS = re.compile(r"^[+-]?\d{1,3}(?:,\d{3})+(?:\.\d+)?$")


@dataclass
class Table:
    """Cells of a table file as text.

    Attributes
    ----------
    frame : DataFrame
        One row per data record (comment records and blank lines left out), all cells str.
    rows : list of int
        1-based data-row number of each frame row (header = row 0).
    comments : list of (row, text)
        Comment records (first field starting with ``#`` or ``@``).
    separator : str
        ``comma``, ``semicolon``, ``tab``, ``whitespace``, ``excel`` or ``DataFrame``.
    notes : list of str
        What the loader decided that the cells alone do not show.
    source : str
        File name, or ``<DataFrame>``.
    """

    frame: pd.DataFrame
    rows: list[int]
    comments: list[tuple[int, str]] = field(default_factory=list)
    separator: str = "comma"
    notes: list[str] = field(default_factory=list)
    source: str = "<DataFrame>"


def read_table(source: str | Path | pd.DataFrame, *, sheet: str | int | None = None) -> Table:
    """Load a CSV/TSV/whitespace/Excel file (or take a DataFrame) as text cells.

    Parameters
    ----------
    source : path or DataFrame
    sheet : str or int, optional
        Excel sheet name or 0-based index (default: the first sheet).

    Raises
    ------
    CartKineticsError
        No such file, an unreadable file, no header, or a data line with a different number
        of fields than the header (naming its row).
    """
    if isinstance(source, pd.DataFrame):
        frame = source.reset_index(drop=True)
        return Table(frame, list(range(1, len(frame) + 1)), separator="DataFrame")
    src = str(source)
    path = Path(source)
    if not path.is_file():
        raise CartKineticsError(f"no such file: {path}", source=src)
    if path.suffix.lower() in EXCEL_SUFFIXES:
        return _read_excel(path, src, sheet)
    if path.suffix.lower() == ".xls":
        raise CartKineticsError(
            "legacy .xls workbooks are not read: save the sheet as .xlsx or .csv", source=src
        )
    raw = path.read_bytes()
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError:
        try:
            text = raw.decode("cp1252")  # Excel's "CSV" on Windows (µ as 0xB5)
        except UnicodeDecodeError as exc:  # pragma: no cover - cp1252 decodes almost anything
            raise CartKineticsError(f"cannot read as text: {exc}", source=src) from exc
    return _read_text(text, src)


def _read_excel(path: Path, src: str, sheet: str | int | None) -> Table:
    try:
        grid = pd.read_excel(
            path, sheet_name=0 if sheet is None else sheet, header=None, dtype=str,
            keep_default_na=False, engine="openpyxl",
        )
    except (ValueError, KeyError, OSError) as exc:
        raise CartKineticsError(
            f"cannot read the Excel sheet {sheet!r}: {exc}", source=src
        ) from exc
    grid = grid.fillna("")
    cells = [[str(v).strip() for v in row] for row in grid.itertuples(index=False)]
    lines = [(i, row) for i, row in enumerate(cells) if any(c != "" for c in row)]
    if not lines:
        raise CartKineticsError("the sheet is empty", source=src)
    notes = [f"read {'sheet ' + repr(sheet) if sheet is not None else 'the first sheet'} "
             "of the workbook"]
    # title rows above the header (one filled cell each, above a row of two or more column
    # names and no number): skipped, and said
    top = 0
    while top + 1 < len(lines) and sum(c != "" for c in lines[top][1]) == 1:
        top += 1
    names = [c for c in lines[top][1] if c != ""]
    if top + 1 >= len(lines) or len(names) < 2 or any(map(_is_number, names)):
        top = 0
    if top:
        shown = "; ".join(f"row {i + 1} {_shown(' '.join(c for c in r if c))}"
                          for i, r in lines[:top])
        notes.append(f"skipped {top} title row(s) above the header ({shown}); the header is "
                     f"sheet row {lines[top][0] + 1}")
        lines = lines[top:]
    h_index, header = lines[0]
    width = max((j + 1 for j, c in enumerate(header) if c != ""), default=0)
    header = [c.lstrip("#").strip() if j == 0 else c for j, c in enumerate(header[:width])]
    records, rows, comments = [], [], []
    for i, row in lines[1:]:
        rownum = i - h_index
        if row[0].startswith(("#", "@")):
            comments.append((rownum, " ".join(c for c in row if c)))
            continue
        if any(c != "" for c in row[width:]):
            raise CartKineticsError(
                f"the row has cells beyond the header's {width} columns", source=src, row=rownum
            )
        records.append(row[:width])
        rows.append(rownum)
    frame = pd.DataFrame(records, columns=_unique_header(header, src), dtype=str)
    return Table(frame, rows, comments, "excel", notes, src)


def _unique_header(header: list[str], src: str) -> list[str]:
    seen: dict[str, int] = {}
    for j, h in enumerate(header):
        if h == "":
            raise CartKineticsError(f"header cell {j + 1} is empty", source=src, row=0)
        key = h.lower()
        if key in seen:
            raise CartKineticsError(
                f"column {h!r} appears twice in the header (columns {seen[key] + 1} and "
                f"{j + 1}; names are case-insensitive)",
                source=src, row=0, column=h,
            )
        seen[key] = j
    return header


def _detect_separator(header: str) -> str:
    if "\t" in header:
        return "\t"
    counts = {s: header.count(s) for s in (",", ";")}
    if counts[";"] > counts[","]:
        return ";"
    if counts[","] > 0:
        return ","
    return " " if len(header.split()) > 1 else ","


def _split(line: str, sep: str) -> list[str]:
    if sep == " ":
        return line.split()
    return next(csv.reader(io.StringIO(line), delimiter=sep, skipinitialspace=True), [])


_BANNER = re.compile(r"^\s*TABLE\s+NO\.", flags=re.IGNORECASE)


def _fields(line: str, sep: str | None = None) -> list[str]:
    """Cells of a line (separator detected from the line itself unless given)."""
    line = line.strip().lstrip("#").strip()
    return [c.strip() for c in _split(line, sep or _detect_separator(line))]


def _is_number(cell: str) -> bool:
    try:
        float(cell.replace(",", "."))
    except ValueError:
        return False
    return True


def _looks_like_header(line: str) -> bool:
    """Two or more non-empty cells, none of them a number (column names, not data)."""
    cells = _fields(line)
    return len(cells) > 1 and all(c and not _is_number(c) for c in cells)


def _next_nonblank(lines: list[str], k: int) -> int:
    while k < len(lines) and not lines[k].strip():
        k += 1
    return k


def _shown(line: str, limit: int = 60) -> str:
    text = line.strip()
    return repr(text if len(text) <= limit else text[: limit - 3] + "...")


def _find_header(lines: list[str], k: int, notes: list[str]) -> int:
    """Index of the header line, skipping a preamble above it (and saying so in ``notes``).

    * title lines (not starting with ``#``) followed by a blank line, when the next line looks
      like a header (column names, no numbers) with more cells than each title line;
    * ``#`` comment lines above the header, when none of them can be the header itself: a
      header may be written ``#ID TIME DV`` (NONMEM ``IGNORE=#``), recognised as the first
      ``#`` line with as many cells as the first line after the ``#`` block and no number.
    """
    k = _next_nonblank(lines, k)
    if k >= len(lines):
        return k
    # title block: lines up to the first blank line
    if not lines[k].lstrip().startswith("#"):
        end = k
        while end < len(lines) and lines[end].strip():
            end += 1
        nxt = _next_nonblank(lines, end)
        if end > k and nxt < len(lines) and nxt > end and _looks_like_header(lines[nxt]) \
                and not lines[nxt].lstrip().startswith("#"):
            width = len(_fields(lines[nxt]))
            sep = _detect_separator(lines[nxt].strip())
            if all(len(_fields(lines[i], sep)) < width for i in range(k, end)):
                shown = "; ".join(f"line {i + 1} {_shown(lines[i])}" for i in range(k, end))
                notes.append(f"skipped {end - k} title line(s) above the header ({shown}); "
                             f"the header is line {nxt + 1}")
                return nxt
        return k
    # '#' block: comment lines above the header, or the header itself (#ID TIME DV)
    block = []
    j = k
    while j < len(lines) and (not lines[j].strip() or lines[j].lstrip().startswith(("#", "@"))):
        if lines[j].strip():
            block.append(j)
        j += 1
    if j >= len(lines):
        return k
    width = len(_fields(lines[j]))
    for i in block:
        if lines[i].lstrip().startswith("@"):
            continue  # a comment record (IGNORE=@), never the header
        cells = _fields(lines[i])
        if len(cells) == width and all(c and not _is_number(c) for c in cells):
            header = i  # '#ID TIME DV': read without the '#'
            break
    else:
        if not _looks_like_header(lines[j]):
            return k  # no header in sight: the first line is read as it (and refused)
        header = j
    skipped = [i for i in block if i < header]
    if skipped:
        shown = "; ".join(f"line {i + 1} {_shown(lines[i])}" for i in skipped[:3])
        notes.append(f"skipped {len(skipped)} comment line(s) starting with '#' above the "
                     f"header ({shown}{' ...' if len(skipped) > 3 else ''}); the header is "
                     f"line {header + 1}")
    return header


def _read_text(text: str, src: str) -> Table:
    lines = text.splitlines()
    notes: list[str] = []
    k = _next_nonblank(lines, 0)
    if k < len(lines) and _BANNER.match(lines[k]):
        notes.append(f"skipped the NONMEM banner line {lines[k].strip()!r}")
        k += 1
    k = _find_header(lines, k, notes)
    if k >= len(lines):
        raise CartKineticsError("no header line (the file is empty)", source=src)
    header_line = lines[k].strip()
    if header_line.startswith("#"):
        header_line = header_line.lstrip("#").strip()
        notes.append("header written with a leading '#' (NONMEM IGNORE=#): read without it")
    sep = _detect_separator(header_line)
    header = [h.strip() for h in _split(header_line, sep)]
    header = _unique_header(header, src)
    if sep != ",":
        notes.append(f"fields separated by {_SEPARATOR_NAMES[sep]}s")
    records, rows, comments = [], [], []
    repeated: list[int] = []
    for idx in range(k + 1, len(lines)):
        line = lines[idx]
        rownum = idx - k
        if not line.strip():
            continue
        if _BANNER.match(line) or [c.strip() for c in _split(
                line.strip().lstrip("#").strip(), sep)] == header:
            # NONMEM repeats the banner and the header every 900 records (no ONEHEADER)
            repeated.append(rownum)
            continue
        if line.lstrip().startswith(("#", "@")):
            comments.append((rownum, line.strip()))
            continue
        cells = [c.strip() for c in _split(line, sep)]
        if len(cells) < len(header) and sep != " ":
            cells += [""] * (len(header) - len(cells))  # trailing empty cells left out
        if len(cells) != len(header) and not records and _looks_like_header(line) and (
                len(_fields(line)) > len(header) or _detect_separator(line.strip()) != sep):
            raise CartKineticsError(
                f"line {k + 1} {_shown(lines[k])} was read as the header, but line {idx + 1} "
                f"looks like the header ({len(_fields(line))} column names): remove the title "
                "lines above the header",
                source=src, row=rownum,
            )
        if len(cells) != len(header):
            raise CartKineticsError(
                f"the line has {len(cells)} fields but the header has {len(header)} "
                f"({_SEPARATOR_NAMES[sep]}-separated)",
                source=src, row=rownum,
            )
        records.append(cells)
        rows.append(rownum)
    if repeated:
        shown = ", ".join(str(r) for r in repeated[:10]) + (" ..." if len(repeated) > 10 else "")
        notes.append(f"skipped {len(repeated)} repeated NONMEM banner/header line(s) "
                     f"(TABLE NO. n, column names; no ONEHEADER): row(s) {shown}")
    frame = pd.DataFrame(records, columns=header, dtype=str)
    if sep == ";" and len(frame):
        n = 0
        for c in frame.columns:
            hit = frame[c].str.match(_DECIMAL_COMMA)
            if hit.any():
                frame.loc[hit, c] = frame.loc[hit, c].str.replace(",", ".", regex=False)
                n += int(hit.sum())
        if n:
            notes.append(f"{n} numbers written with a decimal comma (semicolon-separated file) "
                         "read with a decimal point")
    elif len(frame):
        for c in frame.columns:
            hit = frame[c].str.match(_DECIMAL_COMMA) | frame[c].str.match(_THOUSANDS)
            if hit.any() and sep != ",":
                i = int(hit.to_numpy().nonzero()[0][0])
                raise CartKineticsError(
                    f"{frame[c].iloc[i]!r} has a comma inside a number: a decimal comma or a "
                    "thousands separator? Write numbers with a decimal point and no grouping",
                    source=src, row=rows[i], column=str(c),
                )
    return Table(frame, rows, comments, _SEPARATOR_NAMES[sep], notes, src)
