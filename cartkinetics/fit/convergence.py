"""Convergence of hierarchical fits: diagnostics that name what failed, and fits that run
until the thresholds are met or say loudly that they were not.

:func:`diagnose` reads any ArviZ ``InferenceData`` (a :class:`PopulationFit` or a synthetic
one) and returns a :class:`ConvergenceReport`:

* the library's thresholds (Vehtari et al. 2021; Betancourt 2016): rank-normalised split
  R-hat <= 1.01, bulk and tail ESS >= 400 for every sampled quantity, no divergent
  transition, E-BFMI >= 0.3 per chain;
* the worst quantities by name (``worst``), scored by how far each misses its threshold;
* **stuck chains**: a chain whose removal brings the largest R-hat back near 1 (leave-one-
  chain-out R-hat), or, when R-hat fails, whose mean log density is below the 1% quantile of
  the best chain's (a mode of negligible mass), with each chain's mean log density where the
  sampler stored it;
* **patients about whom the chains disagree**: every quantity indexed by patient with
  R-hat above the threshold, with each chain's median of it.

:func:`fit_until_converged` (``cartkinetics fit-population --until-converged``) fits, reads
the report and, while the thresholds are missed and the time budget allows, either restarts
the stuck chains from points within +-RESTART_JITTER of draws of the other chains (the
discarded chains' log densities are recorded, never dropped silently) or runs all chains
again from points within +-RESTART_JITTER of the last round's draws, with the warm-up and
the draws grown by what the smallest ESS asks for (2-4x; or, when divergences are the only
failure, the same length with smaller steps). The first round starts dispersed, so R-hat
can see chains that settle in different modes; later rounds start where the posterior mass
was found. The rounds go to ``fit.info["convergence"]``.
"""

from __future__ import annotations

import math
import time
import warnings
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from cartkinetics.errors import CartKineticsError

# the thresholds live with the population fit (one place); re-exported here
from cartkinetics.fit.population.constants import BFMI_MIN, ESS_MIN, RHAT_MAX

# a chain is called stuck when leaving it out brings the largest R-hat from above
# STUCK_RHAT to within STUCK_FRACTION of its excess over 1
STUCK_RHAT = 1.05
STUCK_FRACTION = 0.35
# ... or when its mean log density is below this quantile of the best chain's log densities
# (a mode of negligible mass: checked only when R-hat fails)
LOW_LOGP_QUANTILE = 0.01
# jitter (half-width, unconstrained scale) of restarted chains around a draw of the good
# chains: with nutpie's +-1 each restarted chain of a 40-patient cohort landed some other
# patient in a poor mode (single40 seed 5: six restarts, six new stuck chains)
RESTART_JITTER = 0.1
# posterior draws a later round's chains pick their starts from (each chain one, by its seed)
START_POOL = 64
# an extended round is sized from the ESS it lacks (ESS grows with the draws of chains that
# mix), with this margin, at least growth and at most MAX_GROWTH times the last round: on
# single40 seed 5, doubling (2000, 4000, 8000, 9196 draws) spent the 900 s budget on rounds
# that each ended short of ESS 400 (39, 105, 251, 237)
ESS_MARGIN = 1.25
MAX_GROWTH = 4.0
# warm-up of a later round grows with its draws up to this many iterations: its chains start
# from the last round's draws, so step size and mass matrix need no longer warm-up, and the
# iterations go to draws (single40 seed 5: 16000 warm-up iterations beside 16000 draws, half
# of a 584 s round)
TUNE_MAX = 2000
# most sampling rounds of fit_until_converged: the time budget is what binds. With 4, a
# 40-patient cohort (single40 seed 1, benchmarks/bench_population_convergence.py) stopped
# after 341 s of a 900 s budget one round short: its fifth round (8000 draws) met every
# threshold at 584 s
MAX_ROUNDS = 8
# population-level variables of the hierarchical model (the others are per patient)
POPULATION_VARS = ("mu", "omega", "omega_re", "delta", "tau", "omega_iov", "b", "sigma", "nu")
# per-chain log density in sample_stats: nutpie writes "logp", PyMC "lp"
_LOGP_KEYS = ("logp", "lp")


