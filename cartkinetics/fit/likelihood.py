"""The one likelihood of the project: log-normal observations, BLQ by Beal's M3.

Every fit in ``cartkinetics`` (the individual lmfit fits of :mod:`cartkinetics.fit.individual`
and the hierarchical PyMC fit of :mod:`cartkinetics.fit.population`) uses the definitions of
this module, so that "the likelihood of a series" means one thing.

Definition
----------
For one series with model prediction ``f(t_i) > 0`` (assay units, e.g. copies/ug) and
residual SD ``sigma`` on the natural-log scale:

* quantified rows (``y_i`` above the limit):
  ``ln y_i = ln f(t_i) + sigma * eps_i``, with ``eps_i`` standard normal (``error="normal"``,
  i.e. a proportional error on the natural scale) or Student-t with ``nu`` degrees of
  freedom (``error="student_t"``, robust to outliers). The log-density is that of ``ln y``:
  ``log p = log pdf(z_i) - ln sigma``, ``z_i = (ln y_i - ln f(t_i)) / sigma``
  (no ``-ln y_i`` Jacobian term: it does not depend on the parameters, and leaving it out
  makes -2 log L comparable across series of different units).
* censored rows (below the LLOQ ``L_i``), ``censoring="M3"`` (Beal 2001, method M3):
  ``log P(Y_i < L_i) = log cdf((ln L_i - ln f(t_i)) / sigma)``, evaluated with
  :func:`scipy.special.log_ndtr` (normal) or :func:`scipy.stats.t.logcdf` (Student-t),
  which stay accurate far in the tail where ``log(ndtr(z))`` would underflow.
* ``censoring="M1"`` discards the censored rows (Beal's M1). It exists only to show how
  much M1 biases the slow terminal phase; :func:`prepare` records how many rows it dropped
  and every result states the censoring method it used.

Rows with a non-positive quantified value (e.g. the "0 before expansion" written at day 0 by
some data sets, which the data layer already marks as excluded) cannot enter a log-scale
likelihood: :func:`prepare` leaves them out and lists them in ``PreparedSeries.notes``.

API (re-used by the Bayesian helper)
------------------------------------
``ResidualModel(error="normal", sigma=0.56, nu=4.0, censoring="M3", estimate_sigma=False)``
    The residual error description.
``prepare(series, censoring="M3") -> PreparedSeries``
    Data preparation: times, ``log_y`` (NaN on censored rows), ``log_lloq`` (limit on
    censored rows), ``censored`` mask, row index into the series, counts and notes.
``loglik_terms(log_pred, data, residual, sigma=None) -> ndarray``
    Per-row log-likelihood (quantified: log-density of ln y; censored: M3 log-probability).
``loglik(log_pred, data, residual, sigma=None) -> float``
    Their sum. ``neg2ll`` = -2 times it.
``row_neg2ll_derivatives(log_pred, data, residual, sigma)``
    First and second derivatives of each row's -2 log L with respect to ``ln f`` and
    ``ln sigma`` (used for Gauss-Newton information matrices).

A PyMC implementation of the same definition uses, per series, ``pm.Normal`` /
``pm.StudentT`` on ``data.log_y[~data.censored]`` and ``pm.Censored`` (upper=``log_lloq``)
or a ``pm.Potential`` of ``log_ndtr`` on the censored rows, with the same ``sigma``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
from scipy import special, stats

from cartkinetics.errors import CartKineticsError

CENSORING_METHODS = ("M3", "M1")
ERROR_MODELS = ("normal", "student_t")
LOG_2PI = float(np.log(2.0 * np.pi))


@dataclass(frozen=True)
class ResidualModel:
    """Residual error on the natural-log scale and the censoring method.

    Attributes
    ----------
    error : {"normal", "student_t"}
        Distribution of ``(ln y - ln f) / sigma``.
    sigma : float
        Residual SD on the ln scale (dimensionless; 0.56 in Stein 2019). The starting
        value when ``estimate_sigma`` is True, otherwise fixed.
    nu : float
        Degrees of freedom of the Student-t error (ignored for ``"normal"``).
    censoring : {"M3", "M1"}
        M3: BLQ rows enter as ``log P(Y < LLOQ)``; M1: BLQ rows are discarded.
    estimate_sigma : bool
        Estimate ``sigma`` (as ``ln sigma``) with the model parameters.
    """

    error: str = "normal"
    sigma: float = 0.56
    nu: float = 4.0
    censoring: str = "M3"
    estimate_sigma: bool = False

    def __post_init__(self) -> None:
        if self.error not in ERROR_MODELS:
            raise CartKineticsError(f"error must be one of {ERROR_MODELS}, got {self.error!r}")
        if self.censoring not in CENSORING_METHODS:
            raise CartKineticsError(
                f"censoring must be one of {CENSORING_METHODS}, got {self.censoring!r}"
            )
        if not (np.isfinite(self.sigma) and self.sigma > 0):
            raise CartKineticsError(f"sigma must be a positive number, got {self.sigma!r}")
        if self.error == "student_t" and not (np.isfinite(self.nu) and self.nu > 0):
            raise CartKineticsError(f"nu must be a positive number, got {self.nu!r}")

    def describe(self) -> str:
        """One-line description of the residual model and censoring method (for reports)."""
        err = "normal" if self.error == "normal" else f"Student-t (nu={self.nu:g})"
        sig = "estimated" if self.estimate_sigma else f"fixed at {self.sigma:g}"
        cens = (
            "M3 (BLQ rows enter as log P(Y < LLOQ))"
            if self.censoring == "M3"
            else "M1 (BLQ rows discarded)"
        )
        return f"{err} error on ln scale, sigma {sig}; censoring {cens}"


@dataclass
class PreparedSeries:
    """A series ready for the likelihood (see :func:`prepare`).

    Attributes
    ----------
    t : ndarray (n,)
        Days of the rows that enter the likelihood.
    log_y : ndarray (n,)
        ln of the quantified values; NaN on censored rows.
    log_lloq : ndarray (n,)
        ln of the limit on censored rows; NaN elsewhere.
    censored : ndarray (n,) of bool
    rows : ndarray (n,) of int
        Index of each row in the original series arrays.
    censoring : str
        "M3" or "M1".
    n_blq_total : int
        BLQ rows in the series (before M1 dropped them).
    n_dropped : int
        Rows left out (M1-dropped BLQ rows and non-positive values).
    notes : list of str
        What was left out and why.
    """

    t: np.ndarray
    log_y: np.ndarray
    log_lloq: np.ndarray
    censored: np.ndarray
    rows: np.ndarray
    censoring: str
    n_blq_total: int = 0
    n_dropped: int = 0
    notes: list[str] = field(default_factory=list)

    @property
    def n(self) -> int:
        return int(self.t.size)

    @property
    def n_quantified(self) -> int:
        return int(np.count_nonzero(~self.censored))

    @property
    def n_censored(self) -> int:
        return int(np.count_nonzero(self.censored))


def prepare(series: Any, censoring: str = "M3") -> PreparedSeries:
    """Turn a :class:`cartkinetics.data.Series` into log-observations for the likelihood.

    Parameters
    ----------
    series : Series (or any object with ``day``, ``value``, ``lloq``, ``blq`` arrays)
        ``value`` holds the observation, or the limit on BLQ rows.
    censoring : {"M3", "M1"}

    Returns
    -------
    PreparedSeries
    """
    if censoring not in CENSORING_METHODS:
        raise CartKineticsError(f"censoring must be one of {CENSORING_METHODS}, got {censoring!r}")
    day = np.asarray(series.day, dtype=float)
    value = np.asarray(series.value, dtype=float)
    blq = np.asarray(series.blq, dtype=bool)
    lloq = np.asarray(getattr(series, "lloq", np.full(day.shape, np.nan)), dtype=float)
    if not (day.shape == value.shape == blq.shape == lloq.shape):
        raise CartKineticsError(
            f"series {getattr(series, 'key', '')}: day, value, lloq and blq lengths differ"
        )
    notes: list[str] = []
    # the limit of a censored row: its own LLOQ, else the value written in its place
    limit = np.where(blq & np.isfinite(lloq) & (lloq > 0), lloq, value)
    bad_limit = blq & ~(np.isfinite(limit) & (limit > 0))
    if np.any(bad_limit):
        raise CartKineticsError(
            f"series {getattr(series, 'key', '')}: BLQ rows at days {day[bad_limit].tolist()} "
            "have no positive limit (value or lloq)"
        )
    nonpos = ~blq & ~(np.isfinite(value) & (value > 0))
    keep = ~nonpos
    if np.any(nonpos):
        notes.append(
            f"{int(nonpos.sum())} row(s) with a non-positive or missing value at day(s) "
            f"{day[nonpos].tolist()} left out (no log-scale likelihood)"
        )
    n_blq = int(blq.sum())
    if censoring == "M1" and n_blq:
        keep &= ~blq
        notes.append(f"M1: {n_blq} BLQ row(s) discarded")
    rows = np.flatnonzero(keep)
    cens = blq[rows]
    with np.errstate(divide="ignore", invalid="ignore"):
        log_y = np.where(cens, np.nan, np.log(np.where(cens, 1.0, value[rows])))
        log_lloq = np.where(cens, np.log(limit[rows]), np.nan)
    return PreparedSeries(
        t=day[rows].copy(),
        log_y=log_y,
        log_lloq=log_lloq,
        censored=cens,
        rows=rows,
        censoring=censoring,
        n_blq_total=n_blq,
        n_dropped=int(day.size - rows.size),
        notes=notes,
    )


def _t_logpdf(z: np.ndarray, nu: float) -> np.ndarray:
    return stats.t.logpdf(z, nu)


def loglik_terms(
    log_pred: np.ndarray,
    data: PreparedSeries,
    residual: ResidualModel,
    sigma: float | None = None,
) -> np.ndarray:
    """Per-row log-likelihood.

    Parameters
    ----------
    log_pred : ndarray (n,)
        ln of the model prediction at ``data.t`` (same units as the data).
    data : PreparedSeries
    residual : ResidualModel
    sigma : float, optional
        Residual SD on the ln scale (default ``residual.sigma``).

    Returns
    -------
    ndarray (n,)
        Quantified rows: ``log pdf(z) - ln sigma`` (density of ln y); censored rows
        (M3): ``log cdf((ln LLOQ - ln f) / sigma)``. -inf where the prediction is not
        positive and finite.
    """
    s = float(residual.sigma if sigma is None else sigma)
    lp = np.asarray(log_pred, dtype=float)
    out = np.empty(lp.shape)
    q = ~data.censored
    c = data.censored
    zq = (data.log_y[q] - lp[q]) / s
    zc = (data.log_lloq[c] - lp[c]) / s
    if residual.error == "normal":
        out[q] = -0.5 * zq * zq - 0.5 * LOG_2PI - np.log(s)
        out[c] = special.log_ndtr(zc)
    else:
        out[q] = _t_logpdf(zq, residual.nu) - np.log(s)
        out[c] = stats.t.logcdf(zc, residual.nu)
    out[~np.isfinite(lp)] = -np.inf
    return out


def loglik(
    log_pred: np.ndarray,
    data: PreparedSeries,
    residual: ResidualModel,
    sigma: float | None = None,
) -> float:
    """Total log-likelihood of one series (see :func:`loglik_terms`)."""
    return float(np.sum(loglik_terms(log_pred, data, residual, sigma)))


def neg2ll(
    log_pred: np.ndarray,
    data: PreparedSeries,
    residual: ResidualModel,
    sigma: float | None = None,
) -> float:
    """-2 log L of one series."""
    return -2.0 * loglik(log_pred, data, residual, sigma)


def _row_neg2ll(u: np.ndarray, s: float, data: PreparedSeries, residual: ResidualModel):
    """-2 log L per row as a function of u = ln f (array) and s = ln sigma (scalar)."""
    sig = np.exp(s)
    out = np.empty(u.shape)
    q, c = ~data.censored, data.censored
    zq = (data.log_y[q] - u[q]) / sig
    zc = (data.log_lloq[c] - u[c]) / sig
    if residual.error == "normal":
        out[q] = zq * zq + 2.0 * s
        out[c] = -2.0 * special.log_ndtr(zc)
    else:
        out[q] = -2.0 * _t_logpdf(zq, residual.nu) + 2.0 * s
        out[c] = -2.0 * stats.t.logcdf(zc, residual.nu)
    return out


def row_neg2ll_derivatives(
    log_pred: np.ndarray,
    data: PreparedSeries,
    residual: ResidualModel,
    sigma: float | None = None,
) -> dict[str, np.ndarray]:
    """Derivatives of each row's -2 log L with respect to ``u = ln f`` and ``s = ln sigma``.

    Normal error: exact closed forms (with the inverse Mills ratio on censored rows).
    Student-t: central differences of the row function (smooth in ``u`` and ``s``).

    Returns
    -------
    dict with arrays (n,): ``du``, ``ds``, ``duu``, ``dus``, ``dss``.
    """
    s = float(np.log(residual.sigma if sigma is None else sigma))
    sig = np.exp(s)
    u = np.asarray(log_pred, dtype=float)
    q, c = ~data.censored, data.censored
    n = u.size
    d = {k: np.zeros(n) for k in ("du", "ds", "duu", "dus", "dss")}
    if residual.error == "normal":
        z = (data.log_y[q] - u[q]) / sig
        d["du"][q] = -2.0 * z / sig
        d["ds"][q] = 2.0 - 2.0 * z * z
        d["duu"][q] = 2.0 / sig**2
        d["dus"][q] = 4.0 * z / sig
        d["dss"][q] = 4.0 * z * z
        zc = (data.log_lloq[c] - u[c]) / sig
        # inverse Mills ratio phi/Phi, computed on the log scale for the far tail
        lam = np.exp(-0.5 * zc * zc - 0.5 * LOG_2PI - special.log_ndtr(zc))
        g = lam * (zc + lam)  # -d lam / dz
        d["du"][c] = 2.0 * lam / sig
        d["ds"][c] = 2.0 * lam * zc
        d["duu"][c] = 2.0 * g / sig**2
        d["dus"][c] = (2.0 * g * zc - 2.0 * lam) / sig
        d["dss"][c] = 2.0 * zc * (g * zc - lam)
        return d
    h = 1e-4
    f0 = _row_neg2ll(u, s, data, residual)
    fup, fum = _row_neg2ll(u + h, s, data, residual), _row_neg2ll(u - h, s, data, residual)
    fsp, fsm = _row_neg2ll(u, s + h, data, residual), _row_neg2ll(u, s - h, data, residual)
    fpp = _row_neg2ll(u + h, s + h, data, residual)
    fmm = _row_neg2ll(u - h, s - h, data, residual)
    d["du"] = (fup - fum) / (2 * h)
    d["ds"] = (fsp - fsm) / (2 * h)
    d["duu"] = (fup - 2 * f0 + fum) / h**2
    d["dss"] = (fsp - 2 * f0 + fsm) / h**2
    d["dus"] = (fpp - fup - fsp + 2 * f0 - fum - fsm + fmm) / (2 * h * h)
    return d


def residual_vector(
    log_pred: np.ndarray,
    dlog_pred: np.ndarray | None,
    data: PreparedSeries,
    residual: ResidualModel,
    sigma: float,
    with_sigma: bool,
    sigma_lower: float = 1e-3,
) -> tuple[np.ndarray, np.ndarray | None]:
    """Residual vector ``r`` with ``sum(r**2) = -2 log L + constant``, and its Jacobian.

    Elements, with ``z = (ln y - ln f)/sigma`` and ``zc = (ln LLOQ - ln f)/sigma``:

    * quantified, normal: ``r = z`` (signed);
      Student-t: ``r = sign(z) sqrt((nu+1) ln(1 + z^2/nu))``;
    * censored (M3): ``r = sqrt(-2 log cdf(zc))`` (>= 0 because cdf <= 1);
    * when ``with_sigma``: one extra element ``sqrt(2 n_q ln sigma + K)`` with
      ``K = 1 - 2 n_q ln(sigma_lower)``, which carries the ``2 ln sigma`` normalising terms
      and stays real for ``sigma >= sigma_lower``.

    Parameters
    ----------
    log_pred : (n,) ln f
    dlog_pred : (n, k) d ln f / d theta, or None (no Jacobian)
    sigma : float, residual SD (ln scale)
    with_sigma : bool, append the ln-sigma column and the normalising element

    Returns
    -------
    r : (m,) ; J : (m, k [+1]) or None
    """
    q, c = ~data.censored, data.censored
    u = np.asarray(log_pred, dtype=float)
    nq = int(q.sum())
    n = u.size
    m = n + (1 if with_sigma else 0)
    r = np.empty(m)
    z = (data.log_y[q] - u[q]) / sigma
    zc = (data.log_lloq[c] - u[c]) / sigma
    # dr/dz for the quantified elements and dr/dzc for the censored ones
    if residual.error == "normal":
        r[:n][q] = z
        drz = np.ones_like(z)
        lcdf = special.log_ndtr(zc)
        lpdf = -0.5 * zc * zc - 0.5 * LOG_2PI
    else:
        nu = residual.nu
        hz = (nu + 1.0) * np.log1p(z * z / nu)
        rq = np.sign(z) * np.sqrt(hz)
        r[:n][q] = rq
        small = np.abs(z) < 1e-6
        with np.errstate(divide="ignore", invalid="ignore"):
            drz = np.where(
                small,
                np.sqrt((nu + 1.0) / nu),
                (nu + 1.0) * z / (nu + z * z) / np.where(small, 1.0, np.abs(rq)) * np.sign(z),
            )
        lcdf = stats.t.logcdf(zc, nu)
        lpdf = stats.t.logpdf(zc, nu)
    rc = np.sqrt(np.maximum(-2.0 * lcdf, 0.0))
    r[:n][c] = rc
    if with_sigma:
        K = 1.0 - 2.0 * nq * np.log(sigma_lower)
        r[n] = np.sqrt(max(2.0 * nq * np.log(sigma) + K, 0.0))
    if dlog_pred is None:
        return r, None
    k = dlog_pred.shape[1]
    J = np.zeros((m, k + (1 if with_sigma else 0)))
    # quantified: dz/dtheta = -dlnf/dtheta / sigma ; dz/dln sigma = -z
    J[:n][q, :k] = -(drz / sigma)[:, None] * dlog_pred[q]
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        # censored: dr/dzc = -(pdf/cdf)/r ; 0 in the limit r -> 0 (cdf -> 1)
        drc = np.where(rc > 1e-150, -np.exp(lpdf - lcdf) / np.where(rc > 1e-150, rc, 1.0), 0.0)
    J[:n][c, :k] = -(drc / sigma)[:, None] * dlog_pred[c]
    if with_sigma:
        J[:n][q, k] = -drz * z
        J[:n][c, k] = -drc * zc
        J[n, k] = nq / r[n] if r[n] > 0 else 0.0
    return r, J
