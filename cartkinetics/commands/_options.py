"""The command-line grammar shared by every subcommand, defined once.

- the data file is the first positional argument; the reading options (``--mapping``,
  ``--assay``, ``--lloq``, ``--patients``) mean the same everywhere (:func:`add_read_arguments`,
  :func:`read_from_args`);
- ``--out DIR`` is always a folder (:func:`out_dir`);
- ``--json`` prints exactly one JSON document to stdout (:func:`print_json`); notes,
  warnings and progress go to stderr;
- ``--workers N | --scheduler ADDR`` wherever there is parallel work
  (:func:`add_cluster_arguments`);
- ``--quiet`` silences the progress bars (:func:`progress`, :func:`step`), which appear on
  stderr (when it is a terminal) for every step that takes more than ~2 s;
- negative numbers are values, not options (``--dose-per-kg -1e6`` reaches validation,
  which rejects it with a message): :class:`Parser`;
- an old spelling of an option keeps working, with a warning on stderr
  (:func:`add_deprecated_alias`, :func:`resolve_deprecated`).
"""

from __future__ import annotations

import argparse
import contextlib
import re
import sys
import threading
import time
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

#: seconds a step runs before its progress indicator appears
PROGRESS_DELAY = 2.0

# a number, or a comma-separated list of numbers, with an optional exponent: -1e6, -0.5,
# -1e6,-2e6 (argparse's own pattern knows neither exponents nor lists)
_NEGATIVE_NUMBER = re.compile(
    r"^-(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?(?:,-?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?)*$"
)


