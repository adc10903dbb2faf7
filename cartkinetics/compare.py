"""First versus second infusion, paired within patients.

For the patients with both infusions, :func:`compare_infusions` compares any per-series
outcome -- Cmax, Tmax, AUC0-28, AUC0-84, half-life, doubling time, ... -- from an NCA result
or a table of fitted outcomes alike. How a metric is compared is decided in one place,
:func:`metric_kind`:

* a **ratio metric** (a level, an area, a rate or a duration of a phase: ``cmax``,
  ``clast``, ``c_day<D>``, ``auc_0_<D>``, ``auc_0_last``, ``half_life``, ``lambda_z``,
  ``doubling_time``): per-patient ratio second/first; geometric mean ratio with a 95% CI
  from Student's t on the log ratios; Wilcoxon signed-rank test on the log ratios;
* a **time metric** (a day since infusion: ``tmax``, ``tlast``, ``persistence``):
  per-patient difference second - first (days); median difference with a distribution-free
  95% CI for the pseudo-median (Hodges-Lehmann: order statistics of the Walsh averages at
  the exact signed-rank critical value); Wilcoxon signed-rank test.

Units: a metric in the level unit (or its area, unit x day) is compared only when a patient's
two rows carry the same ``unit`` and all patients share it; otherwise
:class:`~cartkinetics.errors.CartKineticsError` names the patient and both units. A
comparison with no pair is no result: it warns, its summary says so first, and
``cartkinetics compare`` exits with status 1.

The Wilcoxon p-value is exact (``scipy.stats.wilcoxon(method="exact")``) when the
differences have no ties and no zeros; otherwise it comes from the exact permutation
distribution of the signed-rank statistic (``scipy.stats.PermutationMethod``, every sign
pattern enumerated up to 16 non-zero pairs, Monte Carlo with 99,999 beyond), zeros dropped
(Wilcoxon's convention). Above ``EXACT_MAX`` (200) non-zero pairs the p-value and the
Hodges-Lehmann critical value use the normal approximation of the signed-rank null (tie- and
continuity-corrected). The test used is named in the output.
"""

from __future__ import annotations

import html
import math
import re
import warnings
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd
from scipy import stats

from cartkinetics.errors import CartKineticsError
from cartkinetics.serialize import jsonable

#: metrics compared by default
METRICS = ("cmax", "tmax", "auc_0_28")
#: keys of each metric's result (ratio metrics add ratio_gm, time metrics median_difference)
RESULT_KEYS = ("median_first", "median_second", "ci_low", "ci_high", "p_value", "test")
#: NCA flag of an AUC0-28 that ends before day 28 (a lower bound)
TRUNCATED = "auc_0_28_truncated"

# ---- the one place that says how each metric is compared and in which unit ----
_TIME_METRICS = ("tmax", "tlast", "persistence")
_LEVEL_METRICS = ("cmax", "clast")
_DURATION_METRICS = ("half_life", "doubling_time")
_RATE_METRICS = ("lambda_z",)
_AREA = re.compile(r"^auc_0_(last|\d+(p\d+)?)$")
_LEVEL_AT = re.compile(r"^c_day\d+(p\d+)?$")
COMPARISON_RULE = (
    "ratio metrics (levels, areas, half-life, doubling time, lambda_z): geometric mean of "
    "the ratios second/first; time metrics (tmax, tlast, persistence): differences "
    "second - first in days"
)


def metric_kind(name: str) -> str:
    """``"ratio"`` or ``"difference"``: how a metric is compared (module docstring).

    Raises
    ------
    CartKineticsError
        For a column that is no known outcome (so that no count or flag is compared by a
        rule chosen by accident).
    """
    if name in _TIME_METRICS:
        return "difference"
    if (name in _LEVEL_METRICS or name in _DURATION_METRICS or name in _RATE_METRICS
            or _AREA.match(name) or _LEVEL_AT.match(name)):
        return "ratio"
    raise CartKineticsError(
        f"cannot compare {name!r}: ratio metrics are cmax, clast, c_day<D>, auc_0_<D>, "
        f"auc_0_last, half_life, doubling_time, lambda_z; time metrics are tmax, tlast, "
        "persistence", column=name
    )


def metric_unit(name: str, level_unit: str | None) -> str | None:
    """Unit of a metric given the series' level unit (``copies/ug`` -> Cmax ``copies/ug``,
    AUC ``copies*day/ug``, Tmax and half-life ``day``, lambda_z ``1/day``)."""
    from cartkinetics.units import area_unit

    if name in _TIME_METRICS or name in _DURATION_METRICS:
        return "day"
    if name in _RATE_METRICS:
        return "1/day"
    if _AREA.match(name):
        return area_unit(level_unit)
    return level_unit