def _flatten(ds: Any, var_names: list[str]) -> dict[str, float]:
    """{label: value} for every scalar of the variables (labels like ``mu[tmax]``)."""
    out: dict[str, float] = {}
    for v in var_names:
        da = ds[v]
        if da.ndim == 0:
            out[v] = float(da.values)
            continue
        stacked = da.stack(_i=list(da.dims))
        for k, val in enumerate(stacked.values):
            idx = stacked["_i"].values[k]
            idx = idx if isinstance(idx, tuple) else (idx,)
            out[f"{v}[{', '.join(str(x) for x in idx)}]"] = float(val)
    return out


def _rhat(post: Any, var_names: list[str]) -> dict[str, float]:
    import arviz as az

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        return _flatten(az.rhat(post, var_names=var_names), var_names)


def _finite_max(values: Any) -> float:
    arr = np.asarray(list(values), dtype=float)
    arr = arr[np.isfinite(arr)]
    return float(arr.max()) if arr.size else float("nan")


@dataclass
class ConvergenceReport:
    """Convergence diagnostics of one posterior sample, with the failures named.

    Attributes
    ----------
    ok : bool
        Every threshold met (R-hat, bulk and tail ESS, divergences, E-BFMI, >= 2 chains).
    problems : list of str
        One sentence per failed check.
    failed : list of str
        The failed checks by name, in the order of ``problems``: ``"chains"``, ``"rhat"``,
        ``"ess_bulk"``, ``"ess_tail"``, ``"divergences"``, ``"bfmi"``, ``"stuck_low_logp"``,
        ``"stuck_apart"``.
    table : DataFrame
        One row per sampled scalar: ``quantity``, ``variable``, ``r_hat``, ``ess_bulk``,
        ``ess_tail``, ``score`` (largest of (R-hat - 1)/(threshold - 1) and threshold/ESS:
        > 1 fails), ``failed``.
    max_rhat, max_rhat_population, min_ess_bulk, min_ess_tail : float
    divergences : int
    bfmi : list of float (one per chain)
    n_chains, n_draws : int (draws per chain)
    stuck_chains : list of int
        Chains whose removal brings the largest R-hat back near 1 (0-based chain positions).
    chain_logp : list of float or None
        Mean log density of each chain (None when the sampler stored none).
    rhat_without_chain : list of float
        Largest R-hat over all quantities with each chain left out (empty below 3 chains).
    patients : DataFrame
        Quantities of single patients with R-hat above the threshold: ``patient``,
        ``quantity``, ``r_hat`` and ``chain_medians`` (the chains disagree about them).
    """

    ok: bool
    problems: list[str]
    table: pd.DataFrame
    max_rhat: float
    max_rhat_population: float
    min_ess_bulk: float
    min_ess_tail: float
    divergences: int
    bfmi: list[float]
    n_chains: int
    n_draws: int
    stuck_chains: list[int] = field(default_factory=list)
    chain_logp: list[float] | None = None
    rhat_without_chain: list[float] = field(default_factory=list)
    patients: pd.DataFrame = field(default_factory=pd.DataFrame)
    failed: list[str] = field(default_factory=list)

    def worst(self, k: int = 5) -> pd.DataFrame:
        """The ``k`` quantities furthest from their thresholds (largest ``score``)."""
        return self.table.sort_values("score", ascending=False).head(k).reset_index(drop=True)

    def worst_text(self, k: int = 3) -> str:
        """The worst quantities in words, e.g. ``mu[tmax] (R-hat 1.03, bulk ESS 210, ...)``."""
        parts = []
        for r in self.worst(k).itertuples():
            parts.append(f"{r.quantity} (R-hat {r.r_hat:.3f}, bulk ESS {r.ess_bulk:.0f}, "
                         f"tail ESS {r.ess_tail:.0f})")
        return ", ".join(parts)

    def advice(self) -> str:
        """What to do about the failures (empty when converged)."""
        if self.ok:
            return ""
        tips = []
        if self.stuck_chains:
            tips.append(f"chain(s) {self.stuck_chains} sit(s) apart from the others: rerun with "
                        "--until-converged (restarts them near the other chains' draws) and "
                        "read the patients the chains disagree about")
        if self.divergences:
            tips.append("divergences bias the posterior: raise --target-accept (e.g. 0.95) or "
                        "fix poorly identified parameters (--fix)")
        if self.min_ess_bulk < ESS_MIN or self.min_ess_tail < ESS_MIN or (
            self.max_rhat > RHAT_MAX and not self.stuck_chains
        ):
            tips.append("mixing is slow: run longer (--until-converged [--time-budget S], or "
                        "--tune/--draws)")
        return "; ".join(tips)

    def to_frame(self) -> pd.DataFrame:
        """One row per sampled quantity (``table``)."""
        return self.table.copy()

    def to_dict(self, k: int = 5) -> dict[str, Any]:
        """JSON-safe summary (the ``diagnostics`` keys of ``fit-population --json``)."""
        def num(x: Any) -> Any:
            x = float(x)
            return x if math.isfinite(x) else None

        worst = [
            {"quantity": r.quantity, "r_hat": num(r.r_hat), "ess_bulk": num(r.ess_bulk),
             "ess_tail": num(r.ess_tail)}
            for r in self.worst(k).itertuples()
        ]
        pats = [
            {"patient": str(r.patient), "quantity": r.quantity, "r_hat": num(r.r_hat),
             "chain_medians": [num(m) for m in r.chain_medians]}
            for r in self.patients.itertuples()
        ] if len(self.patients) else []
        return {
            "ok": bool(self.ok),
            "problems": list(self.problems),
            "max_rhat": num(self.max_rhat),
            "max_rhat_population": num(self.max_rhat_population),
            "min_ess_bulk": num(self.min_ess_bulk),
            "min_ess_tail": num(self.min_ess_tail),
            "divergences": int(self.divergences),
            "bfmi": [num(b) for b in self.bfmi],
            "n_chains": int(self.n_chains),
            "n_draws": int(self.n_draws),
            "thresholds": {"r_hat_max": RHAT_MAX, "ess_min": ESS_MIN, "bfmi_min": BFMI_MIN,
                           "divergences": 0},
            "worst": worst,
            "stuck_chains": [int(c) for c in self.stuck_chains],
            "chain_logp": None if self.chain_logp is None else [num(x) for x in self.chain_logp],
            "rhat_without_chain": [num(x) for x in self.rhat_without_chain],
            "patients_disagreeing": pats,
            "advice": self.advice(),
        }

    def summary(self) -> str:
        """A few lines: verdict, failed checks, worst quantities, stuck chains, patients."""
        lines = [
            f"convergence: {'ok' if self.ok else 'NOT CONVERGED'} ({self.n_chains} chains x "
            f"{self.n_draws} draws; max R-hat {self.max_rhat:.3f}, min bulk ESS "
            f"{self.min_ess_bulk:.0f}, min tail ESS {self.min_ess_tail:.0f}, divergences "
            f"{self.divergences})"
        ]
        if not self.ok:
            lines.append("  failed: " + "; ".join(self.problems))
            lines.append("  worst: " + self.worst_text())
        if self.stuck_chains:
            lp = ""
            if self.chain_logp is not None:
                lp = " (mean log density per chain: " + ", ".join(
                    f"{x:.1f}" for x in self.chain_logp) + ")"
            lines.append(f"  stuck chains: {self.stuck_chains}{lp}")
        if len(self.patients):
            pats = sorted({str(p) for p in self.patients["patient"]})
            lines.append(f"  chains disagree about patient(s) {', '.join(pats)}")
        if not self.ok:
            lines.append("  what to do: " + self.advice())
        return "\n".join(lines)

    def __repr__(self) -> str:
        return (f"ConvergenceReport(ok={self.ok}, max_rhat={self.max_rhat:.3f}, "
                f"min_ess_bulk={self.min_ess_bulk:.0f}, min_ess_tail={self.min_ess_tail:.0f}, "
                f"divergences={self.divergences}, stuck_chains={self.stuck_chains}, "
                f"patients_disagreeing={len(self.patients)})")

    def plot(self, ax: Any = None, k: int = 20, **kw: Any) -> Any:
        """Bar chart of the ``k`` worst quantities' scores (1 = threshold); returns ax."""
        import matplotlib.pyplot as plt

        if ax is None:
            _, ax = plt.subplots(figsize=(6, 0.25 * k + 1))
        w = self.worst(k).iloc[::-1]
        ax.barh(w["quantity"], w["score"], color=np.where(w["failed"], "C3", "C0"))
        ax.axvline(1.0, color="k", lw=1, ls="--")
        ax.set_xlabel("distance to threshold (> 1 fails)")
        ax.set(**kw)
        return ax


