"""One entry point for every benchmark: ``python -m benchmarks`` or ``cartkinetics bench``.

Runs, in one run on this machine, the benchmark scripts of this folder, each in its own
subprocess (``bench_solvers.py``, ``bench_fit.py``, ``bench_population.py``,
``bench_simulate.py``; a missing script is a "skipped: not present" row), plus its own
measurements:

* ``import cartkinetics`` time (fresh interpreter, median of 5; 3 with ``--quick``), against
  ``import numpy`` and ``import pymc`` measured the same way, and whether the import pulled
  in pymc, pytensor, dask or matplotlib (it must not);
* numba compile time: the first use of the compiled paths (an ODE solve with the numba
  solver, curve outcomes, a small Stein 2019 simulation) in a fresh process with an empty
  ``NUMBA_CACHE_DIR``, then in another fresh process from that cache.

Prints one markdown table (measurement, cartkinetics, peer, ratio) followed by each script's
own output; ``--json`` prints one JSON document instead; ``--quick`` passes the scripts' quick
flags and gives them a time budget so the whole run takes about a minute.

A script that supports ``--json`` should print one JSON object as the last line of its
output; its ``rows`` (list of ``{"measurement", "value", "unit", "peer", "peer_value",
"ratio", "target"}``, any subset) become rows of the main table. Without ``--json``, rows of
the script's markdown tables whose second column is a ratio (``12.3x``) and plain
``label: 12.3x`` lines are taken. With ``--quick`` a script that runs past its share of the
budget is stopped and what it printed so far is kept.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent

#: name -> script file, in the order they run
SCRIPTS: dict[str, str] = {
    "solvers": "bench_solvers.py",
    "fit": "bench_fit.py",
    "population": "bench_population.py",
    "simulate": "bench_simulate.py",
}
#: extra arguments for a quick run of scripts that have no ``--quick`` flag
QUICK_FALLBACK: dict[str, list[str]] = {"bench_fit.py": ["--n", "8"]}
#: flags that shorten a quick run further, passed when the script has them
QUICK_EXTRA = ("--skip-dask", "--no-compile", "--skip-liu-sampling")
#: total wall-time budget of a --quick run (s); scripts share what the own measurements leave
QUICK_BUDGET = 60.0
#: per-script limit of a full run (s), against a hung script
FULL_TIMEOUT = 3600.0

_FORBIDDEN = ("pymc", "pytensor", "dask", "matplotlib")


def _env() -> dict[str, str]:
    env = dict(os.environ)
    # unbuffered: a script stopped at its time limit still hands over what it printed
    env["PYTHONUNBUFFERED"] = "1"
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(ROOT), env.get("PYTHONPATH", "")) if p)
    return env


def _python(code: str, env: dict[str, str] | None = None, timeout: float = 600) -> str:
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         env=env or _env(), timeout=timeout, cwd=str(ROOT))
    if out.returncode != 0:
        raise RuntimeError(out.stderr.strip().splitlines()[-1] if out.stderr.strip() else
                           f"exit code {out.returncode}")
    return out.stdout.strip().splitlines()[-1]


# ------------------------------------------------------------------ own measurements
_IMPORT = (
    "import sys, time, json; t = time.perf_counter(); import {module}; "
    "dt = time.perf_counter() - t; "
    "print(json.dumps([dt, sorted(m for m in {forbidden!r} if m in sys.modules)]))"
)


def import_time(module: str, repeats: int) -> tuple[float, list[str]]:
    """Median wall time (s) of ``import module`` in fresh interpreters; modules it pulled in
    among pymc/pytensor/dask/matplotlib."""
    times, pulled = [], []
    for _ in range(repeats):
        dt, pulled = json.loads(_python(_IMPORT.format(module=module, forbidden=_FORBIDDEN)))
        times.append(dt)
    return statistics.median(times), pulled


_FIRST_USE = """
import json, time
out = {}
def mark(key, t, c):
    out[key] = time.perf_counter() - t
    out[key + "_cpu"] = time.process_time() - c
    return time.perf_counter(), time.process_time()
