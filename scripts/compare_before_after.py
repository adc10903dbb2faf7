"""Behaviour snapshot for refactors: the same numbers before and after (issue #17).

Runs, on the bundled example cohort and (when present) the Liu 2022 B-ALL data:

* NCA of every series;
* ``fit_cohort`` with Stein 2019 (example: every series, joint fits too; Liu: the first
  eight series, which are fast);
* the hierarchical model's log density and gradient at its initial point (the PyMC model
  of ``fit_population`` built but not sampled: deterministic and quick);
* fixed-seed simulations: Stein 2019 with its published variability, and an ODE model;
* virtual patients drawn from a fixed table of population draws (``DrawsPopulation``).

Writes one JSON document; diff two of them with ``--diff A.json B.json`` (relative
tolerance ``--rtol``, default 1e-9).

Usage::

    PYTHONPATH=/path/to/checkout python scripts/compare_before_after.py --out before.json
    PYTHONPATH=/path/to/other python scripts/compare_before_after.py --out after.json
    python scripts/compare_before_after.py --diff before.json after.json
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

LIU = Path(__file__).resolve().parents[2] / "shared" / "data" / "liu2022-ball"
if not LIU.is_dir():  # a worktree under /work/wt/<name>
    LIU = Path(__file__).resolve().parents[3] / "shared" / "data" / "liu2022-ball"
LIU_GROUPS = ("CR", "PR", "NR", "NegR")
LIU_MAPPING = {
    "columns": {"TIME": "time", "DV": "y"},
    "filter": {"y_ID": 1},
    "blq_values": {"0.2": 0.2},
    "assay": "qpcr",
}


def _plain(x: Any) -> Any:
    """JSON-safe copy (NaN/inf as strings so that they compare equal)."""
    if isinstance(x, dict):
        return {str(k): _plain(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_plain(v) for v in x]
    if isinstance(x, np.ndarray):
        return _plain(x.tolist())
    if isinstance(x, (np.bool_, bool)):
        return bool(x)
    if isinstance(x, (np.integer,)):
        return int(x)
    if isinstance(x, (float, np.floating)):
        v = float(x)
        return v if math.isfinite(v) else repr(v)
    if x is None or isinstance(x, (int, str)):
        return x
    if isinstance(x, pd.Timestamp):
        return str(x)
    return str(x)


def _frame(df: Any) -> list[dict[str, Any]]:
    if hasattr(df, "to_frame") and not isinstance(df, pd.DataFrame):
        df = df.to_frame()
    return _plain(df.reset_index(drop=True).to_dict(orient="records"))


def _liu() -> Any:
    from cartkinetics.data import KineticsData, read_kinetics

    return KineticsData.concat(
        read_kinetics(LIU / f"Data_{g}.csv", mapping=LIU_MAPPING, patient_prefix=f"{g}-")
        for g in LIU_GROUPS
    )


def _fit_table(fits: Any) -> list[dict[str, Any]]:
    table = fits.table
    drop = [c for c in table.columns if c in ("runtime_s", "time_s", "elapsed_s")]
    return _frame(table.drop(columns=drop))


def _population_logp(data: Any, model: str, **kw: Any) -> dict[str, Any]:
    from cartkinetics.fit.population import build_model, prepare_population_data

    pdata = prepare_population_data(data, kw.pop("assay", None))
    pm_model, info = build_model(pdata, model, **kw)
    point = pm_model.initial_point()
    logp = pm_model.compile_logp()(point)
    grad = pm_model.compile_dlogp()(point)
    return {"free": info["free"], "logp": float(logp), "dlogp": _plain(np.asarray(grad)),
            "point": {k: _plain(np.asarray(v)) for k, v in point.items()}}


def snapshot(quick: bool = False) -> dict[str, Any]:
    import cartkinetics as ck
    from cartkinetics import example
    from cartkinetics.simulate import simulate
    from cartkinetics.simulate.virtual_patients import DrawsPopulation

    out: dict[str, Any] = {}
    data = example.load()
    out["example_nca"] = _frame(ck.nca(data))
    # prior=None: maximum likelihood, the default before prior="auto" (issue #19), so that
    # snapshots of older checkouts stay comparable
    out["example_fit_cohort"] = _fit_table(ck.fit_cohort(data, "stein2019", joint=False,
                                                         prior=None))
    out["example_population_logp"] = _population_logp(data, "stein2019")

    sim = simulate("stein2019", n=400, seed=11, keep_params=True, progress=False)
    out["simulate_stein"] = _frame(sim.outcomes.sort_values(list(sim.outcomes.columns[:2])))
    if not quick:
        from cartkinetics.simulate.virtual_patients import ModelPopulation

        pop_k = ModelPopulation("kimmel2021", {}, omega={"rho_C": 0.1, "gamma_B": 0.1})
        sim2 = simulate("kimmel2021", n=40, seed=5, population=pop_k, keep_params=True,
                        progress=False)
        out["simulate_kimmel"] = _frame(sim2.outcomes)

    rng = np.random.default_rng(3)
    nd = 200
    draws = pd.DataFrame({
        "mu_foldx": np.log(3900) + 0.1 * rng.standard_normal(nd),
        "mu_tmax": np.log(9.3) + 0.1 * rng.standard_normal(nd),
        "mu_cmax": np.log(24000) + 0.1 * rng.standard_normal(nd),
        "mu_alpha": np.log(0.16) + 0.1 * rng.standard_normal(nd),
        "mu_fb": np.log(0.0079 / (1 - 0.0079)) + 0.1 * rng.standard_normal(nd),
        "mu_beta": np.log(0.0032) + 0.1 * rng.standard_normal(nd),
        "omega_cmax": np.full(nd, 0.5),
        "omega_fb": np.full(nd, 0.5),
    })
    pop = DrawsPopulation("stein2019", {}, draws=draws, level="population")
    out["draws_population_stein"] = _plain(pop._sample_params(np.random.default_rng(1), 50, None))

    if LIU.is_dir():
        liu = _liu()
        out["liu_nca"] = _frame(ck.nca(liu))
        series = liu.series()[:8]
        out["liu_fit_cohort"] = _fit_table(ck.fit_cohort(series, "stein2019", prior=None))
        out["liu_population_logp"] = _population_logp(liu, "stein2019")
    return out


def _diff(a: Any, b: Any, path: str, rtol: float, out: list[str]) -> None:
    if isinstance(a, dict) and isinstance(b, dict):
        for k in sorted(set(a) | set(b)):
            if k not in a or k not in b:
                out.append(f"{path}/{k}: only in {'after' if k not in a else 'before'}")
            else:
                _diff(a[k], b[k], f"{path}/{k}", rtol, out)
    elif isinstance(a, list) and isinstance(b, list):
        if len(a) != len(b):
            out.append(f"{path}: length {len(a)} != {len(b)}")
        for i, (x, y) in enumerate(zip(a, b, strict=False)):
            _diff(x, y, f"{path}[{i}]", rtol, out)
    elif isinstance(a, float) and isinstance(b, float):
        if not math.isclose(a, b, rel_tol=rtol, abs_tol=rtol * 1e-3):
            out.append(f"{path}: {a!r} != {b!r}")
    elif a != b:
        out.append(f"{path}: {a!r} != {b!r}")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", type=Path, help="write the snapshot JSON here")
    ap.add_argument("--diff", nargs=2, type=Path, metavar=("BEFORE", "AFTER"))
    ap.add_argument("--rtol", type=float, default=1e-9)
    ap.add_argument("--quick", action="store_true", help="skip the ODE simulation")
    args = ap.parse_args(argv)
    if args.diff:
        a, b = (json.loads(p.read_text()) for p in args.diff)
        found: list[str] = []
        _diff(a, b, "", args.rtol, found)
        for line in found[:200]:
            print(line)
        print(f"{len(found)} difference(s)")
        return 1 if found else 0
    warnings.simplefilter("ignore")
    snap = snapshot(quick=args.quick)
    text = json.dumps(snap, indent=1, sort_keys=True)
    if args.out:
        args.out.write_text(text)
    else:
        sys.stdout.write(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