def _logp_draws(idata: Any) -> np.ndarray | None:
    """The sampler's log density per (chain, draw), None where it stored none."""
    ss = getattr(idata, "sample_stats", None)
    for key in _LOGP_KEYS:
        if ss is not None and key in ss:
            return np.asarray(ss[key].values, dtype=float)
    return None


def _low_logp_chains(lp: np.ndarray | None) -> list[int]:
    """Chains whose mean log density (``lp``: chain x draw) is below the ``LOW_LOGP_QUANTILE``
    quantile of the log densities of the chain with the highest mean: a chain of the same mode
    would have its mean near the middle of that chain's values (empty without ``lp``)."""
    if lp is None:
        return []
    means = np.nanmean(lp, axis=1)
    if not np.all(np.isfinite(means)):
        return []
    cut = float(np.nanquantile(lp[int(np.argmax(means))], LOW_LOGP_QUANTILE))
    return [int(c) for c in np.flatnonzero(means < cut)]


def diagnose(
    idata: Any,
    var_names: list[str] | None = None,
    *,
    patient_dim: str = "patient",
) -> ConvergenceReport:
    """Convergence diagnostics of a posterior sample, naming what failed.

    Parameters
    ----------
    idata : arviz.InferenceData or PopulationFit
        A fit's sample (``posterior`` and, where stored, ``sample_stats`` with ``diverging``,
        ``energy`` and the log density).
    var_names : list of str, optional
        Sampled variables to check (default: a PopulationFit's sampled variables, else every
        posterior variable).
    patient_dim : str
        Dimension naming patients; quantities along it are reported per patient.

    Returns
    -------
    ConvergenceReport
    """
    import arviz as az

    if hasattr(idata, "idata") and hasattr(idata, "_sampled_vars"):  # a PopulationFit
        var_names = var_names or idata._sampled_vars()
        idata = idata.idata
    post = idata.posterior
    vn = list(var_names or post.data_vars)
    n_chains, n_draws = int(post.sizes["chain"]), int(post.sizes["draw"])
    rhat = _rhat(post, vn) if n_chains >= 2 else {}
    ess_b = _flatten(az.ess(post, var_names=vn, method="bulk"), vn)
    ess_t = _flatten(az.ess(post, var_names=vn, method="tail"), vn)
    labels = list(ess_b)
    table = pd.DataFrame({
        "quantity": labels,
        "variable": [q.split("[")[0] for q in labels],
        "r_hat": [rhat.get(q, float("nan")) for q in labels],
        "ess_bulk": [ess_b[q] for q in labels],
        "ess_tail": [ess_t[q] for q in labels],
    })
    with np.errstate(divide="ignore", invalid="ignore"):
        score = np.fmax.reduce([
            (table["r_hat"].to_numpy() - 1.0) / (RHAT_MAX - 1.0),
            ESS_MIN / table["ess_bulk"].to_numpy(),
            ESS_MIN / table["ess_tail"].to_numpy(),
        ])
    table["score"] = np.where(np.isnan(score), np.inf, score)
    table["failed"] = table["score"] > 1.0
    max_rhat = _finite_max(table["r_hat"]) if n_chains >= 2 else float("nan")
    popmask = table["variable"].isin(POPULATION_VARS)
    max_rhat_pop = _finite_max(table.loc[popmask, "r_hat"]) if n_chains >= 2 else float("nan")
    min_b = float(np.nanmin(table["ess_bulk"])) if len(table) else float("nan")
    min_t = float(np.nanmin(table["ess_tail"])) if len(table) else float("nan")
    ss = getattr(idata, "sample_stats", None)
    div = int(ss["diverging"].values.sum()) if ss is not None and "diverging" in ss else 0
    try:
        bfmi = [float(x) for x in az.bfmi(idata)]
    except Exception:  # no energy statistic stored
        bfmi = []
    # failed checks: name -> sentence (the report's ``failed`` and ``problems``)
    fails: dict[str, str] = {}
    if n_chains < 2:
        fails["chains"] = "R-hat needs at least 2 chains"
    elif not max_rhat <= RHAT_MAX:
        fails["rhat"] = f"max R-hat {max_rhat:.3f} > {RHAT_MAX}"
    if not min_b >= ESS_MIN:
        fails["ess_bulk"] = f"min bulk ESS {min_b:.0f} < {ESS_MIN:.0f}"
    if not min_t >= ESS_MIN:
        fails["ess_tail"] = f"min tail ESS {min_t:.0f} < {ESS_MIN:.0f}"
    if div:
        fails["divergences"] = f"{div} divergent transitions"
    if bfmi and min(bfmi) < BFMI_MIN:
        fails["bfmi"] = f"E-BFMI {min(bfmi):.2f} < {BFMI_MIN}"

    # stuck chains. First those that warm-up left in modes of negligible mass, each perhaps
    # in a mode of its own, which leaving one chain out at a time cannot single out (single40
    # seed 5 of benchmarks/bench_population_convergence.py: mean log densities -436, -479,
    # -496, -670, one patient's Tmax at 2.8, 4.8, 4.9 and 48 days); then, among the others,
    # leave each chain out in turn (greedily, while >= 2 chains remain), never the chain of
    # highest log density (from one shared start, three chains stayed in a poor mode and the
    # odd one out was the best)
    lp = _logp_draws(idata)
    chain_logp = None if lp is None else [float(x) for x in np.nanmean(lp, axis=1)]
    stuck: list[int] = []
    without: list[float] = []
    if n_chains >= 3 and max_rhat > RHAT_MAX:
        without = [
            _finite_max(_rhat(post.isel(chain=[k for k in range(n_chains) if k != c]),
                              vn).values())
            for c in range(n_chains)
        ]
        low = _low_logp_chains(lp)
        keep = [c for c in range(n_chains) if c not in low]
        current = max_rhat
        if low:
            stuck += low
            fails["stuck_low_logp"] = (
                f"chain(s) {low} stuck in modes of much lower log density (mean below the "
                f"{LOW_LOGP_QUANTILE:.0%} quantile of the best chain's)")
            current = (_finite_max(_rhat(post.isel(chain=keep), vn).values())
                       if len(keep) >= 2 else float("nan"))
        best = None if chain_logp is None else int(np.argmax(chain_logp))
        greedy: list[int] = []
        while len(keep) > 2 and current > STUCK_RHAT:
            trial = {
                c: _finite_max(_rhat(post.isel(chain=[k for k in keep if k != c]),
                                     vn).values())
                for c in keep if c != best
            }
            c_best = min(trial, key=trial.get)
            if not trial[c_best] - 1.0 <= STUCK_FRACTION * (current - 1.0):
                break
            greedy.append(int(c_best))
            keep.remove(c_best)
            current = trial[c_best]
        if greedy:
            stuck += greedy
            fails["stuck_apart"] = (f"chain(s) {greedy} stuck apart from the others (max "
                                    f"R-hat {current:.3f} without them)")

    # patients about whom the chains disagree
    prow = []
    if n_chains >= 2:
        for v in vn:
            if patient_dim not in post[v].dims:
                continue
            da = post[v]
            med = da.median(dim="draw")  # (chain, patient, ...)
            for q in table.loc[(table["variable"] == v) & (table["r_hat"] > RHAT_MAX),
                               "quantity"]:
                inside = q[len(v) + 1:-1].split(", ")
                sel = {}
                for dim, lab in zip([d for d in da.dims if d not in ("chain", "draw")], inside,
                                    strict=True):
                    coord = da[dim].values
                    match = [x for x in coord if str(x) == lab]
                    sel[dim] = match[0] if match else lab
                prow.append({
                    "patient": sel[patient_dim],
                    "quantity": q,
                    "r_hat": rhat[q],
                    "chain_medians": [float(x) for x in med.sel(sel).values],
                })
    if prow:
        patients = pd.DataFrame(prow).sort_values("r_hat", ascending=False)
        patients = patients.reset_index(drop=True)
    else:
        patients = pd.DataFrame(columns=["patient", "quantity", "r_hat", "chain_medians"])

    return ConvergenceReport(
        ok=not fails, problems=list(fails.values()), failed=list(fails), table=table,
        max_rhat=max_rhat,
        max_rhat_population=max_rhat_pop, min_ess_bulk=min_b, min_ess_tail=min_t,
        divergences=div, bfmi=bfmi, n_chains=n_chains, n_draws=n_draws, stuck_chains=stuck,
        chain_logp=chain_logp, rhat_without_chain=without, patients=patients,
    )


