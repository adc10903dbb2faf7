"""One command, one run, one record: ``python -m benchmarks`` (or ``cartkinetics bench``).

Runs, in one run on this machine, the benchmark scripts of this folder, each in its own
subprocess (``bench_solvers.py``, ``bench_fit.py``, ``bench_population.py``,
``bench_simulate.py``; a missing script is a "skipped: not present" row), plus its own
measurements:

* ``import cartkinetics`` time (fresh interpreters, median) and whether the import pulled in
  pymc, pytensor, dask or matplotlib (it must not);
* numba compile time: the first use of the compiled paths (an ODE solve, curve outcomes, a
  small Stein 2019 simulation) in a fresh process with an empty ``NUMBA_CACHE_DIR``, then in
  another fresh process from that cache (full run only);
* the first ``cartkinetics demo`` on a fresh machine: a new process with empty numba,
  PyTensor and model caches (full run only).

A run of the whole suite (no ``--only``) writes ``benchmarks/RESULTS.md``, its JSON twin
``benchmarks/RESULTS.json`` and the docs page ``docs/benchmarks.md`` (see
:mod:`benchmarks.record`), headed with the commit, the machine, the load average at start and
end and the library and peer versions; ``--no-write`` only prints. ``--json`` prints the
JSON document instead of the markdown; ``--quick`` passes the scripts' quick flags and gives
them a time budget (4.5 minutes in all on idle cores, stretched with the load average up to
3x on a shared machine).

A script that supports ``--json-out FILE`` writes its measurements there (they go into
RESULTS.json); one that supports ``--json`` prints one JSON object as the last line of its
output, whose ``rows`` become rows of the summary table. A script whose output starts with a
markdown heading is included as it is, other output in a code block. With ``--quick`` a
script that runs past its share of the budget is stopped and what it printed so far is kept.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
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
if str(ROOT) not in sys.path:  # ``cartkinetics bench`` loads this file by path
    sys.path.insert(0, str(ROOT))

from benchmarks import record  # noqa: E402

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
QUICK_EXTRA = ("--skip-dask", "--no-compile", "--skip-liu-sampling", "--skip-liu-peers")
#: total wall-time budget of a --quick run (s); scripts share what the own measurements leave,
#: in proportion to QUICK_SHARE (measured CPU time of their quick runs)
QUICK_BUDGET = 270.0
QUICK_SHARE = {"solvers": 0.45, "fit": 0.15, "population": 0.25, "simulate": 0.15}
#: shares of a full run given --budget (the Liu 2022 sampling is most of bench_population)
FULL_SHARE = {"solvers": 0.25, "fit": 0.1, "population": 0.45, "simulate": 0.2}
#: target of the first demo on a fresh machine (s, wall, 2 cores), issue #20
DEMO_TARGET = 90.0
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


_STEP = re.compile(r"^\[(\d+)/(\d+)\] (.+?) \.\.\. ([\d.]+) s(?: \((.*)\))?\s*$")


def demo_first_run(timeout: float = 1800) -> dict[str, Any]:
    """The first ``cartkinetics demo`` on a fresh machine: a new process with empty numba,
    PyTensor and model caches (temporary folders); wall and CPU time, each step's line."""
    with tempfile.TemporaryDirectory() as tmp:
        env = _env()
        env["NUMBA_CACHE_DIR"] = os.path.join(tmp, "numba")
        env["PYTENSOR_FLAGS"] = f"compiledir={os.path.join(tmp, 'pytensor')}"
        env["CARTKINETICS_CACHE_DIR"] = os.path.join(tmp, "cartkinetics")
        cmd = [sys.executable, "-c", "import sys; from cartkinetics.cli import main; "
               "sys.exit(main(sys.argv[1:]))", "demo", "--out", os.path.join(tmp, "out")]
        before = os.times()
        t0 = time.perf_counter()
        out = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=timeout,
                             cwd=tmp)
        wall = time.perf_counter() - t0
        after = os.times()
    steps = []
    for line in out.stdout.splitlines():
        m = _STEP.match(line.strip())
        if m:
            steps.append({"step": m.group(3), "seconds": float(m.group(4)),
                          "note": m.group(5) or ""})
    return {"wall": wall, "cpu": (after.children_user - before.children_user)
            + (after.children_system - before.children_system),
            "exit": out.returncode, "steps": steps,
            "compile_lines": [ln.strip() for ln in out.stdout.splitlines()
                              if "compil" in ln.lower()],
            "warnings": [ln.strip() for ln in (out.stdout + out.stderr).splitlines()
                         if "not met" in ln or "Warning" in ln][:10]}


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


