"""Non-compartmental analysis (NCA) of observed CAR-T series, as PKNCA and Phoenix do it.

Per series (patient x infusion x assay), in the series' unit (``unit``), days, and
unit x day for areas (``auc_unit``, e.g. ``copies*day/ug``):

* ``cmax``, ``tmax``: the expansion peak (:data:`cartkinetics.outcomes.EXPANSION_PEAK_RULE`,
  the same definition as fitted and simulated curves): the highest quantifiable level, the
  first when tied; when a series starts at day 0 with a fall (the infused cells), the
  highest level after its first local minimum;
* ``auc_0_<D>`` for every day D of ``auc_days`` (default 28 and 84) and ``auc_0_last``
  (to Tlast) by linear-up / log-down trapezoids (:func:`cartkinetics.outcomes.auc_linlog`,
  the same area code as model curves) on the profile cleaned by the BLQ rule; the level at
  day D is interpolated between the samples around it. When the cleaned profile ends before
  day D, ``auc_0_<D>`` is the area to its end with ``auc_0_<D>_truncated = True``: a lower
  bound, never an extrapolation;
* ``clast``, ``tlast``: last quantifiable level and its day; ``persistence`` = ``tlast``
  (the last day with the transgene above the LLOQ), ``persistence_censored`` True when the
  last sample of the series is quantifiable (persistence is then at least ``tlast``);
* ``half_life`` (days) of the contraction phase, ``lambda_z`` (1/day) by log-linear
  regression with PKNCA's automatic point selection (:func:`terminal_half_life`);
* ``doubling_time`` (days) of the expansion (:func:`expansion_doubling_time`).

BLQ rules (:class:`BLQRule`, ``blq_rule=``) treat values below the limit of quantification by
their position: before the first quantifiable value, between quantifiable values, after the
last. Each is set to 0 (``"zero"``; PKNCA calls it "keep") or left out (``"drop"``):

* ``"pknca"`` (default; PKNCA's ``conc.blq`` default first = keep, middle = drop,
  last = keep): before = 0, between = dropped, after = 0;
* ``"phoenix"`` (Phoenix WinNonlin's common setting): BLQ before Tmax = 0, after Tmax =
  missing (dropped);
* a dict ``{"first": ..., "middle": ..., "last": ...}`` with ``"zero"``/``"drop"`` values.

When a series has no sample at day 0 the profile starts at day 0 with level 0 (before the
infusion there are no CAR-T cells; the extravascular convention of NCA software).
A series with a quantifiable value never gets AUC = 0 over an interval that reaches past
that value.
"""

from __future__ import annotations

import html
import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from cartkinetics.data import KineticsData, Series, read_kinetics
from cartkinetics.errors import CartKineticsError
from cartkinetics.outcomes import EXPANSION_PEAK_RULE, auc_linlog, expansion_start
from cartkinetics.serialize import jsonable
from cartkinetics.units import area_unit

_ACTIONS = {"zero": "zero", "keep": "zero", "0": "zero", "drop": "drop", "missing": "drop"}
_POSITION_TEXT = {
    "first": "before the first quantifiable value",
    "middle": "between quantifiable values",
    "last": "after the last quantifiable value",
}