# ================================================================== until converged
def _rank(rep: ConvergenceReport) -> tuple:
    """Order of diagnostics, best last: met, then lower max R-hat, then higher min ESS."""
    rhat = rep.max_rhat if math.isfinite(rep.max_rhat) else math.inf
    ess = min(rep.min_ess_bulk, rep.min_ess_tail)
    return (bool(rep.ok), -rhat, ess if math.isfinite(ess) else -math.inf)


def _starts_from_draws(fit: Any, chains: list[int], rng: np.random.Generator,
                       n: int = START_POOL) -> list[dict[str, Any]]:
    """``n`` posterior draws of the sampled variables, at random from ``chains`` (constrained
    values, the ``initvals`` convention): starts for new chains in the bulk of the
    posterior that the previous round found."""
    post = fit.idata.posterior
    names = [v.name for v in fit.pm_model.free_RVs]
    cs = rng.choice(chains, size=n)
    ds = rng.integers(post.sizes["draw"], size=n)
    return [{v: np.asarray(post[v].isel(chain=int(c), draw=int(d)).values) for v in names}
            for c, d in zip(cs, ds, strict=True)]


def _growth(rep: ConvergenceReport, growth: float) -> float:
    """Factor on the draws of the next round: what the smallest ESS asks for (with
    ``ESS_MARGIN``), at least ``growth``, at most ``max(growth, MAX_GROWTH)``."""
    ess = min(rep.min_ess_bulk, rep.min_ess_tail)
    need = ESS_MIN * ESS_MARGIN / ess if math.isfinite(ess) and ess > 0 else math.inf
    return float(min(max(growth, need), max(growth, MAX_GROWTH)))


