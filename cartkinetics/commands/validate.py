"""``cartkinetics validate {fit-coverage,sbc,bootstrap} --replicates N --out DIR``: validation
studies of the fits, in process or on Dask (``--workers N`` / ``--scheduler ADDR``),
resumable (``--resume``)."""

from __future__ import annotations

import argparse

from cartkinetics.commands._options import print_json

HELP = "validation studies of the fits (coverage, SBC, bootstrap) on Dask, resumable"


def _common(p: argparse.ArgumentParser) -> None:
    from cartkinetics.commands._options import add_cluster_arguments

    p.add_argument("--replicates", type=int, required=True, metavar="N",
                   help="number of replicates (each seeded from SeedSequence(seed) child r)")
    p.add_argument("--out", metavar="DIR", required=True,
                   help="folder: replicates/part-<first>-<last>.parquet, study.json, "
                   "replicates.parquet, summary.csv/json, figures")
    p.add_argument("--resume", action="store_true",
                   help="keep the partitions already in DIR (same study) and run the rest")
    p.add_argument("--seed", type=int, default=2026, help="study seed (default 2026)")
    p.add_argument("--partition-size", type=int, default=None, metavar="K",
                   help="replicates per task and per partition (default 10; 5 for sbc)")
    add_cluster_arguments(p)
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.add_argument("--json", action="store_true", help="print the summary as one JSON document")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Arguments of the ``validate`` subcommand (one sub-subcommand per study)."""
    sub = parser.add_subparsers(dest="study", metavar="STUDY", required=True)
    p = sub.add_parser("fit-coverage", help="coverage of per-series fit intervals over "
                       "simulated Stein 2019 series (benchmarks/validate_fit.py section 1)")
    p.add_argument("--estimator", choices=("MAP", "ML"), default="MAP",
                   help="MAP with the population prior and SIR intervals (default), or ML "
                   "with profile-likelihood intervals")
    p.add_argument("--censoring", choices=("M3", "M1"), default="M3")
    p.add_argument("--lloq", type=float, default=75.0, help="copies/ug (default 75)")
    p.add_argument("--n-boot", type=int, default=300, help="SIR / bootstrap draws per fit")
    _common(p)
    p = sub.add_parser("bootstrap", help="coverage of the parametric-bootstrap intervals of "
                       "model Cmax, Tmax, AUC0-28 (ML fits)")
    p.add_argument("--censoring", choices=("M3", "M1"), default="M3")
    p.add_argument("--lloq", type=float, default=75.0, help="copies/ug (default 75)")
    p.add_argument("--n-boot", type=int, default=200, help="bootstrap draws per fit")
    _common(p)
    p = sub.add_parser("sbc", help="simulation-based calibration of the hierarchical Stein "
                       "2019 fit (nutpie)")
    p.add_argument("--patients", type=int, default=8, help="patients per cohort (2 infusions)")
    p.add_argument("--draws", type=int, default=250, help="draws per chain")
    p.add_argument("--tune", type=int, default=400, help="tuning steps per chain")
    p.add_argument("--chains", type=int, default=2)
    p.add_argument("--thin-to", type=int, default=99, help="posterior draws kept for ranks")
    p.add_argument("--bins", type=int, default=10, help="rank histogram bins")
    p.add_argument("--lloq", type=float, default=150.0, help="copies/ug (default 150)")
    _common(p)


def make_study(args: argparse.Namespace) -> object:
    """The Study object the arguments describe."""
    from cartkinetics.validate.coverage import BootstrapStudy, FitCoverageStudy

    if args.study == "fit-coverage":
        return FitCoverageStudy(args.estimator, args.censoring, args.lloq, args.n_boot)
    if args.study == "bootstrap":
        return BootstrapStudy(args.censoring, args.lloq, args.n_boot)
    from cartkinetics.validate.sbc import SBCStudy

    return SBCStudy(patients=args.patients, draws=args.draws, tune=args.tune,
                    chains=args.chains, thin_to=args.thin_to, bins=args.bins, lloq=args.lloq)


def run(args: argparse.Namespace) -> int:
    """Run the study; print its summary; 0 when at least one replicate succeeded."""
    from cartkinetics.validate.study import run_study

    study = make_study(args)
    size = args.partition_size or (5 if args.study == "sbc" else 10)
    res = run_study(study, args.replicates, seed=args.seed, out=args.out, resume=args.resume,
                    workers=args.workers, scheduler=args.scheduler, partition_size=size,
                    progress=not args.quiet)
    if args.json:
        print_json(res)
    else:
        print(res.summary())
        info = res.info
        print(f"partitions {info['partitions']} ({info['partitions_resumed']} resumed); "
              f"wall {info['seconds']:.1f} s; files in {res.out}: summary.csv, summary.json, "
              f"replicates.parquet, {', '.join(p.name for p in res.figures)}")
    ok_col = res.table["status"]
    return 0 if ok_col.isin(["ok", "converged", "converged_singular"]).any() else 1
