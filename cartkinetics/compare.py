"""First versus second infusion, paired within patients.

For the patients with both infusions, :func:`compare_infusions` compares peak level (Cmax),
time to peak (Tmax) and exposure (AUC0-28) from any per-series table -- NCA results or fitted
outcomes alike:

* Cmax and AUC0-28: per-patient ratio second/first; geometric mean ratio with a 95% CI from
  Student's t on the log ratios; exact Wilcoxon signed-rank test on the log ratios;
* Tmax: per-patient difference second - first (days); median difference with a
  distribution-free 95% CI for the pseudo-median (Hodges-Lehmann: order statistics of the
  Walsh averages at the exact signed-rank critical value); exact Wilcoxon signed-rank test.

The Wilcoxon p-value is exact (``scipy.stats.wilcoxon(method="exact")``) when the
differences have no ties and no zeros; otherwise it comes from the exact permutation
distribution of the signed-rank statistic (``scipy.stats.PermutationMethod``, every sign
pattern enumerated up to 16 non-zero pairs, Monte Carlo with 99,999 beyond), zeros dropped
(Wilcoxon's convention). Above ``EXACT_MAX`` (200) non-zero pairs the p-value and the
Hodges-Lehmann critical value use the normal approximation of the signed-rank null (tie- and
continuity-corrected). The test used is named in the output.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pandas as pd
from scipy import stats

from cartkinetics.errors import CartKineticsError

METRICS = ("cmax", "tmax", "auc_0_28")
RATIO_METRICS = ("cmax", "auc_0_28")
#: keys of each metric's result (ratio metrics use ratio_gm, tmax median_difference)
RESULT_KEYS = ("median_first", "median_second", "ci_low", "ci_high", "p_value", "test")
#: NCA flag of an AUC0-28 that ends before day 28 (a lower bound)
TRUNCATED = "auc_0_28_truncated"


#: above this many non-zero pairs the signed-rank null is taken as normal: the exact one
#: costs O(n^3) (scipy's exact p takes ~3 s at n = 1000 and underflows to 0 at n = 2000)
EXACT_MAX = 200


def _signed_rank_null(n: int) -> np.ndarray:
    """P(T = t), t = 0..n(n+1)/2: the exact null distribution of the signed-rank statistic.

    Built as probabilities (halved at each rank) rather than counts of subsets, which
    overflow a float past n ~ 1000.
    """
    m = n * (n + 1) // 2
    prob = np.zeros(m + 1, dtype=float)
    prob[0] = 1.0
    for r in range(1, n + 1):
        prob[r:] = 0.5 * (prob[r:] + prob[: m + 1 - r].copy())
        prob[:r] *= 0.5
    return prob


def hodges_lehmann_ci(d: np.ndarray, level: float = 0.95) -> tuple[float, float, float, float]:
    """Hodges-Lehmann estimate and distribution-free CI for the pseudo-median of ``d``.

    The CI is [W_(k+1), W_(M-k)] over the M = n(n+1)/2 sorted Walsh averages
    (d_i + d_j)/2, i <= j, with k the largest integer such that P(T <= k) <= (1-level)/2
    under the exact signed-rank null (Hollander & Wolfe, Nonparametric Statistical Methods,
    section 3.3). Exact without ties; conservative-approximate with them. Above
    ``EXACT_MAX`` pairs k comes from the normal approximation of the null (mean M/2,
    variance n(n+1)(2n+1)/24, continuity-corrected).

    Returns
    -------
    (estimate, ci_low, ci_high, achieved_level)
        CI bounds NaN when n is too small for the level (n <= 5 at 95%).
    """
    d = np.asarray(d, dtype=float)
    n = d.size
    if n == 0:
        return math.nan, math.nan, math.nan, math.nan
    i, j = np.triu_indices(n)
    walsh = np.sort((d[i] + d[j]) / 2.0)
    est = float(np.median(walsh))
    alpha2 = (1.0 - level) / 2.0
    if n > EXACT_MAX:
        mean = walsh.size / 2.0
        sd = math.sqrt(n * (n + 1) * (2 * n + 1) / 24.0)
        k = int(math.floor(mean - 0.5 + float(stats.norm.ppf(alpha2)) * sd))
        achieved = 1.0 - 2.0 * float(stats.norm.cdf((k + 0.5 - mean) / sd))
        return est, float(walsh[k]), float(walsh[walsh.size - 1 - k]), achieved
    cdf = np.cumsum(_signed_rank_null(n))
    ok = np.flatnonzero(cdf <= alpha2 + 1e-12)
    if ok.size == 0:
        return est, math.nan, math.nan, math.nan
    k = int(ok[-1])
    achieved = 1.0 - 2.0 * float(cdf[k])
    return est, float(walsh[k]), float(walsh[walsh.size - 1 - k]), achieved


def wilcoxon_signed_rank(d: np.ndarray) -> tuple[float, str]:
    """Two-sided signed-rank p-value for paired differences ``d`` and the test's name."""
    d = np.asarray(d, dtype=float)
    nz = d[d != 0.0]
    if nz.size == 0:
        return (math.nan if d.size == 0 else 1.0), "Wilcoxon signed-rank (no non-zero differences)"
    ties = np.unique(np.abs(nz)).size < nz.size
    zeros = nz.size < d.size
    if nz.size == 1:
        # both sign patterns of a single difference are as extreme as the one observed
        why = " (zeros dropped)" if zeros else ""
        return 1.0, f"Wilcoxon signed-rank, exact (one non-zero difference{why})"
    if nz.size > EXACT_MAX:
        # large cohorts: normal approximation with scipy's tie correction, zeros dropped
        res = stats.wilcoxon(nz, method="asymptotic", correction=True)
        return float(res.pvalue), (
            "Wilcoxon signed-rank, normal approximation (continuity- and tie-corrected"
            + ("; zeros dropped)" if zeros else ")")
        )
    if not ties and not zeros:
        res = stats.wilcoxon(d, method="exact")
        return float(res.pvalue), "Wilcoxon signed-rank, exact"
    n_patterns = 2**nz.size
    method = stats.PermutationMethod(n_resamples=min(n_patterns, 99999), rng=0)
    # zeros are dropped here (Wilcoxon's convention) so that the permutation count is 2^n
    res = stats.wilcoxon(nz, method=method)
    kind = "exact permutation" if n_patterns <= 99999 else "Monte Carlo permutation (99999)"
    why = " and ".join(w for w, f in (("ties", ties), ("zeros dropped", zeros)) if f)
    return float(res.pvalue), f"Wilcoxon signed-rank, {kind} ({why})"