def _depends_on_level_unit(name: str) -> bool:
    return metric_unit(name, "X") != metric_unit(name, "Y")


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


def _as_table(table: Any) -> tuple[pd.DataFrame, str]:
    from cartkinetics.noncompartmental import NCAResult

    if isinstance(table, NCAResult):
        return table.to_frame(), "NCA"
    if isinstance(table, pd.DataFrame):
        return table, "table"
    raise CartKineticsError(
        f"compare_infusions needs an NCA result or a DataFrame, not {type(table).__name__}"
    )


def _check_units(t: pd.DataFrame, a: pd.DataFrame, b: pd.DataFrame, patients: list[str],
                 metrics: Sequence[str], first: int, second: int) -> str | None:
    """The one level unit of the pairs; CartKineticsError when a pair or the cohort mixes
    units in a metric that depends on it."""
    if "unit" not in t.columns or not any(_depends_on_level_unit(m) for m in metrics):
        return None
    units: dict[str, list[str]] = {}
    for p in patients:
        u1, u2 = a.loc[p, "unit"], b.loc[p, "unit"]
        u1 = None if pd.isna(u1) else str(u1)
        u2 = None if pd.isna(u2) else str(u2)
        if u1 != u2:
            raise CartKineticsError(
                f"patient {p}: infusion {first} is in {u1} and infusion {second} in {u2}; "
                f"a ratio of levels in different units is no exposure ratio. Convert both "
                "series to one unit before NCA (read_kinetics converts units of one kind to "
                "the assay's canonical unit; copies/ug and cells/uL measure different "
                "things: compare one assay with assay=)", column="unit"
        )
        units.setdefault(str(u1), []).append(p)
    if len(units) > 1:
        listing = "; ".join(f"{u}: {', '.join(ps[:5])}{' ...' if len(ps) > 5 else ''}"
                            for u, ps in sorted(units.items()))
        raise CartKineticsError(
            f"the pairs are in different units ({listing}): a geometric mean ratio across "
            "units mixes different measures. Convert to one unit before NCA, or compare one "
            "assay (assay=)", column="unit")
    return next(iter(units)) if units else None