@dataclass(frozen=True)
class BLQRule:
    """How values below the LLOQ enter the NCA profile, by position.

    Attributes
    ----------
    name : str
    first, middle, last : {"zero", "drop"}
        BLQ before the first quantifiable value, between quantifiable values, after the
        last: set to 0 or left out.
    middle_after_tmax : {"zero", "drop"} or None
        When set, BLQ values between quantifiable values *after Tmax* follow this instead
        of ``middle`` (Phoenix: before Tmax 0, after Tmax missing).
    """

    name: str
    first: str
    middle: str
    last: str
    middle_after_tmax: str | None = None

    def describe(self) -> str:
        """One sentence stating the rule (shown in every NCA output)."""
        if self.name == "phoenix":
            return (
                "phoenix: BLQ before Tmax = 0, BLQ after Tmax dropped (missing); "
                "level 0 at day 0 when not sampled"
            )
        word = {"zero": "= 0", "drop": "dropped"}
        parts = [f"BLQ {_POSITION_TEXT['first']} {word[self.first]}"]
        if self.middle_after_tmax is None or self.middle_after_tmax == self.middle:
            parts.append(f"{_POSITION_TEXT['middle']} {word[self.middle]}")
        else:
            parts.append(
                f"{_POSITION_TEXT['middle']} {word[self.middle]} before Tmax, "
                f"{word[self.middle_after_tmax]} after"
            )
        parts.append(f"{_POSITION_TEXT['last']} {word[self.last]}")
        tag = " (PKNCA default)" if self.name == "pknca" else ""
        return f"{self.name}{tag}: " + "; ".join(parts) + "; level 0 at day 0 when not sampled"


#: named BLQ rules (``blq_rule="pknca"`` is the default)
BLQ_RULES: dict[str, BLQRule] = {
    "pknca": BLQRule("pknca", "zero", "drop", "zero"),
    "phoenix": BLQRule("phoenix", "zero", "zero", "drop", middle_after_tmax="drop"),
}
DEFAULT_BLQ_RULE = "pknca"
#: the default rule in words (kept for callers of the former module constant)
BLQ_RULE = BLQ_RULES[DEFAULT_BLQ_RULE].describe()

#: PKNCA's defaults for the terminal (contraction) half-life
MIN_HL_POINTS = 3
ADJ_R2_FACTOR = 1e-4
HALF_LIFE_RULE = (
    "log-linear regression on the last n >= 3 positive points after Tmax (Tmax excluded); "
    "n with the best adjusted R^2 and lambda_z > 0, the most points within 1e-4 (PKNCA)"
)
DOUBLING_RULE = (
    "ln 2 / slope of the log-linear regression of the quantifiable levels from the start of "
    "the expansion (first point, or the first local minimum after a fall from day 0) to Tmax "
    "inclusive; >= 2 points and a positive slope"
)
DEFAULT_AUC_DAYS: tuple[float, ...] = (28.0, 84.0)

#: keys of ``cartkinetics nca --json`` records (the day-28/84 names for the default days)
JSON_KEYS = (
    "patient",
    "infusion",
    "assay",
    "unit",
    "auc_unit",
    "cmax",
    "tmax",
    "auc_0_28",
    "auc_0_28_truncated",
    "auc_0_84",
    "auc_0_84_truncated",
    "auc_0_last",
    "clast",
    "tlast",
    "persistence",
    "persistence_censored",
    "half_life",
    "lambda_z",
    "lambda_z_r2_adj",
    "lambda_z_n",
    "lambda_z_start",
    "lambda_z_end",
    "doubling_time",
    "doubling_n",
    "doubling_start",
    "doubling_end",
    "n_obs",
    "n_blq",
    "blq_rule",
    "note",
)
_INT_COLUMNS = ("infusion", "n_obs", "n_blq", "lambda_z_n", "doubling_n")


