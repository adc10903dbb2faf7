"""``cartkinetics fit KINETICS.csv --model stein2019``: fit each series (lmfit, BLQ by M3)."""

from __future__ import annotations

import argparse
import math
import re
import sys
from pathlib import Path
from typing import Any

from cartkinetics.commands._options import print_json

HELP = "fit each series with a model (lmfit, BLQ by M3)"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Arguments of the ``fit`` subcommand."""
    from cartkinetics.commands._options import (
        add_cluster_arguments,
        add_quiet_argument,
        add_read_arguments,
    )

    add_read_arguments(parser)
    parser.add_argument("--model", default="stein2019", help="library model (default stein2019)")
    parser.add_argument(
        "--censoring", choices=("M3", "M1"), default="M3",
        help="BLQ handling: M3 likelihood (default) or M1 (discard BLQ rows; for comparison)",
    )
    parser.add_argument(
        "--sigma", default=None,
        help="residual SD on the ln scale: a number, or 'estimate' (default: the model's "
        "published value, else estimated)",
    )
    parser.add_argument(
        "--prior", choices=("auto", "none", "population"), default="auto",
        help="auto (default): 'population' when the model publishes between-subject "
        "variability (Stein 2019) in the data's unit, else 'none' (also the default of "
        "fit_series/fit_cohort); population: maximum a posteriori with the "
        "model's published population distribution as prior (posterior intervals by "
        "importance resampling), the estimator whose Cmax/Tmax intervals are validated on "
        "sparse series; none: maximum likelihood (single-series ML overestimates Cmax where "
        "the rise is sparsely sampled and its curve-Tmax intervals under-cover; see "
        "docs/fitting.md, Validation)",
    )
    parser.add_argument("--joint", action="store_true",
                        help="also fit each patient's two infusions jointly (shared kinetics, "
                        "infusion-specific cmax and tmax): ratios with CIs")
    parser.add_argument("--n-boot", type=int, default=500,
                        help="bootstrap draws for the CIs of model Cmax/Tmax/AUC (default 500)")
    add_cluster_arguments(parser, "the per-series fits", jobs_alias=True)
    parser.add_argument("--chunk-size", type=int, default=25,
                        help="series per Dask task and per Parquet partition (default 25)")
    parser.add_argument("--resume", action="store_true",
                        help="with --out on a cluster: keep the partitions already in "
                        "DIR/fits and fit only the rest")
    parser.add_argument("--json", action="store_true",
                        help="print one record per series (patient, infusion, assay, model, "
                        "status, message, n_obs, n_blq, params, stderr, cmax, cmax_ci, tmax, "
                        "tmax_ci, auc_0_28, auc_0_28_ci, aic, censoring, estimator); with "
                        "--joint one object {\"fits\": [those records], \"joint\": [one "
                        "record per joint fit: params, ci, not_identifiable, ratios]}")
    parser.add_argument("--out", metavar="DIR",
                        help="write fits.csv (and joint.csv) and one PNG plot per series here; "
                        "with --workers/--scheduler the per-series table is streamed to "
                        "DIR/fits/part-<first>-<last>.parquet and fits.csv assembled from it "
                        "(no per-series plots)")
    add_quiet_argument(parser)


def _fmt(v: Any) -> str:
    if isinstance(v, float):
        return "NA" if not math.isfinite(v) else f"{v:.4g}"
    return str(v)


def _safe_name(*parts: Any) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", "_".join(str(p) for p in parts))


def _prior(choice: str, model_name: str, units: set[str]) -> str | None:
    """The ``prior`` passed to fit_cohort for ``--prior`` ('none' -> None; 'auto' is resolved
    per series by :func:`cartkinetics.fit.individual.resolve_prior`, the library's default, so
    the CLI and Python give the same fits). A fallback of 'auto' to maximum likelihood (data
    in another unit than the prior) is said in each such fit's message and once on stderr; an
    explicit 'population' with data in another unit is refused by the fit, naming both
    units."""
    from cartkinetics.fit.individual import resolve_prior

    prior = None if choice == "none" else choice
    for unit in sorted(units):
        note = resolve_prior(prior, model_name, unit)[1]
        if note:
            print(f"cartkinetics fit: --prior auto: {note.split(': ', 1)[1]}", file=sys.stderr)
    return prior


def run(args: argparse.Namespace) -> int:
    """Fit every series; print a table or JSON records; 0 when at least one fit is usable."""
    from cartkinetics.commands._options import out_dir, progress, read_from_args, step
    from cartkinetics.errors import CartKineticsError
    from cartkinetics.fit.cohort import fit_cohort

    sigma: Any = args.sigma
    if sigma is not None and sigma != "estimate":
        try:
            sigma = float(sigma)
        except ValueError as exc:
            raise CartKineticsError(
                f"--sigma must be a number or 'estimate', got {args.sigma!r}"
            ) from exc
    workers = args.workers
    if args.jobs is not None:
        import sys

        print("cartkinetics fit: --jobs is deprecated; use --workers N (a local Dask cluster "
              "of N processes)", file=sys.stderr)
        workers = args.jobs if args.jobs > 1 else None
    if workers is not None and workers < 0:
        raise CartKineticsError(f"--workers must be >= 0, got {workers}")
    cluster = bool(workers) or args.scheduler is not None
    if args.resume and not (cluster and args.out):
        raise CartKineticsError("--resume needs --out DIR and --workers N or --scheduler ADDR")
    data = read_from_args(args)
    out_dir(args)  # --out is a folder: checked (and created) before minutes of fitting
    kws = dict(assay=args.assay, censoring=args.censoring, sigma=sigma, n_boot=args.n_boot,
               joint=args.joint, prior=_prior(args.prior, args.model,
                                            {s.unit for s in data.series(args.assay)}))
    if cluster:
        from cartkinetics.fit.distributed import fit_cohort_distributed

        kws.pop("assay")
        stream = args.out is not None
        series = list(data.series(args.assay) if args.assay else data.series())
        cohort = fit_cohort_distributed(
            series, args.model, workers=workers or None,
            scheduler=args.scheduler, out=args.out if stream else None, resume=args.resume,
            progress=not args.quiet, chunk_size=args.chunk_size, **kws,
        )
        if stream:
            return _report_streamed(cohort, args)
    else:
        with step(f"fitting {args.model}", args):
            cohort = fit_cohort(data, args.model, **kws)
    if args.out:
        out = Path(args.out)
        try:
            out.mkdir(parents=True, exist_ok=True)
            cohort.table.to_csv(out / "fits.csv", index=False)
            if cohort.joint:
                cohort.joint_table().to_csv(out / "joint.csv", index=False)
            import matplotlib

            matplotlib.use("Agg")
            import matplotlib.pyplot as plt

            for r in progress(cohort.results, "writing fit plots", args, unit="plot"):
                ax = r.plot()
                ax.legend(fontsize=7)
                ax.figure.tight_layout()
                ax.figure.savefig(out / f"fit_{_safe_name(r.patient, r.infusion, r.assay)}.png",
                                  dpi=110)
                plt.close(ax.figure)
        except OSError as exc:
            raise CartKineticsError(
                f"cannot write the fit outputs ({exc})", source=str(out)
            ) from exc
    if args.json:
        if args.joint:
            print_json({"fits": cohort.records(), "joint": [j.to_dict() for j in cohort.joint]})
        else:
            print_json(cohort.records())
    else:
        t = cohort.table
        cols = ["patient", "infusion", "assay", "status", "model_cmax", "model_tmax",
                "model_auc_0_28", "aic", "n_obs", "n_blq"]
        rows = [[_fmt(v) for v in r] for r in t[cols].itertuples(index=False)]
        head = ["patient", "infusion", "assay", "status", "cmax", "tmax", "auc_0_28", "aic",
                "n_obs", "n_blq"]
        widths = [max(len(c), *(len(r[i]) for r in rows)) if rows else len(c)
                  for i, c in enumerate(head)]
        print(f"model {cohort.model}; censoring {cohort.censoring}; "
              f"estimator {cohort.estimator_label()}")
        units = sorted({r.unit for r in cohort.results if getattr(r, "unit", None)})
        if units:
            from cartkinetics.units import area_unit

            print("units: cmax in " + ", ".join(units) + "; tmax in days; auc_0_28 in "
                  + ", ".join(area_unit(u) for u in units))
        print("  ".join(c.rjust(w) for c, w in zip(head, widths, strict=True)))
        for r in rows:
            print("  ".join(v.rjust(w) for v, w in zip(r, widths, strict=True)))
        for r in cohort.results:
            # every fit that is not a regular one says why (singular, failed, flagged)
            if r.status != "converged" and r.message:
                print(f"note: {r.patient} infusion {r.infusion} {r.assay}: {r.status}: {r.message}")
        for j in cohort.joint:
            print(j.summary())
    return 0 if any(r.ok for r in cohort.results) else 1


def _report_streamed(cohort: Any, args: argparse.Namespace) -> int:
    """A streamed cluster run: fits.csv from the partitions, a short report."""
    from cartkinetics._dask import write_text_atomic
    from cartkinetics.errors import CartKineticsError

    out = Path(args.out)
    table = cohort.table
    try:
        write_text_atomic(table.to_csv(index=False), out / "fits.csv")
        if cohort.joint:
            write_text_atomic(cohort.joint_table().to_csv(index=False), out / "joint.csv")
    except OSError as exc:
        raise CartKineticsError(f"cannot write the fit outputs ({exc})", source=str(out)) from exc
    if args.json:
        doc = cohort.to_dict()
        if args.joint:
            doc["joint"] = [j.to_dict() for j in cohort.joint]
        print_json(doc)
    else:
        print(cohort.summary())
        print(f"table: {out / 'fits.csv'} ({len(table)} rows); per-series plots are not drawn "
              "on cluster runs")
        bad = table[~table["status"].isin(["converged", "converged_singular"])]
        for r in bad.head(20).itertuples(index=False):
            print(f"note: {r.patient} infusion {r.infusion} {r.assay}: {r.status}: {r.message}")
        if len(bad) > 20:
            print(f"note: {len(bad) - 20} more series without a usable fit (see fits.csv)")
        for j in cohort.joint:
            print(j.summary())
    return 0 if (table["status"].isin(["converged", "converged_singular"])).any() else 1
