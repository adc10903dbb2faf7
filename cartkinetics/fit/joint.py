"""Joint fit of a patient's two infusions: shared kinetics, infusion-specific peak.

Both series (each in days since its own infusion) enter one likelihood; every model
parameter is shared except those named in ``specific`` (Stein 2019: ``cmax`` and ``tmax``),
which get one value per infusion. The within-patient ratios second/first of the specific
parameters are then estimated directly, with a Wald 95% CI on the log scale from the joint
covariance (``var(ln r) = var_1 + var_2 - 2 cov_12``). The curve after the second infusion
starts from that infusion (cells remaining from the first infusion are not carried over).
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from cartkinetics.errors import CartKineticsError
from cartkinetics.fit.individual import OK_STATUSES
from cartkinetics.fit.likelihood import prepare
from cartkinetics.fit.multistart import fit_multistart
from cartkinetics.fit.problem import (
    Z95,
    Block,
    Problem,
    covariance,
    data_start,
    get_model,
    parameter_space,
    resolve_residual,
    screen_series,
    to_internal,
)
from cartkinetics.fit.results import FitResultBase, json_safe
from cartkinetics.outcomes import curve_outcomes


@dataclass(repr=False)
class JointFitResult(FitResultBase):
    """Joint fit of two infusions of one patient.

    Attributes
    ----------
    patient, assay, model, status, message, censoring
    estimator : str
        "ML" (the joint fit takes no prior).
    params : dict infusion -> dict name -> estimate
    stderr : dict internal name -> SE on the fitted (log) scale (``cmax_inf1``, ``alpha``, ...)
    ci : dict name -> (lo, hi) 95% Wald CI on the natural scale, for the identifiable
        parameters only (``cmax_inf1``, ``cmax_inf2``, ``alpha``, ...)
    not_identifiable : dict name -> reason
        Parameters at a bound of the model (``at the lower bound 0.5``) or on a flat
        direction of the likelihood: reported as not identifiable, without a CI.
    ratios : dict name -> {"estimate", "lo", "hi", "se_log", "identifiable"} second / first
        (``lo``/``hi`` NaN and ``identifiable`` False when either infusion's parameter is
        not identifiable)
    outcomes : dict infusion -> curve outcomes of the fitted curve
    neg2ll, aic, bic : float
    """

    patient: str
    assay: str
    model: str
    status: str
    message: str
    censoring: str
    infusions: tuple[int, int] = (1, 2)
    params: dict[int, dict[str, float]] = field(default_factory=dict)
    stderr: dict[str, float] = field(default_factory=dict)
    ci: dict[str, tuple[float, float]] = field(default_factory=dict)
    not_identifiable: dict[str, str] = field(default_factory=dict)
    ratios: dict[str, dict[str, Any]] = field(default_factory=dict)
    outcomes: dict[int, dict[str, float]] = field(default_factory=dict)
    neg2ll: float = math.nan
    aic: float = math.nan
    bic: float = math.nan
    n_obs: int = 0
    n_blq: int = 0
    elapsed: float = 0.0
    estimator: str = "ML"

    @property
    def ok(self) -> bool:
        return self.status in OK_STATUSES

    def row(self) -> dict[str, Any]:
        """One flat record with NaN for missing values: a row of the joint table (estimates,
        Cmax and Tmax ratios with 95% CIs; NaN CIs where not identifiable)."""
        rec: dict[str, Any] = {
            "patient": self.patient,
            "assay": self.assay,
            "model": self.model,
            "status": self.status,
            "message": self.message,
            "censoring": self.censoring,
            "estimator": self.estimator,
            "n_obs": self.n_obs,
            "n_blq": self.n_blq,
            "neg2ll": self.neg2ll,
            "aic": self.aic,
        }
        for name, r in self.ratios.items():
            rec[f"{name}_ratio"] = r["estimate"]
            rec[f"{name}_ratio_lo"] = r["lo"]
            rec[f"{name}_ratio_hi"] = r["hi"]
        for inf, pars in self.params.items():
            for k, v in pars.items():
                rec[f"{k}_inf{inf}"] = v
        rec["not_identifiable"] = "; ".join(f"{k}: {v}" for k, v in
                                            self.not_identifiable.items())
        return rec

    def to_dict(self) -> dict[str, Any]:
        """JSON-safe record (the CLI's ``--joint --json``): key, status, estimator, the
        parameters per infusion, per-parameter 95% CIs (None where not identifiable, with
        the reason in ``not_identifiable``) and the second/first ratios with CIs."""
        def clean(x: Any) -> Any:
            if isinstance(x, dict):
                return {str(k): clean(v) for k, v in x.items()}
            if isinstance(x, (list, tuple)):
                return [clean(v) for v in x]
            return json_safe(x)

        return clean({
            "patient": self.patient, "assay": self.assay, "model": self.model,
            "status": self.status, "message": self.message, "censoring": self.censoring,
            "estimator": self.estimator, "infusions": list(self.infusions),
            "n_obs": int(self.n_obs), "n_blq": int(self.n_blq),
            "params": self.params,
            "ci": {k: (list(v) if all(math.isfinite(x) for x in v) else None)
                   for k, v in self.ci.items()},
            "not_identifiable": self.not_identifiable,
            "ratios": self.ratios,
            "neg2ll": self.neg2ll, "aic": self.aic,
        })

    def to_frame(self) -> pd.DataFrame:
        """One row per fitted parameter (internal name, e.g. ``cmax_inf2``) and per ratio:
        estimate, 95% CI, ``identifiable`` and the reason when it is not."""
        rows = []
        fitted = {k[4:] if k.startswith("log_") else k for k in self.stderr}
        for inf, pars in self.params.items():
            for k, v in pars.items():
                for iname in (f"{k}_inf{inf}", k):
                    if iname in fitted:
                        break
                else:
                    continue
                if iname == k and inf != self.infusions[0]:
                    continue  # a shared parameter: one row
                lo, hi = self.ci.get(iname, (math.nan, math.nan))
                rows.append({"kind": "parameter", "name": iname, "estimate": v, "lo": lo,
                             "hi": hi, "identifiable": iname not in self.not_identifiable,
                             "reason": self.not_identifiable.get(iname, "")})
        for n, r in self.ratios.items():
            rows.append({"kind": "ratio", "name": f"{n} ratio (inf {self.infusions[1]} / "
                         f"inf {self.infusions[0]})", "estimate": r["estimate"], "lo": r["lo"],
                         "hi": r["hi"], "identifiable": bool(r.get("identifiable", True)),
                         "reason": r.get("reason", "")})
        return pd.DataFrame(rows, columns=["kind", "name", "estimate", "lo", "hi",
                                           "identifiable", "reason"])

    def summary(self) -> str:
        """Readable report of the joint fit: parameters, Cmax and Tmax ratios, status."""
        lines = [
            f"[[Joint fit]] {self.model}: patient {self.patient} ({self.assay}), infusions "
            f"{self.infusions[0]} and {self.infusions[1]}",
            f"    status = {self.status}; {self.message}",
            f"    censoring = {self.censoring}; estimator = {self.estimator}; "
            f"-2 log L = {self.neg2ll:.4f}; AIC = {self.aic:.4f}",
        ]
        for name, r in self.ratios.items():
            head = (f"    {name} ratio (inf {self.infusions[1]} / inf {self.infusions[0]}) = "
                    f"{r['estimate']:.4g}")
            if r.get("identifiable", True):
                lines.append(f"{head} [{r['lo']:.4g}, {r['hi']:.4g}]")
            else:
                lines.append(f"{head}: not identifiable ({r.get('reason', '')})")
        for k, why in self.not_identifiable.items():
            lines.append(f"    {k}: not identifiable ({why})")
        return "\n".join(lines)

    def __repr__(self) -> str:
        parts = []
        for name, r in self.ratios.items():
            if r.get("identifiable", True):
                parts.append(f"{name} ratio {r['estimate']:.4g} [{r['lo']:.4g}, {r['hi']:.4g}]")
            else:
                parts.append(f"{name} ratio {r['estimate']:.4g} not identifiable")
        if self.not_identifiable:
            parts.append("not identifiable: " + ", ".join(self.not_identifiable))
        if not self.ok:
            parts.append(self.message[:300])
        return (f"JointFitResult({self.model}, patient {self.patient} ({self.assay}), infusions "
                f"{self.infusions[0]}+{self.infusions[1]}: {self.status}; {self.estimator}, "
                f"{self.censoring}; " + "; ".join(parts) + ")")

    def _repr_html_(self) -> str:
        import html

        return (f"<p><b>{html.escape(repr(self).split(';')[0])})</b></p>"
                f"<p>{html.escape(self.message)}</p>"
                + self.to_frame().to_html(index=False, na_rep="NA",
                                          float_format=lambda v: f"{v:.4g}"))


def fit_joint(
    series: list[Any],
    model: Any = "stein2019",
    *,
    specific: tuple[str, ...] = ("cmax", "tmax"),
    censoring: str | None = None,
    sigma: float | str | None = None,
    error: str | None = None,
    residual: Any = None,
    n_starts: int = 25,
    n_candidates: int = 200,
    max_nfev: int = 600,
    seed: int = 0,
    **_ignored: Any,
) -> JointFitResult:
    """Fit two series of one patient (first and second infusion) together.

    Parameters
    ----------
    series : list of two Series of the same patient and assay (infusion order)
    model : str or Model
    specific : parameter names estimated per infusion (the others are shared)
    censoring, sigma, error, residual, n_starts, n_candidates, max_nfev, seed :
        as in :func:`cartkinetics.fit.individual.fit_series` (the same vectorised multi-start,
        :func:`cartkinetics.fit.multistart.fit_multistart`)

    Returns
    -------
    JointFitResult
        ``ratios[name]`` = second / first with a 95% CI.
    """
    tic = time.perf_counter()
    if len(series) != 2:
        raise CartKineticsError(f"fit_joint needs two series (two infusions), got {len(series)}")
    s1, s2 = sorted(series, key=lambda s: s.infusion)
    if s1.patient != s2.patient or s1.assay != s2.assay:
        raise CartKineticsError("fit_joint: the two series must share patient and assay")
    model = get_model(model)
    unknown = set(specific) - set(model.param_names)
    if unknown:
        raise CartKineticsError(f"specific names unknown parameters {sorted(unknown)}")
    residual = resolve_residual(model, residual, censoring, sigma, error)
    out = JointFitResult(
        patient=str(s1.patient), assay=str(s1.assay), model=model.name, status="converged",
        message="", censoring=residual.censoring, infusions=(int(s1.infusion), int(s2.infusion)),
        n_obs=int(len(s1.day) + len(s2.day)),
        n_blq=int(np.sum(s1.blq) + np.sum(s2.blq)),
    )
    datas = [prepare(s, residual.censoring) for s in (s1, s2)]
    _, free, names, is_log, lo, hi = parameter_space(model, None)
    for s, d in zip((s1, s2), datas, strict=True):
        bad = screen_series(d, 2 + len(specific))
        if bad is not None:
            out.status, out.message = bad[0], f"infusion {s.infusion}: {bad[1]}"
            return out
    # internal parameters: shared ones once, specific ones per infusion
    inames, ilog, ilo, ihi, origin = [], [], [], [], []
    for j, n in enumerate(free):
        reps = (1, 2) if n in specific else (0,)
        for rep in reps:
            inames.append(names[j] + (f"_inf{rep}" if rep else ""))
            ilog.append(is_log[j])
            ilo.append(lo[j])
            ihi.append(hi[j])
            origin.append((n, rep))
    pnames = model.param_names
    blocks = []
    for rep, (s, d) in enumerate(zip((s1, s2), datas, strict=True), start=1):
        pmap = np.array(
            [
                next(i for i, (n2, r2) in enumerate(origin) if n2 == n and r2 in (0, rep))
                for n in pnames
            ]
        )
        blocks.append(Block(data=d, dose=getattr(s, "dose", None), pmap=pmap,
                             pfixed=model.typical.copy()))
    problem = Problem(model, blocks, inames, np.array(ilog), np.array(ilo), np.array(ihi),
                       residual, model.primary_observation)
    st1, st2 = data_start(model, s1), data_start(model, s2)
    shared = {n: math.exp(0.5 * (math.log(st1[n]) + math.log(st2[n]))) if st1[n] > 0 else st1[n]
              for n in pnames}
    start_vals = {}
    for (n, rep), iname in zip(origin, inames, strict=True):
        v = shared[n] if rep == 0 else (st1 if rep == 1 else st2)[n]
        start_vals[iname[4:] if iname.startswith("log_") else iname] = v
    theta0 = to_internal(start_vals, inames, np.array(ilog), np.array(ilo), np.array(ihi))
    if residual.estimate_sigma:
        theta0 = np.append(theta0, math.log(residual.sigma))
    spread = np.array([math.sqrt(model.bsv.get(n, 0.25)) for n, _ in origin])
    if residual.estimate_sigma:
        spread = np.append(spread, 0.3)
    rng = np.random.default_rng(seed)
    th, res_lm, m2ll, _ = fit_multistart(problem, theta0, inames, n_candidates, n_starts, spread,
                                       rng, max_nfev)
    if not np.isfinite(m2ll):
        out.status, out.message = "solver_failure", "the model could not be solved at the optimum"
        return out
    k = problem.n_theta
    out.neg2ll = float(m2ll)
    out.aic = out.neg2ll + 2 * k
    out.bic = out.neg2ll + k * math.log(sum(d.n for d in datas))
    for rep, b in enumerate(blocks, start=1):
        p = problem.block_params(th, b)
        out.params[(s1, s2)[rep - 1].infusion] = dict(zip(pnames, p.tolist(), strict=True))
        grid = np.unique(np.concatenate([np.arange(0, 40, 0.2), np.arange(40, 366, 2.0),
                                         [28.0, 90.0, 180.0, 365.0]]))
        sol = model.solve(grid, p, b.dose)
        out.outcomes[(s1, s2)[rep - 1].infusion] = curve_outcomes(
            grid, sol.observed[model.primary_observation]
        )
    cov, cov_ok, at_b = covariance(problem.information(th), th, problem.lower, problem.upper)
    se = np.sqrt(np.diag(cov))
    span = problem.upper - problem.lower
    nat = [problem.block_params(th, b) for b in blocks]
    disp = [n[4:] if n.startswith("log_") else n for n in inames]  # cmax_inf1, alpha, ...
    for i, n in enumerate(inames):
        out.stderr[n] = float(se[i])
        pname, rep = origin[i]
        n = disp[i]
        if i in at_b:
            side = "lower" if th[i] - problem.lower[i] < 1e-5 * span[i] else "upper"
            j = pnames.index(pname)
            bound = model.parameter(pname).lower if side == "lower" else \
                model.parameter(pname).upper
            out.not_identifiable[n] = (
                f"at the {side} bound {bound:.4g} of the model (estimate "
                f"{nat[max(rep, 1) - 1][j]:.4g})")
        elif not np.isfinite(se[i]):
            out.not_identifiable[n] = "flat direction of the likelihood (SE not available)"
        else:
            lo_i, hi_i = th[i] - Z95 * se[i], th[i] + Z95 * se[i]
            with np.errstate(over="ignore"):
                ci = ((float(np.exp(lo_i)), float(np.exp(hi_i))) if ilog[i]
                      else (float(lo_i), float(hi_i)))
            if all(math.isfinite(x) for x in ci):
                out.ci[n] = ci
            else:
                out.not_identifiable[n] = "95% CI unbounded (SE on the fitted scale " \
                    f"{se[i]:.3g})"
    for n in specific:
        i1 = next(i for i, o in enumerate(origin) if o == (n, 1))
        i2 = next(i for i, o in enumerate(origin) if o == (n, 2))
        d = th[i2] - th[i1]
        v = cov[i1, i1] + cov[i2, i2] - 2 * cov[i1, i2]
        s = math.sqrt(v) if np.isfinite(v) and v >= 0 else math.nan
        est = math.exp(d) if ilog[i1] else d
        bad = [disp[i] for i in (i1, i2) if disp[i] in out.not_identifiable]
        if bad or not math.isfinite(s):
            out.ratios[n] = {"estimate": est, "lo": math.nan, "hi": math.nan, "se_log": math.nan,
                             "identifiable": False,
                             "reason": "; ".join(f"{k} {out.not_identifiable[k]}" for k in bad)
                             or "SE not available"}
            continue
        if ilog[i1]:
            with np.errstate(over="ignore"):
                lo_r, hi_r = float(np.exp(d - Z95 * s)), float(np.exp(d + Z95 * s))
        else:
            lo_r, hi_r = d - Z95 * s, d + Z95 * s
        out.ratios[n] = {"estimate": est, "lo": lo_r, "hi": hi_r, "se_log": s,
                         "identifiable": True, "reason": ""}
    if not res_lm.success:
        out.status = "not_converged"
    elif not cov_ok or at_b:
        out.status = "converged_singular"
    out.message = (
        f"{out.status.replace('_', ' ')} ({residual.censoring}); shared: "
        f"{[n for n in free if n not in specific]}, per infusion: {list(specific)}; "
        "ratio CI: Wald on the log scale from the joint covariance"
    )
    if out.not_identifiable:
        out.message += (f"; not identifiable from these data (no CI): "
                        f"{', '.join(out.not_identifiable)}")
    out.elapsed = time.perf_counter() - tic
    return out


def joint_table(results: list[JointFitResult]) -> pd.DataFrame:
    """One row per patient from a list of joint fits."""
    return pd.DataFrame([r.row() for r in results])