def resolve_blq_rule(rule: str | BLQRule | Mapping[str, str] | None) -> BLQRule:
    """A :class:`BLQRule` from a name (``"pknca"``, ``"phoenix"``), a rule, or a dict
    ``{"first": ..., "middle": ..., "last": ...}`` of ``"zero"``/``"drop"`` (``"keep"``,
    PKNCA's word, means zero)."""
    if rule is None:
        return BLQ_RULES[DEFAULT_BLQ_RULE]
    if isinstance(rule, BLQRule):
        return rule
    if isinstance(rule, str):
        key = rule.strip().lower()
        if key not in BLQ_RULES:
            raise CartKineticsError(
                f"unknown blq_rule {rule!r}: use one of {sorted(BLQ_RULES)} or a dict "
                '{"first": "zero"|"drop", "middle": ..., "last": ...}'
            )
        return BLQ_RULES[key]
    if isinstance(rule, Mapping):
        allowed = {"first", "middle", "last", "middle_after_tmax"}
        extra = sorted(set(rule) - allowed)
        missing = sorted({"first", "middle", "last"} - set(rule))
        if extra or missing:
            raise CartKineticsError(
                f"blq_rule dict needs the keys first, middle, last (optional "
                f"middle_after_tmax); missing {missing}, unknown {extra}"
            )
        acts = {}
        for k, v in rule.items():
            a = _ACTIONS.get(str(v).strip().lower())
            if a is None:
                raise CartKineticsError(
                    f"blq_rule[{k!r}] = {v!r}: use 'zero' (PKNCA 'keep') or 'drop'"
                )
            acts[k] = a
        return BLQRule("custom", acts["first"], acts["middle"], acts["last"],
                       acts.get("middle_after_tmax"))
    raise CartKineticsError(f"blq_rule must be a name, a dict or a BLQRule, not {rule!r}")


def _auc_name(day: float) -> str:
    return f"auc_0_{float(day):g}".replace(".", "p")


def nca_columns(auc_days: Sequence[float] | float = DEFAULT_AUC_DAYS) -> list[str]:
    """Columns of the NCA table for these partial-AUC days (``auc_0_28`` and
    ``auc_0_28_truncated`` for day 28, ``auc_0_14`` for 14, ``auc_0_10p5`` for 10.5)."""
    days = _as_days(auc_days)
    cols = list(JSON_KEYS)
    i = cols.index("auc_0_28")
    del cols[i : i + 4]
    for d in reversed(days):
        cols[i:i] = [_auc_name(d), _auc_name(d) + "_truncated"]
    return cols




def _as_days(auc_days: Sequence[float] | float) -> tuple[float, ...]:
    days = (auc_days,) if isinstance(auc_days, int | float) else tuple(auc_days)
    out = []
    for d in days:
        d = float(d)
        if not math.isfinite(d) or d <= 0:
            raise CartKineticsError(f"auc_days must be positive days, got {d!r}")
        if d not in out:
            out.append(d)
    return tuple(out)


#: columns of the NCA table for the default days
NCA_COLUMNS = nca_columns()


def _linregress(x: np.ndarray, y: np.ndarray) -> tuple[float, float, float]:
    """Least-squares slope, intercept and R^2 of y on x (plain formulas)."""
    xm, ym = x.mean(), y.mean()
    sxx = float(((x - xm) ** 2).sum())
    sxy = float(((x - xm) * (y - ym)).sum())
    syy = float(((y - ym) ** 2).sum())
    slope = sxy / sxx
    intercept = ym - slope * xm
    r2 = 1.0 if syy == 0.0 else 1.0 - float(((y - intercept - slope * x) ** 2).sum()) / syy
    return slope, float(intercept), r2