t, c = time.perf_counter(), time.process_time()
import numpy as np
from cartkinetics import models
from cartkinetics.outcomes import batch_curve_outcomes, curve_outcomes
t, c = mark("import", t, c)
m = models.get("stein2019_ode")
sol = m.solve(np.linspace(0.0, 100.0, 51))
t, c = mark("ode_solve", t, c)
curve_outcomes(sol.t, sol.observed[m.primary_observation])
batch_curve_outcomes(sol.t, np.vstack([sol.observed[m.primary_observation]] * 2))
t, c = mark("outcomes", t, c)
from cartkinetics.simulate import simulate
simulate("stein2019", n=50, seed=1, progress=False)
mark("simulate", t, c)
print(json.dumps(out))
"""


def compile_times() -> dict[str, dict[str, float]]:
    """First-use times (s) with an empty numba cache and then from that cache."""
    res = {}
    with tempfile.TemporaryDirectory() as tmp:
        env = _env()
        env["NUMBA_CACHE_DIR"] = tmp
        for label in ("empty cache", "from cache"):
            res[label] = json.loads(_python(_FIRST_USE, env=env, timeout=1800))
    return res


# ------------------------------------------------------------------ scripts
def _flags(source: str) -> set[str]:
    return set(re.findall(r"""add_argument\(\s*["'](--[\w-]+)["']""", source))


def _ratio_rows(text: str, script: str) -> list[dict[str, Any]]:
    """Markdown table rows whose second cell is a ratio such as ``12.3x``."""
    rows = []
    for line in text.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if line.lstrip().startswith("|") and len(cells) >= 2 and re.fullmatch(r"[\d.,]+x",
                                                                             cells[1]):
            rows.append({"benchmark": script, "measurement": cells[0], "ratio": cells[1],
                         "target": cells[2] if len(cells) > 2 else ""})
            continue
        # a plain "label: 9.0x" line
        m = re.fullmatch(r"\s*([^|:]+?):\s*([\d.,]+x)\s*", line)
        if m:
            rows.append({"benchmark": script, "measurement": m.group(1), "ratio": m.group(2)})
    return rows


def _json_rows(doc: Any, script: str) -> list[dict[str, Any]]:
    rows = doc.get("rows") if isinstance(doc, dict) else None
    if not isinstance(rows, list):
        return []
    out = []
    for r in rows:
        if isinstance(r, dict):
            out.append({"benchmark": script, **r})
    return out


def run_script(name: str, quick: bool, timeout: float | None, want_json: bool) -> dict[str, Any]:
    """Run one benchmark script in a subprocess; a dict with status, seconds, rows, output."""
    path = HERE / SCRIPTS[name]
    res: dict[str, Any] = {"name": name, "script": path.name, "rows": []}
    if not path.is_file():
        res.update(status="skipped: not present", seconds=0.0)
        return res
    flags = _flags(path.read_text(encoding="utf-8"))
    args = [sys.executable, str(path)]
    if quick:
        args += ["--quick"] if "--quick" in flags else QUICK_FALLBACK.get(path.name, [])
        args += [f for f in QUICK_EXTRA if f in flags]
    use_json = want_json and "--json" in flags
    if use_json:
        args.append("--json")
    res["command"] = " ".join(
        [Path(args[0]).name, *(os.path.relpath(a, ROOT) if a == str(path) else a
                               for a in args[1:])]
    )
    t0 = time.perf_counter()
    try:
        out = subprocess.run(args, capture_output=True, text=True, env=_env(), cwd=str(ROOT),
                             timeout=timeout)
    except subprocess.TimeoutExpired as exc:
        partial = exc.stdout or ""
        if isinstance(partial, bytes):  # TimeoutExpired keeps bytes even with text=True
            partial = partial.decode(errors="replace")
        res.update(status=f"timeout after {timeout:.0f} s (partial output)",
                   seconds=time.perf_counter() - t0, output=partial,
                   rows=_ratio_rows(partial, name))
        return res
    res["seconds"] = time.perf_counter() - t0
    res["output"] = out.stdout
    if out.returncode != 0:
        tail = out.stderr.strip().splitlines()
        res["status"] = f"failed (exit {out.returncode}): {tail[-1] if tail else ''}"
        res["rows"] = _ratio_rows(out.stdout, name)  # what it printed before it stopped
        return res
    res["status"] = "ok"
    if use_json:
        for line in reversed(out.stdout.strip().splitlines()):
            if line.startswith(("{", "[")):
                try:
                    res["json"] = json.loads(line)
                except json.JSONDecodeError:
                    continue
                break
        res["rows"] = _json_rows(res.get("json"), name)
    if not res["rows"]:
        res["rows"] = _ratio_rows(out.stdout, name)
    return res


# ------------------------------------------------------------------ main
def _fmt_s(x: float) -> str:
    return f"{x * 1e3:.0f} ms" if x < 1 else f"{x:.1f} s"


def collect(quick: bool, only: list[str] | None, want_json: bool,
            log: Any = None) -> dict[str, Any]:
    """Every measurement of one run, as a JSON-friendly dict."""
    started = time.perf_counter()
    budget = QUICK_BUDGET if quick else None
    doc: dict[str, Any] = {
        "python": platform.python_version(), "machine": platform.machine(),
        "cpus": os.cpu_count(), "quick": quick,
        "load_average": list(os.getloadavg()) if hasattr(os, "getloadavg") else None,
        "rows": [], "scripts": [],
    }
    rows = doc["rows"]

    def say(text: str) -> None:
        if log is not None:
            log(text)

    if only is None or "import" in only:
        say("measuring import times ...")
        reps = 3 if quick else 5
        ours, pulled = import_time("cartkinetics", reps)
        doc["import_pulls_in"] = pulled
        for peer in ("numpy", "pymc"):
            try:
                t_peer, _ = import_time(peer, 1 if quick else reps)
            except RuntimeError as exc:
                rows.append({"benchmark": "import", "measurement": f"import {peer}",
                             "note": f"not measured: {exc}"})
                continue
            rows.append({"benchmark": "import", "measurement": "import cartkinetics",
                         "value": ours, "unit": "s", "peer": f"import {peer}",
                         "peer_value": t_peer, "ratio": f"{t_peer / ours:.1f}x",
                         "note": "peer / ours, median of fresh interpreters"})
        rows.append({"benchmark": "import", "measurement": "heavy modules pulled in",
                     "note": ", ".join(pulled) if pulled else "none (pymc, pytensor, dask, "
                     "matplotlib stay lazy)"})
    if quick and only is None:
        rows.append({"benchmark": "compile", "measurement": "numba compile time",
                     "note": "not measured with --quick (fresh compiles take minutes on a "
                             "loaded machine): run without --quick, or --only compile"})
    elif only is None or "compile" in only:
        say("measuring numba compile time (fresh processes) ...")
        ct = compile_times()
        doc["compile"] = ct
        for key in ("ode_solve", "outcomes", "simulate"):
            cold, warm = ct["empty cache"][key], ct["from cache"][key]
            cpu_cold, cpu_warm = ct["empty cache"][f"{key}_cpu"], ct["from cache"][f"{key}_cpu"]
            rows.append({"benchmark": "compile", "measurement": f"first {key} (numba)",
                         "value": cold, "unit": "s", "peer": "from cache", "peer_value": warm,
                         "ratio": f"{cold / warm:.1f}x" if warm > 0 else "n/a",
                         "note": f"empty cache / from cache; CPU {cpu_cold:.1f} s / "
                                 f"{cpu_warm:.2f} s"})
    names = [n for n in SCRIPTS if only is None or n in only]
    for i, name in enumerate(names):
        timeout = FULL_TIMEOUT
        if budget is not None:
            left = budget - (time.perf_counter() - started)
            timeout = max(10.0, left / (len(names) - i))
        say(f"running {SCRIPTS[name]} ...")
        res = run_script(name, quick, timeout, want_json)
        doc["scripts"].append(res)
        rows.extend(res["rows"])
        if res["status"] != "ok" or not res["rows"]:
            rows.append({"benchmark": name, "measurement": SCRIPTS[name],
                         "value": res.get("seconds") or None, "unit": "s (wall)",
                         "note": res["status"] + ("" if res["status"] != "ok"
                                                  else "; results below")})
    doc["seconds"] = time.perf_counter() - started
    return doc


def to_markdown(doc: dict[str, Any]) -> str:
    """The main table, then the scripts' own output."""
    load = doc.get("load_average")
    lines = [
        f"## cartkinetics benchmarks ({'quick' if doc['quick'] else 'full'} run)",
        "",
        f"Python {doc['python']} on {doc['machine']}, {doc['cpus']} CPUs"
        + (f", load average {load[0]:.1f}" if load else "")
        + f"; total {doc['seconds']:.0f} s. Ratios > 1 favour cartkinetics.",
        "",
        "| benchmark | measurement | cartkinetics | peer | ratio | target / note |",
        "|---|---|---:|---|---:|---|",
    ]
    for r in doc["rows"]:
        value = r.get("value")
        unit = r.get("unit", "")
        if isinstance(value, (int, float)):
            val = _fmt_s(value) if unit == "s" else f"{value:.3g} {unit}".strip()
        else:
            val = "" if value is None else str(value)
        peer = r.get("peer", "")
        pv = r.get("peer_value")
        if isinstance(pv, (int, float)):
            peer = f"{peer}: {_fmt_s(pv) if unit == 's' else f'{pv:.3g}'}"
        note = r.get("target") or r.get("note") or ""
        lines.append(f"| {r.get('benchmark', '')} | {r.get('measurement', '')} | {val} | "
                     f"{peer} | {r.get('ratio', '')} | {note} |")
    for s in doc["scripts"]:
        if s.get("output"):
            lines += ["", f"### {s['script']} ({s['status']}, {s.get('seconds', 0):.0f} s: "
                      f"`{s.get('command', '')}`)", "", s["output"].rstrip()]
    return "\n".join(lines)


def build_parser(parser: argparse.ArgumentParser | None = None) -> argparse.ArgumentParser:
    parser = parser or argparse.ArgumentParser(prog="python -m benchmarks",
                                               description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true",
                        help="quick flags of each script and a ~1 minute budget")
    parser.add_argument("--json", action="store_true", help="print one JSON document")
    parser.add_argument("--only", metavar="NAME,...",
                        help="subset: import, compile, " + ", ".join(SCRIPTS))
    return parser


def main(argv: list[str] | None = None) -> int:
    """Run the benchmarks; 0 when every present script ran, 1 otherwise."""
    args = build_parser().parse_args(argv)
    return run(args)


def run(args: argparse.Namespace) -> int:
    only = [x.strip() for x in args.only.split(",")] if args.only else None
    known = {"import", "compile", *SCRIPTS}
    if only and set(only) - known:
        print(f"unknown benchmark(s) {sorted(set(only) - known)}; known: {sorted(known)}",
              file=sys.stderr)
        return 2
    log = None if args.json else (lambda t: print(t, file=sys.stderr, flush=True))
    doc = collect(args.quick, only, args.json, log)
    if args.json:
        for s in doc["scripts"]:
            if s.get("json"):  # the parsed document replaces the raw text
                s.pop("output", None)
        print(json.dumps(doc, indent=1, default=str))
    else:
        print(to_markdown(doc))
    bad = [s for s in doc["scripts"] if s["status"] not in ("ok", "skipped: not present")]
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