def _next_length(tune: int, draws: int, scale: float, per_iter: float, left: float,
                 growth: float | None) -> tuple[int, int]:
    """Warm-up and draws of the next round: ``scale`` times the last draws, warm-up grown
    alike up to ``TUNE_MAX`` (never below the last round's). When that round would not fit
    into the ``left`` seconds (at ``per_iter`` seconds per iteration), it keeps the last
    round's warm-up (its chains start from the last round's draws) and takes every iteration
    left as draws; when it would fit but a round ``growth`` times longer after it would not
    (``growth`` None: no filling), it takes every iteration left as draws: one long round
    rather than a short one and nothing."""
    new_tune = max(tune, min(int(round(tune * scale)), TUNE_MAX))
    new_draws = int(round(draws * scale))
    if per_iter <= 0:
        return new_tune, new_draws
    after = per_iter * (new_tune + new_draws) * (1.0 + (growth or 0.0))
    room = int(left / per_iter)  # iterations the budget has left
    if new_draws > room - new_tune:
        # a grown warm-up would take the draws the budget has room for (Liu 2022, 4 chains,
        # 945 s left: 1200 warm-up + 154 draws, so no round at all)
        new_tune = tune
        new_draws = room - tune
    elif growth is not None and after > left:
        new_draws = room - new_tune
    return new_tune, new_draws