def terminal_half_life(
    t: np.ndarray,
    c: np.ndarray,
    tmax: float,
    *,
    min_points: int = MIN_HL_POINTS,
    adj_r2_factor: float = ADJ_R2_FACTOR,
    allow_tmax: bool = False,
) -> dict[str, float]:
    """Terminal (contraction) half-life with PKNCA's automatic point selection.

    Candidates are the last k positive points after Tmax (at or after it when
    ``allow_tmax``), k = ``min_points`` .. all of them; ln c is regressed on t for each.
    The chosen set has lambda_z > 0 and an adjusted R^2 within ``adj_r2_factor`` of the
    best; among those, the one with the most points (PKNCA ``pk.calc.half.life``).

    Parameters
    ----------
    t : array, days (sorted); c : array, levels (zeros and BLQ left out by the caller or
        here: only c > 0 is used)
    tmax : float, day of the peak

    Returns
    -------
    dict
        ``half_life`` (days), ``lambda_z`` (1/day), ``lambda_z_r2_adj``, ``lambda_z_n``,
        ``lambda_z_start`` and ``lambda_z_end`` (days of the first and last point used);
        NaN (n 0) when fewer than ``min_points`` points or no set has lambda_z > 0.
    """
    out = dict(half_life=math.nan, lambda_z=math.nan, lambda_z_r2_adj=math.nan,
               lambda_z_n=0, lambda_z_start=math.nan, lambda_z_end=math.nan)
    if not math.isfinite(tmax):
        return out
    t = np.asarray(t, float)
    c = np.asarray(c, float)
    keep = (c > 0) & ((t >= tmax) if allow_tmax else (t > tmax))
    t, y = t[keep], np.log(c[keep])
    n = t.size
    if n < min_points:
        return out
    fits = []
    for k in range(min_points, n + 1):
        x, yy = t[n - k :], y[n - k :]
        slope, _, r2 = _linregress(x, yy)
        adj = 1.0 - (1.0 - r2) * (k - 1) / (k - 2) if k > 2 else r2
        fits.append((k, -slope, adj, x[0], x[-1]))
    best_adj = max(f[2] for f in fits)
    ok = [f for f in fits if f[1] > 0 and f[2] > best_adj - adj_r2_factor]
    if not ok:
        return out
    k, lz, adj, t0, t1 = max(ok, key=lambda f: f[0])
    out.update(half_life=math.log(2.0) / lz, lambda_z=lz, lambda_z_r2_adj=adj,
               lambda_z_n=int(k), lambda_z_start=float(t0), lambda_z_end=float(t1))
    return out


def expansion_doubling_time(
    t: np.ndarray, c: np.ndarray, start: int, imax: int
) -> dict[str, float]:
    """Doubling time of the expansion: ln 2 / slope of ln c on t from ``start`` to ``imax``.

    Parameters
    ----------
    t, c : arrays (days; levels, BLQ given as 0: only c > 0 is used)
    start, imax : int
        Index where the expansion starts (:func:`cartkinetics.outcomes.expansion_start`)
        and of the peak (included).

    Returns
    -------
    dict
        ``doubling_time`` (days), ``doubling_n``, ``doubling_start``, ``doubling_end``
        (days); NaN (n counts the points) with fewer than 2 points or a slope <= 0.
    """
    out = dict(doubling_time=math.nan, doubling_n=0, doubling_start=math.nan,
               doubling_end=math.nan)
    if start < 0 or imax < start:
        return out
    x = np.asarray(t, float)[start : imax + 1]
    y = np.asarray(c, float)[start : imax + 1]
    pos = y > 0
    x, y = x[pos], np.log(y[pos])
    out["doubling_n"] = int(x.size)
    if x.size < 2:
        return out
    slope, _, _ = _linregress(x, y)
    if slope > 0:
        out.update(doubling_time=math.log(2.0) / slope, doubling_start=float(x[0]),
                   doubling_end=float(x[-1]))
    return out


def _clean_profile(
    t: np.ndarray, c: np.ndarray, blq: np.ndarray, rule: BLQRule, tmax: float
) -> tuple[np.ndarray, np.ndarray]:
    """The profile after the BLQ rule: BLQ values set to 0 or dropped by position."""
    quant = np.flatnonzero(~blq)
    first, last = quant[0], quant[-1]
    keep = np.ones(t.size, dtype=bool)
    level = np.where(blq, 0.0, c)
    for i in np.flatnonzero(blq):
        if i < first:
            action = rule.first
        elif i > last:
            action = rule.last
        else:
            action = rule.middle
            if rule.middle_after_tmax is not None and t[i] > tmax:
                action = rule.middle_after_tmax
        keep[i] = action == "zero"
    return t[keep], level[keep]


