"""The benchmark record: the header of a run, RESULTS.md / RESULTS.json and the docs page.

``python -m benchmarks`` writes ``benchmarks/RESULTS.md`` (and its JSON twin) in one run and
regenerates ``docs/benchmarks.md`` from it with :func:`docs_page`: a fixed introduction (how
to run, what is measured and how; no numbers) followed by RESULTS.md as it is, with the
figure links rewritten for the docs folder, then the cluster record ``benchmarks/CLUSTER.md``
(``python benchmarks/bench_fit_dask.py --write``, a separate run of about 40 minutes: fits
and an SBC study at scale on Dask) as it is. ``tests/test_benchmarks_record.py`` checks that
the committed docs page is ``docs_page(RESULTS.md, CLUSTER.md)`` and that the header has
:data:`HEADER_FIELDS`.
"""

from __future__ import annotations

import importlib.metadata
import os
import platform
import re
import subprocess
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
RESULTS_MD = HERE / "RESULTS.md"
RESULTS_JSON = HERE / "RESULTS.json"
#: the record of the fits-at-scale benchmark (``benchmarks/bench_fit_dask.py --write``): a run of
#: its own (about 40 minutes on 2 cores), shown on the docs page after RESULTS.md
CLUSTER_MD = HERE / "CLUSTER.md"
CLUSTER_JSON = HERE / "CLUSTER.json"
DOCS_PAGE = ROOT / "docs" / "benchmarks.md"
#: figures go to docs/figures (the docs site serves them); RESULTS.md links them from benchmarks/
FIGURES = ROOT / "docs" / "figures"
FIGURE_LINK_RESULTS = "../docs/figures/"
FIGURE_LINK_DOCS = "figures/"

#: library and peers whose versions head the record (absent ones are listed as such)
PACKAGES = ("cartkinetics", "numpy", "scipy", "numba", "lmfit", "pymc", "pytensor", "nutpie",
            "arviz", "dask", "numbalsoda", "jax", "diffrax")

#: header lines of RESULTS.md ("- **field**: value"), in this order
HEADER_FIELDS = ("run", "commit", "date", "machine", "cores", "load average at start",
                 "load average at end", "python", "versions", "total time")


def _git(*args: str) -> str:
    try:
        out = subprocess.run(["git", *args], capture_output=True, text=True, cwd=str(ROOT),
                             timeout=30)
    except (OSError, subprocess.SubprocessError):
        return ""
    return out.stdout.strip() if out.returncode == 0 else ""


def _dirty(*exclude: str) -> bool:
    """Uncommitted changes to the measured code (cartkinetics/, benchmarks/), but for the
    ``exclude`` pathspecs."""
    return bool(_git("status", "--porcelain", "--untracked-files=no", "--", "cartkinetics",
                     "benchmarks", *(f":!{x}" for x in exclude)))


def commit() -> str:
    """``<hash> (<subject>)``, with ``+ uncommitted changes`` when the work tree is dirty."""
    sha = _git("rev-parse", "--short=12", "HEAD") or "unknown"
    subject = _git("log", "-1", "--format=%s")[:80]
    return f"{sha}" + (f" ({subject})" if subject else "") + (
        " + uncommitted changes" if _dirty() else "")


def short_commit(*exclude: str) -> str:
    """``<7-character hash>``, with ``+dirty`` when the measured code has uncommitted changes
    (but for ``exclude``, e.g. the results file a run appends to)."""
    sha = _git("rev-parse", "--short=7", "HEAD") or "unknown"
    return sha + ("+dirty" if _dirty(*exclude) else "")


def cpu_model() -> str:
    """The CPU model name from /proc/cpuinfo (Linux), else platform.processor()."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.lower().startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def load_average() -> list[float] | None:
    try:
        return [round(x, 2) for x in os.getloadavg()]
    except (OSError, AttributeError):
        return None


def versions() -> dict[str, str]:
    out = {}
    for name in PACKAGES:
        try:
            out[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            out[name] = "not installed"
    return out


def start_header(quick: bool) -> dict[str, Any]:
    """What is known before the run: everything but the end load and the total time."""
    return {
        "run": "quick (--quick)" if quick else "full",
        "commit": commit(),
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "machine": f"{cpu_model()}, {platform.machine()}, {platform.system()}",
        "cores": os.cpu_count(),
        "load average at start": load_average(),
        "python": platform.python_version(),
        "versions": versions(),
    }


def finish_header(header: dict[str, Any], seconds: float) -> dict[str, Any]:
    header["load average at end"] = load_average()
    header["total time"] = round(seconds, 1)
    return header


def _fmt(field: str, value: Any) -> str:
    if field.startswith("load average"):
        return "n/a" if not value else " / ".join(f"{x:.2f}" for x in value) + " (1 / 5 / 15 min)"
    if field == "versions":
        return ", ".join(f"{k} {v}" for k, v in value.items())
    if field == "total time":
        return f"{value:.0f} s"
    return str(value)


def header_markdown(header: dict[str, Any], title: str = "Benchmark results",
                    command: str = "python -m benchmarks") -> str:
    lines = [f"# {title}", "",
             f"Written by `{command}` in one run; every number below comes from "
             "this run, on this machine.", ""]
    lines += [f"- **{f}**: {_fmt(f, header.get(f))}" for f in HEADER_FIELDS]
    return "\n".join(lines)


def parse_header(text: str) -> dict[str, str]:
    """The ``- **field**: value`` lines of a RESULTS.md (for the record test)."""
    return dict(re.findall(r"^- \*\*([^*]+)\*\*: (.*)$", text, flags=re.MULTILINE))


DOCS_INTRO = """\
# Benchmarks