def _combine(fit: Any, keep: list[int], new: Any) -> Any:
    """A PopulationFit of the ``keep`` chains of ``fit`` and every chain of ``new``."""
    import arviz as az

    from cartkinetics.fit.population import PopulationFit, add_groups

    parts = []
    for f, chains in ((fit, keep), (new, list(range(new.idata.posterior.sizes["chain"])))):
        groups = {g: getattr(f.idata, g).isel(chain=chains) for g in ("posterior",
                                                                        "sample_stats")
                  if g in f.idata.groups()}
        for g in groups:
            groups[g] = groups[g].assign_coords(chain=np.arange(len(chains)))
        parts.append(az.InferenceData(**groups))
    idata = az.concat(*parts, dim="chain", reset_dim=True)
    info = dict(new.info)
    combined = PopulationFit(idata, fit.data, info)
    add_groups(idata, fit.data, info, info["settings"]["seed"], combined)
    combined.pm_model = new.pm_model
    return combined


def fit_until_converged(
    data: Any,
    model: Any = "stein2019",
    *,
    time_budget: float = 1800.0,
    max_rounds: int = MAX_ROUNDS,
    growth: float = 2.0,
    draws: int = 1000,
    tune: int = 1000,
    chains: int = 4,
    seed: int | None = None,
    init: str = "support_point",
    progress: bool = True,
    **kwargs: Any,
) -> Any:
    """Fit until the convergence thresholds are met or the time budget is spent.

    Parameters
    ----------
    data, model
        As :func:`cartkinetics.fit.population.fit_population`.
    time_budget : float
        Seconds of wall time for all rounds (default 1800). A further round starts only when
        it fits into what is left (at the last round's seconds per iteration): an extended
        round that would not fit is shortened to what is left (the last round's warm-up, the
        rest as draws), and one after which a round
        ``growth`` times longer would not fit is lengthened to what is left (one long round
        rather than a short one and nothing); never below the last round's draws.
    max_rounds : int
        At most this many sampling rounds (the first fit included; default ``MAX_ROUNDS``,
        8: the time budget is the limit that binds, rounds are cheap on small cohorts).
    growth : float
        Least factor on the draws when a round is extended (default 2). The factor is what
        the smallest ESS asks for (400 x ``ESS_MARGIN`` / ESS), at most ``MAX_GROWTH`` (4).
        Warm-up grows alike up to ``TUNE_MAX`` (2000) iterations.
    draws, tune, chains, seed, init, progress
        Settings of the first round (as ``fit_population``; ``seed`` default: its fixed
        default). Each later round uses ``seed + round``.
    **kwargs
        Passed to ``fit_population`` (model options, sampler, ...).

    Returns
    -------
    PopulationFit
        The fit of the last round, or, when the thresholds are still missed, of the round
        with the best diagnostics (``returned_round``). ``fit.info["convergence"]`` records
        every round (action, settings, seconds, the diagnostics), ``ok`` and ``stopped``
        (``"converged"``,
        ``"time budget"`` or ``"max rounds"``). When the thresholds are still missed the
        fit says so (``fit.diagnostics()["ok"]`` is False) and a ``RuntimeWarning`` names
        the worst quantities.

    Notes
    -----
    Between rounds: when :func:`diagnose` finds stuck chains (in modes of much lower log
    density, or whose removal brings R-hat back near 1), those chains are run again, with the
    round's settings and a new seed, each from a point jittered by +-``RESTART_JITTER``
    around a draw of the other chains, and replace the stuck ones (their mean log densities
    are recorded in the round). Otherwise every chain is run again, each from a point
    jittered by +-``RESTART_JITTER`` around a draw of the round (the first round's dispersed
    starts have let R-hat see the modes; a new dispersed start would let warm-up leave
    chains in poor modes again: single40 seed 5, R-hat 1.57-1.61 after each such round), with
    the draws grown by the factor the ESS asks for (see ``growth``; warm-up alike up to
    ``TUNE_MAX``), and,
    when the round had divergent transitions, a target acceptance halfway to 1 (0.9 -> 0.95
    -> 0.975: smaller steps).
    When divergences are the only failure the length stays (smaller steps alone; the draws
    were enough).
    """
    from cartkinetics.fit.population import DEFAULT_SEED, DEFAULT_TARGET_ACCEPT, fit_population

    if time_budget <= 0 or max_rounds < 1 or growth < 1:
        raise CartKineticsError("time_budget must be > 0, max_rounds >= 1 and growth >= 1")
    seed = DEFAULT_SEED if seed is None else int(seed)
    kwargs.pop("warn", None)
    t_start = time.perf_counter()
    rounds: list[dict[str, Any]] = []
    rng = np.random.default_rng(seed)

    def run(n_chains: int, s: int, start: Any, tn: int, dr: int, jitter: float = 1.0) -> Any:
        return fit_population(data, model, draws=dr, tune=tn, chains=n_chains, seed=s,
                              init=start, init_jitter=jitter, progress=progress, warn=False,
                              **kwargs)

    t0 = time.perf_counter()
    fit = run(chains, seed, init, tune, draws)
    rep = diagnose(fit)
    rounds.append({"round": 1, "action": "first fit", "tune": tune, "draws": draws,
                   "chains": chains, "seed": seed, "init": str(init),
                   "seconds": time.perf_counter() - t0, "diagnostics": rep.to_dict(k=3)})
    stopped = "converged" if rep.ok else None
    best = (_rank(rep), 1, fit, rep)
    # seconds per iteration (warm-up or draw) of the last round that ran every chain: the
    # first round's includes compiling, so the estimate errs long
    per_iter = rounds[0]["seconds"] / (tune + draws)
    while not rep.ok:
        k = len(rounds) + 1
        if k > max_rounds:
            stopped = "max rounds"
            break
        elapsed = time.perf_counter() - t_start
        left = time_budget - elapsed
        stuck = list(rep.stuck_chains)
        if stuck:
            cost = rounds[-1]["seconds"] * len(stuck) / rounds[-1]["chains"]
        else:
            # divergences the only failure: the draws were enough, smaller steps alone
            only_div = rep.failed == ["divergences"]
            scale = 1.0 if only_div else _growth(rep, growth)
            next_tune, next_draws = _next_length(tune, draws, scale, per_iter, left,
                                                 None if only_div else growth)
            cost = per_iter * (next_tune + next_draws)
        if cost > left or (not stuck and next_draws < draws):
            stopped = "time budget"
            break
        t0 = time.perf_counter()
        s = seed + k - 1
        if stuck:
            good = [c for c in range(fit.idata.posterior.sizes["chain"]) if c not in stuck]
            start = _starts_from_draws(fit, good, rng)
            new = run(len(stuck), s, start, fit.info["settings"]["tune"],
                      fit.info["settings"]["draws"], RESTART_JITTER)
            logp = rep.chain_logp
            fit = _combine(fit, good, new)
            entry = {"action": "restart stuck chains", "restarted": stuck,
                     "discarded_chain_logp": None if logp is None else
                     [logp[c] for c in stuck],
                     "kept_chain_logp": None if logp is None else [logp[c] for c in good],
                     "tune": fit.info["settings"]["tune"],
                     "draws": fit.info["settings"]["draws"], "chains": len(stuck), "seed": s,
                     "init": f"jittered (+-{RESTART_JITTER}) around draws of the other "
                             "chains"}
        else:
            tune, draws = next_tune, next_draws
            if rep.divergences:
                # smaller steps: halve the distance of the target acceptance to 1
                ta = kwargs.get("target_accept") or DEFAULT_TARGET_ACCEPT
                kwargs["target_accept"] = min(0.99, 1.0 - (1.0 - ta) / 2.0)
            start = _starts_from_draws(fit, list(range(fit.idata.posterior.sizes["chain"])),
                                       rng)
            fit = run(chains, s, start, tune, draws, RESTART_JITTER)
            entry = {"action": "smaller steps (same length)" if only_div else
                     "extend (more draws)",
                     "tune": tune, "draws": draws, "chains": chains, "seed": s,
                     "init": f"jittered (+-{RESTART_JITTER}) around draws of the round",
                     "target_accept": kwargs.get("target_accept") or DEFAULT_TARGET_ACCEPT}
        rep = diagnose(fit)
        entry.update({"round": k, "seconds": time.perf_counter() - t0,
                      "diagnostics": rep.to_dict(k=3)})
        if not stuck:
            per_iter = entry["seconds"] / (tune + draws)
        rounds.append(entry)
        if _rank(rep) > best[0]:
            best = (_rank(rep), k, fit, rep)
        if rep.ok:
            stopped = "converged"
    returned = len(rounds)
    if not rep.ok and best[1] != len(rounds):
        # a later round can be worse (new chains stuck in another mode): the fit
        # returned is the round with the best diagnostics, and the record says which
        _, returned, fit, rep = best
    fit.info["convergence"] = {
        "ok": bool(rep.ok), "stopped": stopped, "time_budget": float(time_budget),
        "seconds": time.perf_counter() - t_start, "rounds": rounds,
        "returned_round": returned,
    }
    if not rep.ok:
        warnings.warn(
            f"population fit NOT converged after {len(rounds)} round(s) ({stopped}): "
            + "; ".join(rep.problems) + f"; worst: {rep.worst_text()}",
            RuntimeWarning, stacklevel=2,
        )
    return fit