class Parser(argparse.ArgumentParser):
    """ArgumentParser that reads ``-1e6`` (and ``-1e6,-2e6``) as a value, not an option.

    argparse takes any ``-`` word that is not a plain ``-1``/``-1.5`` for an option, so
    ``--dose-per-kg -1e6`` failed with "expected one argument" instead of reaching the
    validation that says why a negative dose is wrong. Subparsers inherit the class.
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._negative_number_matcher = _NEGATIVE_NUMBER


# ----------------------------------------------------------------- reading the data
def add_read_arguments(
    parser: argparse.ArgumentParser,
    *,
    positional: bool = True,
    required: bool = True,
    patients: bool = True,
) -> None:
    """Add the data file (positional) and the options that say how to read it.

    Parameters
    ----------
    parser : argparse.ArgumentParser
    positional : bool
        Add the ``KINETICS.csv`` positional (False when the command's positional is another
        file and the kinetics come with ``--kinetics``, as in ``endpoints``).
    required : bool
        False while a deprecated option spelling may supply the file instead.
    patients : bool
        Add ``--patients PATIENTS.csv``.
    """
    if positional:
        parser.add_argument(
            "kinetics",
            metavar="KINETICS.csv",
            nargs=None if required else "?",
            help="kinetics file: native long format or NONMEM/Monolix layout",
        )
    parser.add_argument(
        "--mapping",
        metavar="JSON",
        help="column mapping and reading options, a JSON file or object, e.g. "
        '\'{"columns": {"TIME": "time", "DV": "y"}, "filter": {"y_ID": 1}, '
        '"blq_values": {"0.2": 0.2}, "assay": "qpcr"}\'',
    )
    parser.add_argument(
        "--assay",
        help="assay of every row when the file has no assay column "
        "(qpcr or flow); with several assays: the one to analyse",
    )
    parser.add_argument("--lloq",
                        help="limit of quantification for rows without one: a number in the "
                        "levels' unit, or with its unit, e.g. '50 copies/ug'")
    parser.add_argument("--sheet", help="Excel sheet (name or 0-based index; default the first)")
    parser.add_argument("--missing", choices=("exclude", "error", "blq"), default="exclude",
                        help="a blank value: exclude the row (default, counted with its "
                        "reason), refuse the file, or read it as below the row's LLOQ")
    if patients:
        parser.add_argument("--patients", metavar="PATIENTS.csv",
                            help="patient covariate table, one row per patient")


def reading_options_given(args: argparse.Namespace) -> bool:
    """True when any of ``--mapping``, ``--assay``, ``--lloq``, ``--sheet`` was given."""
    return any(getattr(args, k, None) is not None for k in ("mapping", "assay", "lloq", "sheet"))


def read_from_args(
    args: argparse.Namespace, path: str | None = None, *, announce: bool = True
) -> Any:
    """KineticsData read from ``path`` (default ``args.kinetics``) with the shared options.

    With ``announce`` (default) what was read is printed to stderr (``KineticsData.describe``:
    rows used, censored and excluded with their reasons, and the notes, such as levels
    converted to another unit), unless ``--quiet``: a command whose output does not show the
    row accounting still says what it did to the rows, and ``--json`` keeps stdout one JSON
    document.
    """
    from cartkinetics.data import load_mapping, read_kinetics

    mapping = load_mapping(args.mapping) if getattr(args, "mapping", None) else None
    sheet = getattr(args, "sheet", None)
    if sheet is not None and str(sheet).isdigit():
        sheet = int(sheet)
    data = read_kinetics(
        args.kinetics if path is None else path, mapping=mapping,
        assay=getattr(args, "assay", None), lloq=getattr(args, "lloq", None),
        patients=getattr(args, "patients", None), sheet=sheet,
        missing=getattr(args, "missing", None) or "exclude",
    )
    if announce and not getattr(args, "quiet", False):
        print(data.describe(), file=sys.stderr)
    return data


def selected_assay(data: Any, args: argparse.Namespace) -> str | None:
    """The ``--assay`` asked for (lower case), checked against the series read; None if unset.

    Raises CartKineticsError when the file holds no series of that assay, rather than
    printing an empty table or analysing another assay.
    """
    from cartkinetics.errors import CartKineticsError

    if args.assay is None:
        return None
    obs = data.observations
    present = sorted(obs.loc[obs["status"] != "excluded", "assay"].unique())
    assay = str(args.assay).strip().lower()
    if assay not in present:
        raise CartKineticsError(
            f"no {args.assay} series in the file: it holds {present}", source=args.kinetics
        )
    return assay


# ------------------------------------------------------------ deprecated spellings
def add_deprecated_alias(parser: argparse.ArgumentParser, flag: str, dest: str, **kw: Any) -> None:
    """Accept an old option spelling (hidden from ``--help``); see :func:`resolve_deprecated`."""
    parser.add_argument(flag, dest=f"_deprecated_{dest}", help=argparse.SUPPRESS, **kw)


def resolve_deprecated(args: argparse.Namespace, dest: str, flag: str, new: str) -> None:
    """Move the value of a deprecated spelling into ``args.<dest>``, warning on stderr.

    Raises CartKineticsError when both spellings are given with different values.
    """
    from cartkinetics.errors import CartKineticsError

    old = getattr(args, f"_deprecated_{dest}", None)
    if old is None:
        return
    current = getattr(args, dest, None)
    if current not in (None, False) and current != old:
        raise CartKineticsError(f"{flag} {old} and {new} {current} disagree: give {new} only")
    print(f"warning: {flag} is deprecated; use {new}", file=sys.stderr)
    setattr(args, dest, old)


# ----------------------------------------------------------------------- output
def add_out_argument(parser: argparse.ArgumentParser, what: str, default: str | None = None
                     ) -> None:
    """``--out DIR``: the folder to write ``what`` into (created when missing)."""
    extra = f"; default ./{default}" if default else ""
    parser.add_argument("--out", metavar="DIR", default=default,
                        help=f"output folder (created when missing{extra}): {what}")


def out_dir(args: argparse.Namespace) -> Path | None:
    """The ``--out`` folder, created; None without ``--out``.

    Raises CartKineticsError when the path is an existing file, or names a file (``.csv``,
    ``.json``...): ``--out`` used to be a file for ``nca`` and ``compare``, and writing a
    folder called ``nca.csv`` would surprise.
    """
    from cartkinetics.errors import CartKineticsError

    if getattr(args, "out", None) is None:
        return None
    path = Path(args.out)
    if path.is_file() or path.suffix.lower() in (".csv", ".json", ".txt", ".tsv", ".parquet"):
        raise CartKineticsError(
            "--out takes a folder (the command writes its files inside it), not a file name",
            source=str(path))
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise CartKineticsError(f"cannot create the output folder ({exc})",
                                source=str(path)) from exc
    return path


def add_json_argument(parser: argparse.ArgumentParser, what: str) -> None:
    """``--json``: one JSON document on stdout (and nothing else there)."""
    parser.add_argument("--json", action="store_true",
                        help=f"print one JSON document to stdout: {what}")


def print_json(doc: Any) -> None:
    """Print ``doc`` as the one JSON document of the command's stdout.

    NaN and infinities become ``null`` (strict JSON); numpy scalars become numbers
    (:func:`cartkinetics.serialize.dumps`).
    """
    from cartkinetics.serialize import dumps

    print(dumps(doc, indent=1))


# ------------------------------------------------------------- parallel work
def add_cluster_arguments(
    parser: argparse.ArgumentParser, what: str = "the work", *, jobs_alias: bool = False
) -> None:
    """``--workers N | --scheduler ADDR`` (mutually exclusive; and the deprecated ``--jobs N``
    = ``--workers N`` where ``jobs_alias``)."""
    group = parser.add_mutually_exclusive_group()
    group.add_argument("--workers", type=int, metavar="N",
                       help=f"run {what} on a new local Dask cluster of N worker processes")
    group.add_argument("--scheduler", metavar="ADDR",
                       help=f"run {what} on an existing Dask scheduler: its address, e.g. "
                            "tcp://10.0.0.5:8786, or its scheduler file (see "
                            "docs/distributed.md for SLURM/PBS and Kubernetes)")
    if jobs_alias:
        group.add_argument("--jobs", type=int, metavar="N", dest="jobs",
                           help="deprecated alias of --workers N (local worker processes)")


def check_cluster_arguments(args: argparse.Namespace) -> None:
    """CartKineticsError for ``--workers`` below 1 or an empty ``--scheduler``."""
    from cartkinetics.errors import CartKineticsError

    workers = getattr(args, "workers", None)
    if workers is not None and workers < 1:
        raise CartKineticsError(f"--workers must be >= 1, got {workers}")
    scheduler = getattr(args, "scheduler", None)
    if scheduler is not None and not str(scheduler).strip():
        raise CartKineticsError("--scheduler needs an address, e.g. tcp://10.0.0.5:8786")


# ------------------------------------------------------------------- progress
def add_quiet_argument(parser: argparse.ArgumentParser) -> None:
    """``--quiet``: no progress bars on stderr."""
    parser.add_argument("--quiet", action="store_true",
                        help="no progress bars (they go to stderr otherwise)")


def quiet(args: argparse.Namespace | None) -> bool:
    """True when progress output is off: ``--quiet``, or stderr is not a terminal (a bar
    redrawn with carriage returns would clutter a log file or a pipe)."""
    if args is not None and getattr(args, "quiet", False):
        return True
    return not _stderr_is_terminal()


def _stderr_is_terminal() -> bool:
    try:
        return sys.stderr.isatty()
    except (AttributeError, ValueError):  # replaced or closed stream
        return False


def progress(iterable: Iterable[Any], desc: str, args: argparse.Namespace | None = None,
             total: int | None = None, unit: str = "it") -> Iterable[Any]:
    """``iterable`` with a tqdm bar on stderr that appears after ~2 s; silent with ``--quiet``."""
    if quiet(args):
        return iterable
    from tqdm.auto import tqdm

    return tqdm(iterable, desc=desc, total=total, unit=unit, file=sys.stderr,
                delay=PROGRESS_DELAY, leave=False)


@contextlib.contextmanager
def step(desc: str, args: argparse.Namespace | None = None, enabled: bool = True
         ) -> Iterator[None]:
    """Show an elapsed-time bar on stderr while a step that cannot count its work runs.

    The bar appears only when the step lasts more than ~2 s and is removed when it ends;
    nothing is shown with ``--quiet`` or when ``enabled`` is false (the step has a bar of
    its own). The step itself runs in the calling thread.
    """
    if quiet(args) or not enabled:
        yield
        return
    done = threading.Event()

    def tick() -> None:
        if done.wait(PROGRESS_DELAY):
            return
        from tqdm.auto import tqdm

        bar = tqdm(desc=desc, total=None, file=sys.stderr, leave=False,
                   bar_format="{desc}: {elapsed} elapsed")
        bar.start_t = started  # elapsed since the step began, not since the bar appeared
        try:
            while not done.wait(0.5):
                bar.refresh()
        finally:
            bar.close()

    thread = threading.Thread(target=tick, name=f"progress-{desc}", daemon=True)
    started = time.time()  # tqdm's clock
    thread.start()
    try:
        yield
    finally:
        done.set()
        thread.join(timeout=2.0)


class StepLog:
    """A ``print``-like log for step-by-step runs (``run_analysis(log=...)``) with a bar.

    The analysis logs ``"[2/8] title ..."`` with ``end=""`` when a step starts and the
    rest of the line when it ends. On a terminal (and without ``--quiet``) the start line
    is held back while an elapsed-time bar for the step runs on stderr (after ~2 s), and
    the whole line is printed when the step ends; otherwise lines print as they come.
    """

    def __init__(self, args: argparse.Namespace | None = None) -> None:
        self._args = args
        self._pending: str | None = None
        self._bar: contextlib.ExitStack | None = None

    def __call__(self, text: str = "", end: str = "\n", flush: bool = False) -> None:
        if quiet(self._args):
            print(text, end=end, flush=flush)
            return
        if end == "":  # a step starts
            self._close()
            self._pending = text
            self._bar = contextlib.ExitStack()
            self._bar.enter_context(step(text.rstrip(". "), self._args))
            return
        self._close()
        head, self._pending = self._pending or "", None
        print(head + text, end=end, flush=flush)

    def _close(self) -> None:
        if self._bar is not None:
            self._bar.close()
            self._bar = None