def nca_series(
    series: Series,
    auc_days: Sequence[float] | float = DEFAULT_AUC_DAYS,
    *,
    blq_rule: str | BLQRule | Mapping[str, str] | None = None,
    auc_day: float | None = None,
    min_hl_points: int = MIN_HL_POINTS,
    adj_r2_factor: float = ADJ_R2_FACTOR,
    allow_tmax_in_half_life: bool = False,
) -> dict[str, Any]:
    """NCA of one series.

    Parameters
    ----------
    series : Series
        Observed series (days since infusion; levels in ``series.unit``).
    auc_days : float or sequence of float
        Days D of the partial areas ``auc_0_<D>`` (default 28 and 84).
    blq_rule : str, dict or BLQRule
        ``"pknca"`` (default), ``"phoenix"`` or a per-position dict (module docstring).
    auc_day : float, optional
        Former single-day form of ``auc_days`` (``auc_day=14`` is ``auc_days=(14,)``).
    min_hl_points, adj_r2_factor, allow_tmax_in_half_life
        Half-life point selection (PKNCA's defaults 3, 1e-4, False).

    Returns
    -------
    dict
        Keys :func:`nca_columns` (``auc_days``). Levels in ``unit``, times in days, areas
        in ``auc_unit`` (unit x day), ``lambda_z`` in 1/day. Without any quantifiable
        value, levels and times are NaN and the areas 0.
    """
    days = _as_days(auc_day if auc_day is not None else auc_days)
    rule = resolve_blq_rule(blq_rule)
    t = np.asarray(series.day, dtype=float)
    c = np.asarray(series.value, dtype=float)
    blq = np.asarray(series.blq, dtype=bool)
    order = np.argsort(t, kind="stable")
    t, c, blq = t[order], c[order], blq[order]
    out: dict[str, Any] = {
        "patient": series.patient,
        "infusion": series.infusion,
        "assay": series.assay,
        "unit": series.unit,
        "auc_unit": area_unit(series.unit),
        "n_obs": int(t.size),
        "n_blq": int(np.count_nonzero(blq)),
        "blq_rule": rule.describe(),
    }
    nan_keys = ("cmax", "tmax", "clast", "tlast", "persistence")
    quant = np.flatnonzero(~blq)
    if quant.size == 0:
        out.update({k: math.nan for k in nan_keys}, persistence_censored=False,
                   auc_0_last=0.0, note="no quantifiable value")
        for d in days:
            out[_auc_name(d)], out[_auc_name(d) + "_truncated"] = 0.0, False
        out.update(terminal_half_life(t, c, math.nan))
        out.update(expansion_doubling_time(t, c, -1, -1))
        return _ordered(out, days)
    notes = []
    # expansion peak on the raw profile, BLQ as 0 (below every quantifiable level)
    level0 = np.where(blq, 0.0, c)
    start = expansion_start(t, level0)
    imax = -1 if start < 0 else start + int(np.argmax(level0[start:]))
    if imax >= 0 and blq[imax]:  # only BLQ after the start: no quantifiable peak
        imax = -1
    tmax = float(t[imax]) if imax >= 0 else math.nan
    if imax < 0:
        notes.append(
            "no expansion peak: the level falls from day 0 (the infused cells) and never "
            "rises again; Cmax, Tmax and the half-life are not given"
        )
    last_q = int(quant[-1])
    ta, ca = _clean_profile(t, c, blq, rule, tmax if imax >= 0 else math.inf)
    if ta[0] > 0.0:
        ta = np.concatenate(([0.0], ta))
        ca = np.concatenate(([0.0], ca))
    tlast = float(t[last_q])
    auc_last = auc_linlog(ta, ca, tlast) if tlast > 0 else 0.0
    first_day = float(t[0])
    for d in days:
        name = _auc_name(d)
        if first_day >= d:
            # nothing sampled inside [0, D): an area would be the ramp from the assumed 0 at
            # day 0, not a measurement
            out[name], out[name + "_truncated"] = math.nan, False
            notes.append(f"AUC0-{d:g} not estimable: the first sample is at day {first_day:g}")
        elif ta[-1] >= d:
            out[name], out[name + "_truncated"] = float(auc_linlog(ta, ca, d)), False
        else:
            out[name], out[name + "_truncated"] = float(auc_linlog(ta, ca, ta[-1])), True
            notes.append(
                f"AUC0-{d:g} truncated at day {ta[-1]:g} (the profile ends before day {d:g}; "
                "a lower bound)"
            )
    out.update(
        cmax=float(c[imax]) if imax >= 0 else math.nan,
        tmax=tmax,
        auc_0_last=float(auc_last),
        clast=float(c[last_q]),
        tlast=tlast,
        persistence=tlast,
        persistence_censored=bool(last_q == t.size - 1),
    )
    hl = terminal_half_life(ta, ca, tmax, min_points=min_hl_points,
                            adj_r2_factor=adj_r2_factor, allow_tmax=allow_tmax_in_half_life)
    if imax >= 0 and not math.isfinite(hl["half_life"]):
        n_after = int(np.count_nonzero((ta > tmax) & (ca > 0)))
        notes.append(
            f"no half-life: {n_after} quantifiable point(s) after Tmax"
            + (f" (needs {min_hl_points})" if n_after < min_hl_points else
               "; the sets of last points with the best adjusted R^2 (within the factor) "
               "rise: lambda_z <= 0 (PKNCA gives no half-life either)")
        )
    out.update(hl)
    out.update(expansion_doubling_time(t, level0, start, imax))
    out["note"] = "; ".join(notes)
    return _ordered(out, days)