def compare_infusions(
    table: Any,
    *,
    first: int = 1,
    second: int = 2,
    assay: str | None = None,
    level: float = 0.95,
    metrics: Sequence[str] = METRICS,
    basis: str | None = None,
) -> Comparison:
    """Paired comparison of two infusions per patient.

    Parameters
    ----------
    table : NCAResult or DataFrame
        One row per patient x infusion with ``patient``, ``infusion`` and the metric
        columns (e.g. :func:`cartkinetics.nca` output or a table of fitted outcomes); a
        ``unit`` column (the level unit) is checked; an ``assay`` column with several
        assays needs ``assay=``.
    first, second : int
        Infusion numbers to compare (second / first, second - first).
    assay : str, optional
        Restrict to this assay.
    level : float
        Confidence level of the intervals.
    metrics : sequence of str
        Columns to compare (default ``cmax``, ``tmax``, ``auc_0_28``); each is compared by
        :func:`metric_kind`: levels, areas, half-lives by ratio, days by difference.
    basis : str, optional
        What the outcomes are (``"NCA"`` for an NCA result, ``"model"`` for fitted curves);
        shown in the output.

    Returns
    -------
    Comparison
        Per metric {n, median_first, median_second, ratio_gm (ratio metrics) or
        median_difference and hodges_lehmann (time metrics), ci_low, ci_high, p_value,
        test, ci_method, kind, unit}; ``pairs`` per patient. A pair missing a metric (NaN,
        or a non-positive value for a ratio) is left out of that metric only; a pair whose
        ``auc_0_<D>`` is flagged truncated (a lower bound) leaves that AUC's comparison
        (``n_truncated_excluded``).

    Raises
    ------
    CartKineticsError
        A required column is missing, a metric is no known outcome, a patient has two rows
        for one infusion, several assays are mixed without ``assay=``, or the units differ
        between a patient's infusions or across patients.
    """
    t, source = _as_table(table)
    metrics = tuple(dict.fromkeys(metrics))
    kinds = {m: metric_kind(m) for m in metrics}
    need = ["patient", "infusion", *metrics]
    lower = {str(c).lower(): c for c in t.columns}
    missing = [c for c in need if c not in lower]
    if missing:
        raise CartKineticsError(
            f"compare_infusions needs columns {need}; missing {missing}", column=missing[0]
        )
    flags = {m: f"{m}_truncated" for m in metrics if f"{m}_truncated" in lower}
    extra = ["assay", "unit", *flags.values()]
    t = t.rename(columns={lower[c]: c for c in [*need, *extra] if c in lower})
    if "assay" in t.columns:
        if assay is not None:
            t = t[t["assay"].astype(str).str.lower() == str(assay).lower()]
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
    unit = _check_units(t, a, b, patients, metrics, first, second)
    pairs = pd.DataFrame({"patient": patients})
    if unit is not None:
        pairs["unit"] = unit
    for m in metrics:
        pairs[f"{m}_first"] = a.loc[patients, m].to_numpy(dtype=float) if patients else []
        pairs[f"{m}_second"] = b.loc[patients, m].to_numpy(dtype=float) if patients else []
        with np.errstate(divide="ignore", invalid="ignore"):
            if kinds[m] == "ratio":
                pairs[f"{m}_ratio"] = pairs[f"{m}_second"] / pairs[f"{m}_first"]
            else:
                pairs[f"{m}_difference"] = pairs[f"{m}_second"] - pairs[f"{m}_first"]
    results: dict[str, dict[str, Any]] = {}
    for m in metrics:
        x, y = pairs[f"{m}_first"].to_numpy(), pairs[f"{m}_second"].to_numpy()
        ok = np.isfinite(x) & np.isfinite(y)
        truncated = np.zeros(len(patients), dtype=bool)
        if m in flags and patients:
            # an AUC that stops before its day is a lower bound: a ratio of lower bounds is
            # no exposure ratio, so such pairs leave that AUC's comparison
            flag = t[flags[m]].fillna(False).astype(bool)
            fa = flag[t["infusion"] == first].set_axis(a.index)
            fb = flag[t["infusion"] == second].set_axis(b.index)
            truncated = fa.loc[patients].to_numpy() | fb.loc[patients].to_numpy()
            pairs[flags[m]] = truncated
        if kinds[m] == "ratio":
            ok &= (x > 0) & (y > 0) & ~truncated
            res = _ratio_summary(x[ok], y[ok], level)
            res["estimate"], res["estimate_name"] = res["ratio_gm"], "GM ratio"
        else:
            res = _difference_summary(x[ok], y[ok], level)
            # the CI belongs to the Hodges-Lehmann estimate, not to the median difference
            res["estimate"] = res.get("hodges_lehmann", math.nan)
            res["estimate_name"] = "Hodges-Lehmann difference"
        if m in flags:
            res["n_truncated_excluded"] = int(truncated.sum())
        # every patient with both infusions is in the comparison or named here with why
        res["excluded"] = [
            {"patient": p, "reason": _why_excluded(m, x[i], y[i], bool(truncated[i]),
                                                   kinds[m], first, second)}
            for i, p in enumerate(patients) if not ok[i]
        ]
        res["kind"] = kinds[m]
        res["unit"] = metric_unit(m, unit)
        results[m] = res
    if "auc_0_28" in results:
        results["auc_0_28"].setdefault("n_truncated_excluded", 0)
    warning = ""
    if not patients:
        n1, n2 = a.index.nunique(), b.index.nunique()
        warning = (
            f"NO PAIRS: no patient has both infusion {first} ({n1} patients) and infusion "
            f"{second} ({n2} patients): nothing was compared. Check the infusion numbers "
            "(a second dose without OCC may have been read as part of the first infusion)"
        )
        warnings.warn(warning, UserWarning, stacklevel=2)
    return Comparison(
        n_pairs=len(patients), metrics=results, pairs=pairs, first=first, second=second,
        assay=assay if assay is not None else (
            str(t["assay"].iloc[0]) if "assay" in t.columns and len(t) else None),
        unit=unit, level=level, basis=basis or source, warning=warning,
    )