<!-- generated by `python -m benchmarks` from benchmarks/RESULTS.md and benchmarks/CLUSTER.md:
     edit benchmarks/record.py (this introduction) or re-run the benchmarks, not this page -->

This page is `benchmarks/RESULTS.md`, the record of the latest run of the whole benchmark suite,
shown as it is: every number on it was measured in that one run, on the machine named in its
header, peers included. After it comes `benchmarks/CLUSTER.md`, the record of the latest run of
the fits-at-scale benchmark (cohort fits and a simulation-based calibration study on a Dask
cluster), a run of its own with its own header. Nothing else on this page is a measurement.

```bash
pip install ".[bench]"        # peers: numbalsoda (builds with gfortran), JAX + diffrax
python -m benchmarks          # full run: writes benchmarks/RESULTS.md, RESULTS.json, this page
python -m benchmarks --quick  # smaller sizes, the same sections
cartkinetics bench            # the same command
python benchmarks/bench_fit_dask.py --write  # fits at scale: writes benchmarks/CLUSTER.md
```

How the measurements are made:

- **Matched peers.** A peer row solves the same problem as the library row beside it, with the
  same `rtol` / `atol`, the same output times and the same thread count (one, unless the row
  says otherwise). A peer that is not installed is skipped with a line saying so.
- **Achieved error.** Every solver row gives its error against a tight reference solve
  (scipy's LSODA, `odeint`, at `rtol` 1e-12): per patient the largest
  `|y - y_ref| / (|y_ref| + floor)` over outputs and states, then the median over patients.
  Comparisons "at equal error" use the work-precision runs: the cheapest library run whose
  achieved error is at most the peer's.
- **Times.** Single-thread rows are CPU time (what one core spends; the machine may be shared),
  medians of repeats; thread scaling compares wall time with wall time in the same run.
- **Fresh machine.** First calls run in new processes with empty numba, PyTensor and model
  caches.
"""


def _docs_body(md: str) -> str:
    body = md.replace(FIGURE_LINK_RESULTS, FIGURE_LINK_DOCS)
    return re.sub(r"^(#+) ", lambda m: "#" + m.group(1) + " ", body, flags=re.MULTILINE).rstrip()


def docs_page(results_md: str, cluster_md: str | None = None) -> str:
    """The docs page: the introduction, then RESULTS.md and, when given, the cluster record
    CLUSTER.md, each as it is (headings one level down, figure links relative to docs/)."""
    page = DOCS_INTRO + "\n" + _docs_body(results_md) + "\n"
    if cluster_md:
        page += "\n" + _docs_body(cluster_md) + "\n"
    return page


def read_cluster() -> str | None:
    """The committed cluster record (CLUSTER.md), None when there is none."""
    return CLUSTER_MD.read_text(encoding="utf-8") if CLUSTER_MD.is_file() else None


def write_docs_page() -> Path:
    """Regenerate docs/benchmarks.md from the committed RESULTS.md and CLUSTER.md."""
    DOCS_PAGE.write_text(docs_page(RESULTS_MD.read_text(encoding="utf-8"), read_cluster()),
                         encoding="utf-8")
    return DOCS_PAGE


def _write_pair(md_path: Path, json_path: Path, md: str, doc: dict[str, Any]) -> None:
    import json

    md_path.write_text(md.rstrip() + "\n", encoding="utf-8")
    json_path.write_text(json.dumps(doc, indent=1, default=str) + "\n", encoding="utf-8")


def write(results_md: str, doc: dict[str, Any]) -> list[Path]:
    """Write RESULTS.md, RESULTS.json and the docs page; the paths written."""
    _write_pair(RESULTS_MD, RESULTS_JSON, results_md, doc)
    return [RESULTS_MD, RESULTS_JSON, write_docs_page()]


def write_cluster(cluster_md: str, doc: dict[str, Any]) -> list[Path]:
    """Write CLUSTER.md, CLUSTER.json and the docs page; the paths written."""
    _write_pair(CLUSTER_MD, CLUSTER_JSON, cluster_md, doc)
    return [CLUSTER_MD, CLUSTER_JSON, write_docs_page()]