def _ordered(d: dict[str, Any], days: tuple[float, ...]) -> dict[str, Any]:
    return {k: d[k] for k in nca_columns(days)}


@dataclass(repr=False)
class NCAResult:
    """NCA of a set of series: one row per series (patient x infusion x assay).

    Attributes
    ----------
    table : DataFrame
        Columns :func:`nca_columns` (``auc_days``); see :func:`nca_series` for units.
    blq_rule : BLQRule
    auc_days : tuple of float
    series : list of Series
        The series analysed (for plots).
    """

    table: pd.DataFrame
    blq_rule: BLQRule
    auc_days: tuple[float, ...]
    series: list[Series] = field(default_factory=list)
    half_life_options: dict[str, Any] = field(default_factory=dict)

    # the rules, stated with every output
    @property
    def rules(self) -> dict[str, str]:
        """Each rule of this NCA in words (BLQ, peak, AUC, half-life, doubling time)."""
        return {
            "blq": self.blq_rule.describe(),
            "cmax": EXPANSION_PEAK_RULE,
            "auc": "linear-up / log-down trapezoids; AUC0-D truncated (a lower bound, "
            "flagged) when the profile ends before day D",
            "half_life": HALF_LIFE_RULE,
            "doubling_time": DOUBLING_RULE,
            "persistence": "last day with a quantifiable level (Tlast)",
        }

    def to_frame(self) -> pd.DataFrame:
        """The NCA table (a copy)."""
        return self.table.copy()

    def records(self) -> list[dict[str, Any]]:
        """JSON-safe records, one per series (NaN -> None), with units and the BLQ rule."""
        return jsonable(self.table)

    def to_dict(self) -> dict[str, Any]:
        """JSON-safe: ``rules``, ``auc_days``, ``time_unit`` and the ``records``."""
        return {
            "rules": self.rules,
            "blq_rule": self.blq_rule.name,
            "auc_days": list(self.auc_days),
            "time_unit": "day",
            "n_series": len(self.table),
            "records": self.records(),
        }

    def __len__(self) -> int:
        return len(self.table)

    def __getitem__(self, key: Any) -> Any:
        """Column(s) of the table, as on a DataFrame (``res["cmax"]``)."""
        return self.table[key]

    @property
    def columns(self) -> pd.Index:
        """Columns of the table."""
        return self.table.columns

    def summary(self, max_rows: int = 40) -> str:
        """The table in plain text with units and every rule."""
        cols = ["patient", "infusion", "assay", "cmax", "tmax", *[
            _auc_name(d) for d in self.auc_days], "auc_0_last", "tlast", "half_life",
            "doubling_time", "n_obs", "n_blq"]
        lines = [f"NCA of {len(self.table)} series"]
        units = sorted({f"{u} (areas {a})" for u, a in zip(
            self.table["unit"].astype(str), self.table["auc_unit"].astype(str), strict=True)})
        lines.append("Units: levels in " + ", ".join(units) + "; times and half-lives in days")
        t = self.table[cols].head(max_rows)
        rows = [[_fmt(v) for v in r] for r in t.itertuples(index=False)]
        widths = [max(len(c), *(len(r[i]) for r in rows)) if rows else len(c)
                  for i, c in enumerate(cols)]
        lines.append("  ".join(c.rjust(w) for c, w in zip(cols, widths, strict=True)))
        lines += ["  ".join(v.rjust(w) for v, w in zip(r, widths, strict=True)) for r in rows]
        if len(self.table) > max_rows:
            lines.append(f"... {len(self.table) - max_rows} more rows (to_frame())")
        for r in self.table.loc[self.table["note"] != ""].itertuples(index=False):
            lines.append(f"note: {r.patient} infusion {r.infusion} {r.assay}: {r.note}")
        for k, v in self.rules.items():
            lines.append(f"{'BLQ' if k == 'blq' else k} rule: {v}")
        return "\n".join(lines)

    def __repr__(self) -> str:
        n = len(self.table)
        assays = sorted(self.table["assay"].astype(str).unique()) if n else []
        units = sorted(self.table["unit"].astype(str).unique()) if n else []
        pts = self.table["patient"].nunique() if n else 0
        days = ", ".join(f"{d:g}" for d in self.auc_days)
        return (
            f"NCAResult({n} series, {pts} patients, assays {assays}, units {units}, "
            f"AUC days [{days}], BLQ rule {self.blq_rule.name!r}; .to_frame(), .summary())"
        )

    def _repr_html_(self) -> str:
        head = html.escape(repr(self))
        rules = "".join(f"<li>{html.escape(k)}: {html.escape(v)}</li>"
                        for k, v in self.rules.items())
        return f"<p>{head}</p><ul>{rules}</ul>" + self.table.head(40).to_html(
            index=False, na_rep="NA", float_format=lambda v: f"{v:.4g}")

    def plot(self, ax: Any = None, *, patient: str | None = None,
             infusion: int | None = None, **kw: Any) -> Any:
        """Observed profiles (log scale) with Cmax marked and the half-life regression line.

        Parameters
        ----------
        ax : matplotlib Axes, optional (a new figure when omitted)
        patient, infusion : optional
            Draw only these series (default: all).
        **kw : passed to ``ax.plot`` for the profiles.

        Returns
        -------
        matplotlib Axes
        """
        if ax is None:
            import matplotlib.pyplot as plt

            _, ax = plt.subplots(figsize=(6, 4), layout="constrained")
        rows = self.table.set_index(["patient", "infusion", "assay"])
        units = set()
        for s in self.series:
            if patient is not None and str(s.patient) != str(patient):
                continue
            if infusion is not None and int(s.infusion) != int(infusion):
                continue
            units.add(s.unit)
            q = ~np.asarray(s.blq, bool)
            line = ax.plot(s.day[q], s.value[q], "-o", ms=3, lw=1, **kw)[0]
            col = line.get_color()
            if (~q).any():
                ax.plot(s.day[~q], s.value[~q], "o", mfc="none", color=col, ms=4)
            r = rows.loc[(s.patient, s.infusion, s.assay)]
            if np.isfinite(r["cmax"]):
                ax.plot([r["tmax"]], [r["cmax"]], "*", color=col, ms=9)
            if np.isfinite(r["lambda_z"]):
                # regression line through the points used: refit for its intercept
                sel = q & (s.day >= r["lambda_z_start"]) & (s.day <= r["lambda_z_end"])
                sel &= s.value > 0
                slope, icpt, _ = _linregress(s.day[sel], np.log(s.value[sel]))
                xx = np.array([r["lambda_z_start"], r["lambda_z_end"]])
                ax.plot(xx, np.exp(icpt + slope * xx), "--", color=col, lw=1)
        ax.set_yscale("log")
        ax.set_xlabel("days since infusion")
        ax.set_ylabel("level" + (f" ({', '.join(sorted(units))})" if units else ""))
        ax.set_title("NCA: * Cmax, -- half-life fit, o BLQ at LLOQ", fontsize=9)
        return ax