class Comparison(Mapping):
    """First versus second infusion (output of :func:`compare_infusions`).

    Attributes
    ----------
    n_pairs : int
        Patients with both infusions.
    metrics : dict
        Metric name -> result dict (see :func:`compare_infusions`).
    pairs : DataFrame
        One row per patient: first and second values, ratios or differences, flags.
    first, second : int
    assay, unit : str or None
        Assay compared and its level unit (None when the table has no ``unit``).
    level : float
    basis : str
        What was compared (``"NCA"``, ``"model"``, ``"table"``).
    warning : str
        Non-empty when nothing was compared (0 pairs).

    Mapping access (``cmp["cmax"]``, ``cmp["n_pairs"]``, ``cmp["pairs"]``) is kept for code
    written against the former dict result; new code uses the attributes.
    """

    def __init__(self, *, n_pairs: int, metrics: dict[str, dict[str, Any]],
                 pairs: pd.DataFrame, first: int = 1, second: int = 2,
                 assay: str | None = None, unit: str | None = None, level: float = 0.95,
                 basis: str = "table", warning: str = "") -> None:
        self.n_pairs = int(n_pairs)
        self.metrics = metrics
        self.pairs = pairs
        self.first, self.second = int(first), int(second)
        self.assay, self.unit = assay, unit
        self.level = float(level)
        self.basis = basis
        self.warning = warning

    # -- former dict interface ------------------------------------------------------
    def _keys(self) -> list[str]:
        return ["n_pairs", *self.metrics, "pairs", "basis"]

    def __getitem__(self, key: str) -> Any:
        if key in self.metrics:
            return self.metrics[key]
        if key in ("n_pairs", "pairs", "basis"):
            return getattr(self, key)
        raise KeyError(key)

    def __setitem__(self, key: str, value: Any) -> None:
        if key != "basis":
            raise KeyError(f"only 'basis' can be set on a Comparison, not {key!r}")
        self.basis = str(value)

    def __iter__(self) -> Iterator[str]:
        return iter(self._keys())

    def __len__(self) -> int:
        return len(self._keys())

    # -- results ----------------------------------------------------------------------
    @property
    def ok(self) -> bool:
        """True when at least one pair was compared."""
        return self.n_pairs > 0

    def to_dict(self) -> dict[str, Any]:
        """JSON-safe: ``n_pairs``, one entry per metric (with ``kind`` and ``unit``),
        ``first``, ``second``, ``assay``, ``unit``, ``basis``, ``rule`` and ``warning``
        (empty unless nothing was compared). No pairs table (see :attr:`pairs`)."""
        out: dict[str, Any] = {"n_pairs": self.n_pairs}
        for m, r in self.metrics.items():
            out[m] = jsonable(r)
        out.update(first=self.first, second=self.second, assay=self.assay, unit=self.unit,
                   basis=self.basis, rule=COMPARISON_RULE, warning=self.warning)
        return out

    def to_frame(self) -> pd.DataFrame:
        """One row per metric: kind, unit, n, medians, estimate (GM ratio or median
        difference), CI, p-value, test."""
        rows = []
        for m, r in self.metrics.items():
            ratio = r["kind"] == "ratio"
            rows.append({
                "metric": m, "kind": r["kind"], "unit": r.get("unit"), "n": r["n"],
                "median_first": r["median_first"], "median_second": r["median_second"],
                "estimate": r["ratio_gm"] if ratio else r["median_difference"],
                "estimate_name": "GM ratio" if ratio else "median difference (days)",
                "ci_low": r["ci_low"], "ci_high": r["ci_high"],
                "ci_of": "GM ratio" if ratio else "Hodges-Lehmann estimate",
                "p_value": r["p_value"], "test": r["test"],
                "n_truncated_excluded": r.get("n_truncated_excluded", 0),
                "n_excluded": len(r.get("excluded") or []),
            })
        return pd.DataFrame(rows)

    def summary(self) -> str:
        """Plain-text report (for the CLI, the demo and the HTML report)."""
        return _format(self)

    def __repr__(self) -> str:
        head = (f"Comparison(infusion {self.second} vs {self.first}, {self.n_pairs} pairs, "
                f"basis {self.basis!r}, assay {self.assay!r}, unit {self.unit!r}")
        if not self.ok:
            return head + "; NO PAIRS: nothing compared)"
        parts = []
        for m, r in self.metrics.items():
            if r["kind"] == "ratio":
                parts.append(f"{m} GM ratio {_num(r['ratio_gm'])} (n {r['n']}, "
                             f"p {_num(r['p_value'])})")
            else:
                parts.append(f"{m} median diff {_num(r['median_difference'])} d "
                             f"(n {r['n']}, p {_num(r['p_value'])})")
        return head + "; " + "; ".join(parts) + ")"

    def _repr_html_(self) -> str:
        warn = f"<p><b>{html.escape(self.warning)}</b></p>" if self.warning else ""
        return (f"<p>{html.escape(repr(self).split(';')[0])})</p>{warn}"
                + self.to_frame().to_html(index=False, na_rep="NA",
                                          float_format=lambda v: f"{v:.4g}")
                + f"<p>{html.escape(COMPARISON_RULE)}</p>")

    def plot(self, ax: Any = None, *, metric: str | None = None, **kw: Any) -> Any:
        """One line per patient from the first to the second infusion, with the medians.

        Parameters
        ----------
        ax : matplotlib Axes, optional (a new figure when omitted)
        metric : str, optional
            Which metric (default: the first compared).
        **kw : Axes properties set after drawing (e.g. ``title=``, ``ylim=``).

        Returns
        -------
        matplotlib Axes
        """
        from cartkinetics.plots import paired_plot

        metric = metric or next(iter(self.metrics))
        if metric not in self.metrics:
            raise CartKineticsError(f"{metric!r} was not compared: {list(self.metrics)}")
        if ax is None:
            import matplotlib.pyplot as plt

            _, ax = plt.subplots(figsize=(3.6, 3.6), layout="constrained")
        paired_plot(self, ax=[ax], metrics=(metric,), unit=self.unit)
        r = self.metrics[metric]
        if r["kind"] == "ratio":
            ax.set_yscale("log")
        u = r.get("unit")
        ax.set_ylabel(f"{metric} ({u})" if u else metric)
        if kw:
            ax.set(**kw)
        return ax