def _ratio_summary(first: np.ndarray, second: np.ndarray, level: float) -> dict[str, Any]:
    n = first.size
    out: dict[str, Any] = {
        "n": int(n),
        "median_first": float(np.median(first)) if n else math.nan,
        "median_second": float(np.median(second)) if n else math.nan,
        "ratio_gm": math.nan,
        "ci_low": math.nan,
        "ci_high": math.nan,
        "p_value": math.nan,
        "test": "",
        "ci_method": f"{level:.0%} CI of the geometric mean ratio: Student t on log ratios",
    }
    if n == 0:
        out["test"] = "no pairs"
        return out
    lr = np.log(second / first)
    mean = float(lr.mean())
    out["ratio_gm"] = math.exp(mean)
    if n >= 2:
        se = float(lr.std(ddof=1)) / math.sqrt(n)
        q = float(stats.t.ppf(0.5 + level / 2.0, n - 1))
        out["ci_low"], out["ci_high"] = math.exp(mean - q * se), math.exp(mean + q * se)
    p, test = wilcoxon_signed_rank(lr)
    out["p_value"], out["test"] = p, test + " on log ratios"
    return out


def _difference_summary(first: np.ndarray, second: np.ndarray, level: float) -> dict[str, Any]:
    n = first.size
    d = second - first
    out: dict[str, Any] = {
        "n": int(n),
        "median_first": float(np.median(first)) if n else math.nan,
        "median_second": float(np.median(second)) if n else math.nan,
        "median_difference": float(np.median(d)) if n else math.nan,
        "ci_low": math.nan,
        "ci_high": math.nan,
        "p_value": math.nan,
        "test": "no pairs" if n == 0 else "",
        "ci_method": "",
    }
    if n == 0:
        return out
    est, lo, hi, achieved = hodges_lehmann_ci(d, level)
    out["hodges_lehmann"] = est
    out["ci_low"], out["ci_high"] = lo, hi
    out["ci_method"] = (
        "Hodges-Lehmann distribution-free CI (Walsh averages, exact signed-rank critical "
        + (
            f"value), achieved level {achieved:.1%}"
            if math.isfinite(achieved)
            else f"value): too few pairs for a {level:.0%} CI"
        )
    )
    p, test = wilcoxon_signed_rank(d)
    out["p_value"], out["test"] = p, test + " on differences"
    return out