def run_script(name: str, quick: bool, timeout: float | None, want_json: bool,
               figures: str | None = None) -> dict[str, Any]:
    """Run one benchmark script in a subprocess; a dict with status, seconds, rows, output.
    ``figures``: where a script with ``--figures`` draws (None: its default, docs/figures)."""
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
    if figures is not None and "--figures" in flags:
        args += ["--figures", figures]
    json_out = None
    if "--json-out" in flags:
        fd, json_out = tempfile.mkstemp(suffix=".json", prefix=f"bench_{name}_")
        os.close(fd)
        args += ["--json-out", json_out]
    res["command"] = " ".join(
        [Path(args[0]).name, *(os.path.relpath(a, ROOT) if a == str(path) else a
                               for a in args[1:]
                               if a not in (json_out, "--json-out", figures, "--figures"))]
    )
    t0 = time.perf_counter()
    try:
        out = subprocess.run(args, capture_output=True, text=True, env=_env(), cwd=str(ROOT),
                             timeout=timeout)
    except subprocess.TimeoutExpired as exc:
        if json_out is not None:
            Path(json_out).unlink(missing_ok=True)
        partial = exc.stdout or ""
        if isinstance(partial, bytes):  # TimeoutExpired keeps bytes even with text=True
            partial = partial.decode(errors="replace")
        res.update(status=f"timeout after {timeout:.0f} s (partial output)",
                   seconds=time.perf_counter() - t0, output=partial,
                   rows=_ratio_rows(partial, name))
        return res
    res["seconds"] = time.perf_counter() - t0
    res["output"] = out.stdout
    if json_out is not None:
        try:
            res["data"] = json.loads(Path(json_out).read_text())
        except (OSError, json.JSONDecodeError):
            pass
        finally:
            Path(json_out).unlink(missing_ok=True)
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
            log: Any = None, budget: float | None = None,
            figures: str | None = None) -> dict[str, Any]:
    """Every measurement of one run, as a JSON-friendly dict (``header`` and ``rows`` first).
    ``figures``: where the scripts draw (None: docs/figures, for a recorded run)."""
    started = time.perf_counter()
    stretchable = budget is None and quick
    if budget is None and quick:
        budget = QUICK_BUDGET
    doc: dict[str, Any] = {"header": record.start_header(quick), "quick": quick,
                           "rows": [], "scripts": []}
    rows = doc["rows"]

    def say(text: str) -> None:
        if log is not None:
            log(text)

    if only is None or "import" in only:
        say("measuring the import time ...")
        reps = 3 if quick else 5
        ours, pulled = import_time("cartkinetics", reps)
        doc["import_pulls_in"] = pulled
        rows.append({"benchmark": "import", "measurement": "import cartkinetics", "value": ours,
                     "unit": "s", "note": f"median of {reps} fresh interpreters; the package "
                     "imports its submodules lazily, so this is not comparable with the import "
                     "of numpy or pymc"})
        rows.append({"benchmark": "import", "measurement": "heavy modules pulled in",
                     "note": ", ".join(pulled) if pulled else "none (pymc, pytensor, dask, "
                     "matplotlib stay lazy)"})
    if quick and only is None:
        rows.append({"benchmark": "compile", "measurement": "numba compile time",
                     "note": "not measured with --quick: run without --quick, or --only "
                             "compile"})
        rows.append({"benchmark": "demo", "measurement": "first demo on a fresh machine",
                     "note": "not measured with --quick: run without --quick, or --only demo"})
    else:
        if only is None or "compile" in only:
            say("measuring numba compile time (fresh processes) ...")
            ct = compile_times()
            doc["compile"] = ct
            for key in ("ode_solve", "outcomes", "simulate"):
                cold, warm = ct["empty cache"][key], ct["from cache"][key]
                cpu_cold = ct["empty cache"][f"{key}_cpu"]
                cpu_warm = ct["from cache"][f"{key}_cpu"]
                rows.append({"benchmark": "compile", "measurement": f"first {key} (numba)",
                             "value": cold, "unit": "s", "peer": "from cache",
                             "peer_value": warm,
                             "note": f"wall, empty cache / from cache; CPU {cpu_cold:.1f} s / "
                                     f"{cpu_warm:.2f} s"})
        if only is None or "demo" in only:
            say("running the first demo on a fresh machine (empty caches) ...")
            d = demo_first_run()
            doc["demo"] = d
            hier = next((x for x in d["steps"] if x["step"].startswith("hierarchical")), None)
            rows.append({"benchmark": "demo", "measurement": "first `cartkinetics demo`, "
                         "empty numba / PyTensor / model caches", "value": d["wall"],
                         "unit": "s", "target": f"< {DEMO_TARGET:.0f} s (wall, 2 cores): "
                         + ("met" if d["wall"] < DEMO_TARGET and d["exit"] == 0 else "not met")
                         + f"; CPU {d['cpu']:.0f} s; exit {d['exit']}"})
            if hier is not None:
                rows.append({"benchmark": "demo", "measurement": "its hierarchical step",
                             "value": hier["seconds"], "unit": "s", "note": hier["note"]})
    names = [n for n in SCRIPTS if only is None or n in only]
    for i, name in enumerate(names):
        timeout = FULL_TIMEOUT
        if budget is not None:
            # the budget is for idle cores: on a shared machine it stretches with the load
            # (at most 3x), so that a busy machine still gives each script its CPU time
            load = (record.load_average() or [0.0])[0]
            stretch = min(3.0, max(1.0, load / (os.cpu_count() or 1))) if stretchable else 1.0
            left = budget * stretch - (time.perf_counter() - started)
            shares = QUICK_SHARE if quick else FULL_SHARE
            share = sum(shares.get(n, 0.1) for n in names[i:])
            timeout = max(10.0, left * shares.get(name, 0.1) / share)
        say(f"running {SCRIPTS[name]} ...")
        res = run_script(name, quick, timeout, want_json, figures)
        doc["scripts"].append(res)
        rows.extend(res["rows"])
        if res["status"] != "ok" or not res["rows"]:
            rows.append({"benchmark": name, "measurement": SCRIPTS[name],
                         "value": res.get("seconds") or None, "unit": "s (wall)",
                         "note": res["status"] + ("" if res["status"] != "ok"
                                                  else "; results below")})
    doc["seconds"] = time.perf_counter() - started
    record.finish_header(doc["header"], doc["seconds"])
    return doc