def _num(v: float) -> str:
    if v is None or not math.isfinite(v):
        return "NA"
    return f"{v:,.0f}" if abs(v) >= 1000 else f"{v:.3g}"


def _why_excluded(metric: str, x: float, y: float, truncated: bool, kind: str, first: int,
                  second: int) -> str:
    """Why a patient with both infusions is not in a metric's comparison."""
    if truncated:
        return f"{metric} truncated (a series ends before that day: a lower bound)"
    reasons = []
    for inf, v in ((first, x), (second, y)):
        if not math.isfinite(v):
            reasons.append(f"{metric} not estimable at infusion {inf}")
        elif kind == "ratio" and v <= 0:
            reasons.append(f"{metric} is {v:g} at infusion {inf} (no ratio)")
    return "; ".join(reasons) or "not comparable"


def _format(c: Comparison) -> str:
    lines = [f"First vs second infusion: {c.n_pairs} patients with both"]
    if not c.ok:
        lines[0] += " (nothing to compare)"
        return f"WARNING: {c.warning}\n" + lines[0]
    lines[0] += (f" ({c.basis}" + (f", {c.assay}" if c.assay else "")
                 + (f", levels in {c.unit}" if c.unit else "") + ")")
    pct = f"{c.level:.0%}"
    for m, r in c.metrics.items():
        u = r.get("unit")
        ci_ok = all(r[k] is not None and math.isfinite(r[k]) for k in ("ci_low", "ci_high"))
        if r["kind"] == "ratio":
            ci = (f"{pct} CI {r['ci_low']:.3g} to {r['ci_high']:.3g}" if ci_ok
                  else f"no {pct} CI: too few pairs")
            est = f"GM ratio {r['ratio_gm']:.3g} ({ci})"
        else:
            # the distribution-free CI belongs to the Hodges-Lehmann estimate, not the median
            ci = (f"{pct} CI {r['ci_low']:.3g} to {r['ci_high']:.3g}" if ci_ok
                  else f"no {pct} CI: too few pairs")
            est = (
                f"median difference {r['median_difference']:+.3g} d; Hodges-Lehmann "
                f"{r.get('hodges_lehmann', math.nan):+.3g} d ({ci})"
            )
        lines.append(
            f"  {m:<9} median {_num(r['median_first'])} -> {_num(r['median_second'])}"
            f"{' ' + u if u else ''} (n = {r['n']}); {est}; "
            f"p = {r['p_value']:.4g} [{r['test']}]"
        )
        left = r.get("excluded") or []
        if left:
            shown = "; ".join(f"{e['patient']}: {e['reason']}" for e in left[:6])
            more = f"; ... ({len(left)} in all)" if len(left) > 6 else ""
            lines.append(f"            {len(left)} patient(s) left out of {m}: {shown}{more}")
    lines.append(f"  rule: {COMPARISON_RULE}")
    return "\n".join(lines)


def compare_json(result: Comparison) -> dict[str, Any]:
    """Deprecated: use ``result.to_dict()``."""
    warnings.warn("compare_json(r) is deprecated: use r.to_dict()", DeprecationWarning,
                  stacklevel=2)
    return result.to_dict()


def format_compare(result: Comparison) -> str:
    """Deprecated: use ``result.summary()``."""
    warnings.warn("format_compare(r) is deprecated: use r.summary()", DeprecationWarning,
                  stacklevel=2)
    return result.summary()