def compare_infusions(
    table: pd.DataFrame,
    *,
    first: int = 1,
    second: int = 2,
    assay: str | None = None,
    level: float = 0.95,
) -> dict[str, Any]:
    """Paired comparison of two infusions per patient.

    Parameters
    ----------
    table : DataFrame
        One row per patient x infusion with columns ``patient, infusion, cmax, tmax,
        auc_0_28`` (e.g. :func:`cartkinetics.nca` output or a table of fitted outcomes);
        an ``assay`` column, when present with several assays, needs ``assay=``.
    first, second : int
        Infusion numbers to compare (second / first, second - first).
    assay : str, optional
        Restrict to this assay.
    level : float
        Confidence level of the intervals.

    Returns
    -------
    dict
        ``n_pairs``; ``cmax`` and ``auc_0_28`` each {median_first, median_second, ratio_gm,
        ci_low, ci_high, p_value, test, n, ci_method}; ``tmax`` {median_first,
        median_second, median_difference, ci_low, ci_high, p_value, test, n, ci_method,
        hodges_lehmann} (days); ``pairs``: DataFrame per patient with the first and second
        values, ``cmax_ratio``, ``auc_0_28_ratio`` and ``tmax_difference``. A pair missing a
        metric (NaN, or a non-positive level for a ratio) is left out of that metric only.
        When the table has NCA's ``auc_0_28_truncated`` column, a pair with either AUC0-28
        truncated (the series ends before day 28: a lower bound) is left out of
        ``auc_0_28``; ``auc_0_28["n_truncated_excluded"]`` counts them and ``pairs`` gets
        the flag column.

    Raises
    ------
    CartKineticsError
        A required column is missing, a patient has two rows for one infusion, or several
        assays are mixed without ``assay=``.
    """
    need = ["patient", "infusion", *METRICS]
    lower = {str(c).lower(): c for c in table.columns}
    missing = [c for c in need if c not in lower]
    if missing:
        raise CartKineticsError(
            f"compare_infusions needs columns {need}; missing {missing}", column=missing[0]
        )
    t = table.rename(columns={lower[c]: c for c in [*need, "assay", TRUNCATED] if c in lower})
    if "assay" in t.columns:
        if assay is not None:
            t = t[t["assay"] == assay]
        elif t["assay"].nunique() > 1:
            raise CartKineticsError(
                f"the table mixes assays {sorted(t['assay'].unique())}: pass assay= to pick one"
            )
    t = t.assign(patient=t["patient"].astype(str), infusion=t["infusion"].astype(int))
    dup = t.duplicated(["patient", "infusion"])
    if dup.any():
        r = t[dup].iloc[0]
        raise CartKineticsError(
            f"patient {r['patient']} has more than one row for infusion {r['infusion']}",
            column="infusion",
        )
    a = t[t["infusion"] == first].set_index("patient")
    b = t[t["infusion"] == second].set_index("patient")
    patients = sorted(set(a.index) & set(b.index))
    pairs = pd.DataFrame({"patient": patients})
    for m in METRICS:
        pairs[f"{m}_first"] = a.loc[patients, m].to_numpy(dtype=float) if patients else []
        pairs[f"{m}_second"] = b.loc[patients, m].to_numpy(dtype=float) if patients else []
    with np.errstate(divide="ignore", invalid="ignore"):
        for m in RATIO_METRICS:
            pairs[f"{m}_ratio"] = pairs[f"{m}_second"] / pairs[f"{m}_first"]
    pairs["tmax_difference"] = pairs["tmax_second"] - pairs["tmax_first"]
    # an NCA AUC0-28 that stops before day 28 is a lower bound (nca: auc_0_28_truncated):
    # a ratio of lower bounds is no exposure ratio, so such pairs leave the AUC comparison
    truncated = np.zeros(len(patients), dtype=bool)
    if TRUNCATED in t.columns and patients:
        flag = t[TRUNCATED].fillna(False).astype(bool)
        ta = flag[t["infusion"] == first].set_axis(a.index)
        tb = flag[t["infusion"] == second].set_axis(b.index)
        truncated = ta.loc[patients].to_numpy() | tb.loc[patients].to_numpy()
        pairs[TRUNCATED] = truncated
    out: dict[str, Any] = {"n_pairs": len(patients)}
    for m in METRICS:
        x, y = pairs[f"{m}_first"].to_numpy(), pairs[f"{m}_second"].to_numpy()
        ok = np.isfinite(x) & np.isfinite(y)
        if m in RATIO_METRICS:
            ok &= (x > 0) & (y > 0)
            if m == "auc_0_28":
                ok &= ~truncated
            out[m] = _ratio_summary(x[ok], y[ok], level)
        else:
            out[m] = _difference_summary(x[ok], y[ok], level)
    out["auc_0_28"]["n_truncated_excluded"] = int(truncated.sum())
    out["pairs"] = pairs
    return out