def _demo_markdown(d: dict[str, Any]) -> list[str]:
    lines = ["", "## First demo on a fresh machine", "",
             "`cartkinetics demo` in a new process with empty numba, PyTensor and model caches "
             f"(temporary folders): **{d['wall']:.0f} s wall**, {d['cpu']:.0f} s CPU, exit code "
             f"{d['exit']}; target < {DEMO_TARGET:.0f} s on 2 cores.", "",
             "| step | s (wall) | result |", "|---|---:|---|"]
    lines += [f"| {x['step']} | {x['seconds']:.1f} | {x['note']} |" for x in d["steps"]]
    if d.get("compile_lines"):
        lines += ["", "What the demo said it compiled:", ""]
        lines += [f"- {ln}" for ln in d["compile_lines"]]
    return lines


def to_markdown(doc: dict[str, Any]) -> str:
    """RESULTS.md: the header, the summary table, then each script's own section."""
    lines = [record.header_markdown(doc["header"]), "",
             "## Summary", "",
             "| benchmark | measurement | cartkinetics | peer | ratio | target / note |",
             "|---|---|---:|---|---:|---|"]
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
    if doc.get("demo"):
        lines += _demo_markdown(doc["demo"])
    for s in doc["scripts"]:
        if not s.get("output"):
            continue
        out = s["output"].rstrip()
        if out.count("```") % 2:  # a script stopped inside a code block
            out += "\n```"
        status = f"{s['status']}, {s.get('seconds', 0):.0f} s: `{s.get('command', '')}`"
        if out.lstrip().startswith("## "):  # the script writes markdown: include it as it is
            head, _, rest = out.lstrip().partition("\n")
            lines += ["", head, "", f"({s['script']}: {status})", rest]
        else:
            lines += ["", f"### {s['script']} ({status})", "", "```text", out, "```"]
    return "\n".join(lines)