def _fmt(v: Any) -> str:
    if isinstance(v, float | np.floating):
        return "NA" if not math.isfinite(v) else f"{v:.4g}"
    return str(v)


def nca(
    data: KineticsData | Series | Iterable[Series] | pd.DataFrame | str | Path,
    *,
    assay: str | None = None,
    auc_days: Sequence[float] | float = DEFAULT_AUC_DAYS,
    blq_rule: str | BLQRule | Mapping[str, str] | None = None,
    auc_day: float | None = None,
    min_hl_points: int = MIN_HL_POINTS,
    adj_r2_factor: float = ADJ_R2_FACTOR,
    allow_tmax_in_half_life: bool = False,
    **read_options: Any,
) -> NCAResult:
    """NCA per series (patient x infusion x assay), as PKNCA and Phoenix do it.

    Parameters
    ----------
    data : KineticsData, Series, list of Series, DataFrame or CSV path
        A DataFrame or path is read with :func:`cartkinetics.read_kinetics` (``read_options``
        are passed on, e.g. ``mapping=``).
    assay : str, optional
        Only this assay (also the assay of a file read here that has no assay column).
    auc_days : float or sequence of float
        Days D of the partial areas ``auc_0_<D>`` (default 28 and 84).
    blq_rule : str, dict or BLQRule
        ``"pknca"`` (default: BLQ before the first quantifiable value 0, between dropped,
        after the last 0), ``"phoenix"`` (before Tmax 0, after Tmax dropped) or a dict
        ``{"first": "zero"|"drop", "middle": ..., "last": ...}``.
    auc_day : float, optional
        Former single-day form (``auc_day=14`` gives only ``auc_0_14``).
    min_hl_points, adj_r2_factor, allow_tmax_in_half_life
        Half-life point selection (PKNCA's defaults: 3, 1e-4, False).

    Returns
    -------
    NCAResult
        ``.to_frame()``: one row per series, columns :func:`nca_columns`; levels in
        ``unit``, times in days, areas in ``auc_unit``.

    Examples
    --------
    >>> res = nca("kinetics.csv")                     # doctest: +SKIP
    >>> res.to_frame()[["patient", "cmax", "auc_0_28", "half_life"]]  # doctest: +SKIP
    """
    days = _as_days(auc_day if auc_day is not None else auc_days)
    rule = resolve_blq_rule(blq_rule)
    if isinstance(data, str | Path | pd.DataFrame):
        if assay is not None:
            read_options.setdefault("assay", assay)  # a file without an assay column
        data = read_kinetics(data, **read_options)
    if isinstance(data, KineticsData):
        series = data.series(assay=assay)
    elif isinstance(data, Series):
        series = [data]
    else:
        series = [s for s in data if assay is None or s.assay == assay]
    opts = dict(min_hl_points=min_hl_points, adj_r2_factor=adj_r2_factor,
                allow_tmax_in_half_life=allow_tmax_in_half_life)
    rows = [nca_series(s, days, blq_rule=rule, **opts) for s in series]
    table = pd.DataFrame(rows, columns=nca_columns(days))
    table = table.astype({c: int for c in _INT_COLUMNS})
    for c in table.columns:
        if c.endswith("_truncated") or c == "persistence_censored":
            table[c] = table[c].astype(bool)
    return NCAResult(table, rule, days, list(series), opts)


def nca_records(table: pd.DataFrame | NCAResult) -> list[dict[str, Any]]:
    """JSON-ready records of an NCA table (NaN -> None); see :meth:`NCAResult.records`."""
    if isinstance(table, NCAResult):
        return table.records()
    return jsonable(table)