def compare_json(result: dict[str, Any]) -> dict[str, Any]:
    """JSON-ready form of :func:`compare_infusions` output (no pairs table; NaN -> None)."""

    def clean(v: Any) -> Any:
        if isinstance(v, float | np.floating):
            return None if not math.isfinite(float(v)) else float(v)
        if isinstance(v, np.integer):
            return int(v)
        return v

    out: dict[str, Any] = {"n_pairs": int(result["n_pairs"])}
    for m in METRICS:
        out[m] = {k: clean(v) for k, v in result[m].items()}
    return out


def _num(v: float) -> str:
    if not math.isfinite(v):
        return "NA"
    return f"{v:,.0f}" if abs(v) >= 1000 else f"{v:.3g}"


def format_compare(result: dict[str, Any]) -> str:
    """Plain-text table of the comparison (for the CLI and the demo)."""
    lines = [f"First vs second infusion: {result['n_pairs']} patients with both"]
    if not result["n_pairs"]:
        lines[0] += " (nothing to compare)"
        return lines[0]
    for m in METRICS:
        r = result[m]
        if m in RATIO_METRICS:
            est = f"GM ratio {r['ratio_gm']:.3g} (95% CI {r['ci_low']:.3g}-{r['ci_high']:.3g})"
        else:
            # the distribution-free CI belongs to the Hodges-Lehmann estimate, not the median
            est = (
                f"median difference {r['median_difference']:+.3g} d; Hodges-Lehmann "
                f"{r.get('hodges_lehmann', math.nan):+.3g} d "
                f"(95% CI {r['ci_low']:.3g} to {r['ci_high']:.3g})"
            )
        lines.append(
            f"  {m:<9} median {_num(r['median_first'])} -> {_num(r['median_second'])} "
            f"(n = {r['n']}); {est}; "
            f"p = {r['p_value']:.4g} [{r['test']}]"
        )
        if r.get("n_truncated_excluded"):
            lines.append(
                f"            {r['n_truncated_excluded']} pair(s) left out: AUC0-28 truncated "
                "before day 28 (a lower bound)"
            )
    return "\n".join(lines)