def build_parser(parser: argparse.ArgumentParser | None = None) -> argparse.ArgumentParser:
    parser = parser or argparse.ArgumentParser(prog="python -m benchmarks",
                                               description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true",
                        help="quick flags of each script and a ~4 minute budget")
    parser.add_argument("--json", action="store_true", help="print one JSON document")
    parser.add_argument("--only", metavar="NAME,...",
                        help="subset (printed, not recorded): import, compile, demo, "
                             + ", ".join(SCRIPTS))
    parser.add_argument("--budget", type=float, default=None, metavar="SECONDS",
                        help="total wall-time budget: scripts are stopped at their share of "
                             "it, keeping what they printed (default: none for a full run, "
                             f"{QUICK_BUDGET:.0f} s stretched with the load for --quick)")
    parser.add_argument("--no-write", action="store_true",
                        help="print only; do not write RESULTS.md, RESULTS.json, the docs page")
    return parser


def main(argv: list[str] | None = None) -> int:
    """Run the benchmarks; 0 when every present script ran, 1 otherwise."""
    args = build_parser().parse_args(argv)
    return run(args)


def run(args: argparse.Namespace) -> int:
    only = [x.strip() for x in args.only.split(",")] if args.only else None
    known = {"import", "compile", "demo", *SCRIPTS}
    if only and set(only) - known:
        print(f"unknown benchmark(s) {sorted(set(only) - known)}; known: {sorted(known)}",
              file=sys.stderr)
        return 2
    log = None if args.json else (lambda t: print(t, file=sys.stderr, flush=True))
    recorded = only is None and not getattr(args, "no_write", False)
    # a run that is not recorded draws into a folder removed afterwards: docs/figures belong
    # to the committed record (the printed text links nothing else)
    with (contextlib.nullcontext() if recorded
          else tempfile.TemporaryDirectory(prefix="cartkinetics_bench_figures_")) as figures:
        doc = collect(args.quick, only, args.json, log, getattr(args, "budget", None), figures)
    text = to_markdown(doc)
    if recorded:
        data = dict(doc, scripts=[{k: v for k, v in sc.items()
                                   if not (k == "output" and "data" in sc)}
                                  for sc in doc["scripts"]])
        for path in record.write(text, data):
            print(f"wrote {os.path.relpath(path, ROOT)}", file=sys.stderr)
    if args.json:
        for s in doc["scripts"]:
            if s.get("json"):  # the parsed document replaces the raw text
                s.pop("output", None)
        print(json.dumps(doc, indent=1, default=str))
    else:
        print(text)
    bad = [s for s in doc["scripts"] if s["status"] not in ("ok", "skipped: not present")]
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
