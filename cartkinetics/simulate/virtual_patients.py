"""Virtual populations: where each virtual patient's parameters and covariates come from.

Three sources, one interface (``sample(rng, n, model) -> (params (n, np), covariates)``):

* :class:`ModelPopulation` -- a library model's published typical values and between-subject
  variability (log-normal: ``log p_i = log p_typical + eta_i``, ``eta ~ N(0, Omega)``; the
  model's ``bsv`` holds the variances omega^2).
* :class:`FitTablePopulation` -- a table of per-patient fits, either resampled row by row
  (``method="sample"``: each virtual patient is one fitted patient, with replacement) or
  summarised by a multivariate log-normal fitted to the rows (``method="lognormal"``: mean
  and covariance of the log-parameters). Individual estimates carry estimation noise, so the
  log-normal spread is an upper bound of the true between-subject variability.
* :class:`DrawsPopulation` -- posterior draws. ``level="individual"``: each draw is one set of
  individual parameters and every virtual patient takes one random draw. ``level=
  "population"``: each draw holds typical values and omegas; every virtual patient takes one
  random draw, then an eta from that draw's omegas -- parameter uncertainty propagates into
  the prediction intervals.

Covariates (:class:`LogNormal`, :class:`Empirical`, :class:`Fixed`) are drawn after the
parameters: ``weight`` (kg) for per-kg dosing, or a model parameter name (e.g. a disease
burden that is a parameter/initial state of a mechanistic model), which then replaces that
parameter's column.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from cartkinetics.errors import CartKineticsError
from cartkinetics.models.base import from_scale
from cartkinetics.solvers.status import SUCCESS

# ------------------------------------------------------------------ covariate distributions


@dataclass(frozen=True)
class LogNormal:
    """Log-normal distribution by its median and the SD of its logarithm.

    Parameters
    ----------
    median : float
        Median in the covariate's unit (e.g. kg).
    sigma : float
        SD of ln(value); 0.25 is a coefficient of variation of about 25 %.
    """

    median: float
    sigma: float

    def __post_init__(self) -> None:
        if not (np.isfinite(self.median) and self.median > 0):
            raise CartKineticsError(f"log-normal median must be > 0, got {self.median}")
        if not (np.isfinite(self.sigma) and self.sigma >= 0):
            raise CartKineticsError(f"log-normal sigma must be >= 0, got {self.sigma}")

    def sample(self, rng: np.random.Generator, n: int) -> np.ndarray:
        """Draw ``n`` values with the generator ``rng`` (units of the covariate or parameter)."""
        return self.median * np.exp(self.sigma * rng.standard_normal(n))

    def describe(self) -> str:
        """One-line description of the distribution (for summaries and reports)."""
        return f"log-normal(median {self.median:g}, sd of log {self.sigma:g})"


@dataclass(frozen=True)
class Empirical:
    """Resample observed values with replacement (e.g. the weights of a real cohort)."""

    values: tuple[float, ...]

    def __post_init__(self) -> None:
        v = np.asarray(self.values, dtype=float)
        if v.size == 0 or not np.all(np.isfinite(v)) or np.any(v <= 0):
            raise CartKineticsError("empirical covariate values must be finite and > 0")

    def sample(self, rng: np.random.Generator, n: int) -> np.ndarray:
        """Draw ``n`` values with the generator ``rng`` (units of the covariate or parameter)."""
        v = np.asarray(self.values, dtype=float)
        return v[rng.integers(0, v.size, n)]

    def describe(self) -> str:
        """One-line description of the distribution (for summaries and reports)."""
        return f"resampled from {len(self.values)} values"


@dataclass(frozen=True)
class Fixed:
    """The same value for every virtual patient."""

    value: float

    def __post_init__(self) -> None:
        if not (np.isfinite(self.value) and self.value > 0):
            raise CartKineticsError(f"fixed covariate value must be > 0, got {self.value}")

    def sample(self, rng: np.random.Generator, n: int) -> np.ndarray:
        """Draw ``n`` values with the generator ``rng`` (units of the covariate or parameter)."""
        return np.full(n, float(self.value))

    def describe(self) -> str:
        """One-line description of the distribution (for summaries and reports)."""
        return f"fixed {self.value:g}"


Distribution = LogNormal | Empirical | Fixed

#: default body weight: adults, median 70 kg, ~20 % CV. (The Stein 2019 population was
#: paediatric: median 39 kg, range 14-140; pass your own distribution to match it.)
DEFAULT_WEIGHT = LogNormal(70.0, 0.2)


def parse_distribution(spec: Any, what: str = "weight") -> Distribution:
    """Distribution from a value, an array, or text.

    Text forms: ``"70"`` (fixed), ``"lognormal:70,0.2"`` (median, sd of log),
    ``"file.csv"`` or ``"file.csv:column"`` (resample the column; default the first
    numeric column).
    """
    if isinstance(spec, LogNormal | Empirical | Fixed):
        return spec
    if isinstance(spec, int | float | np.floating | np.integer):
        return Fixed(float(spec))
    if isinstance(spec, np.ndarray | list | tuple | pd.Series):
        return Empirical(tuple(np.asarray(spec, dtype=float).ravel().tolist()))
    if not isinstance(spec, str):
        raise CartKineticsError(f"cannot read a {what} distribution from {type(spec).__name__}")
    text = spec.strip()
    try:
        return Fixed(float(text))
    except ValueError:
        pass
    if text.lower().startswith("lognormal:"):
        parts = text.split(":", 1)[1].split(",")
        try:
            median, sigma = (float(x) for x in parts)
        except ValueError as exc:
            raise CartKineticsError(
                f"{what}: expected 'lognormal:MEDIAN,SDLOG', got {spec!r}"
            ) from exc
        return LogNormal(median, sigma)
    path, _, column = text.partition(":")
    if column and len(path) == 1:  # a Windows drive letter, not a column
        path, column = text, ""
    p = Path(path)
    if not p.exists():
        raise CartKineticsError(
            f"{what}: {spec!r} is neither a number, 'lognormal:MEDIAN,SDLOG', nor a file"
        )
    frame = pd.read_csv(p)
    if column:
        if column not in frame.columns:
            raise CartKineticsError(
                f"no column {column!r}; columns are {list(frame.columns)}", source=str(p)
            )
    else:
        numeric = frame.select_dtypes("number").columns
        if len(numeric) == 0:
            raise CartKineticsError(f"no numeric column for {what}", source=str(p))
        column = numeric[0]
    values = pd.to_numeric(frame[column], errors="coerce").to_numpy(dtype=float)
    bad = np.flatnonzero(~np.isfinite(values) | (values <= 0))
    if bad.size:
        raise CartKineticsError(
            f"expected a positive number for {what}", source=str(p), row=int(bad[0]) + 1,
            column=str(column),
        )
    return Empirical(tuple(values.tolist()))


# ------------------------------------------------------------------ helpers


def _get_model(model: Any) -> Any:
    from cartkinetics import models

    if isinstance(model, str):
        return models.get(model)
    return model


def _mvn_log(
    rng: np.random.Generator, n: int, mean_log: np.ndarray, cov: np.ndarray
) -> np.ndarray:
    """exp of multivariate normal draws; zero-variance dimensions stay at their mean."""
    k = mean_log.shape[0]
    z = rng.standard_normal((n, k))
    # Cholesky of a PSD matrix with possible zero rows: eigen-decomposition is robust to that
    w, v = np.linalg.eigh(cov)
    w = np.clip(w, 0.0, None)
    root = v * np.sqrt(w)
    return np.exp(mean_log[None, :] + z @ root.T)


# ------------------------------------------------------------------ populations


@dataclass
class Population:
    """Base class: subclasses implement :meth:`_sample_params`.

    Attributes
    ----------
    model : str
        Library model name (workers re-create the model from it).
    covariates : dict name -> distribution
        ``weight`` (kg) and/or model parameter names.
    """

    model: str
    covariates: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        m = _get_model(self.model)
        self.model = m.name
        covs = {}
        for name, spec in dict(self.covariates).items():
            if name != "weight" and name not in m.param_names:
                raise CartKineticsError(
                    f"covariate {name!r} is neither 'weight' nor a parameter of {m.name} "
                    f"({m.param_names})"
                )
            covs[name] = parse_distribution(spec, name)
        covs.setdefault("weight", DEFAULT_WEIGHT)
        self.covariates = covs

    def _sample_params(self, rng: np.random.Generator, n: int, model: Any) -> np.ndarray:
        raise NotImplementedError

    def sample(
        self, rng: np.random.Generator, n: int, model: Any = None
    ) -> tuple[np.ndarray, dict[str, np.ndarray]]:
        """Draw n virtual patients.

        Returns
        -------
        params : (n, n_params) in ``model.param_names`` order, natural scale
        covariates : dict name -> (n,) (always has ``weight`` in kg)
        """
        model = _get_model(self.model if model is None else model)
        P = self._sample_params(rng, n, model)
        covs: dict[str, np.ndarray] = {}
        index = {p: j for j, p in enumerate(model.param_names)}
        for name in sorted(self.covariates):  # sorted: a fixed order of random draws
            values = self.covariates[name].sample(rng, n)
            covs[name] = values
            if name in index:
                P[:, index[name]] = values
        return P, covs

    def describe(self) -> str:
        """One-line description of the distribution (for summaries and reports)."""
        cov = ", ".join(f"{k}: {v.describe()}" for k, v in self.covariates.items())
        return f"{self._describe()}; covariates {cov}"

    def _describe(self) -> str:
        return type(self).__name__


@dataclass
class ModelPopulation(Population):
    """Typical values with log-normal between-subject variability.

    Parameters
    ----------
    model : str
        Library model name.
    omega : dict name -> variance of log(param), or (np, np) covariance matrix, optional
        Default: the model's published ``bsv`` (omega^2). Parameters without an entry are
        the same for every virtual patient.
    typical : dict name -> value, optional
        Replaces published typical values (e.g. a different population's estimates).
    covariates : dict, optional
        See :class:`Population`.
    """

    omega: Any = None
    typical: dict[str, float] | None = None

    def __post_init__(self) -> None:
        super().__post_init__()
        m = _get_model(self.model)
        self._theta = m.param_vector(self.typical)
        if np.any(self._theta <= 0):
            bad = [n for n, v in zip(m.param_names, self._theta, strict=True) if v <= 0]
            raise CartKineticsError(f"log-normal variability needs typical values > 0: {bad}")
        k = m.n_params
        om = m.bsv if self.omega is None else self.omega
        if isinstance(om, dict):
            cov = np.zeros((k, k))
            for name, var in om.items():
                j = m.param_names.index(m.parameter(name).name)
                var = float(var)
                if not (np.isfinite(var) and var >= 0):
                    raise CartKineticsError(f"omega^2 of {name!r} must be >= 0, got {var}")
                cov[j, j] = var
        else:
            cov = np.asarray(om, dtype=float)
            if cov.shape != (k, k) or not np.allclose(cov, cov.T):
                raise CartKineticsError(
                    f"omega must be a symmetric ({k}, {k}) matrix in the order {m.param_names}"
                )
            if np.linalg.eigvalsh(cov).min() < -1e-12:
                raise CartKineticsError("omega matrix is not positive semi-definite")
        if self.omega is None and not np.any(cov):
            raise CartKineticsError(
                f"model {m.name} has no published between-subject variability: pass omega"
            )
        self._cov = cov

    def _sample_params(self, rng: np.random.Generator, n: int, model: Any) -> np.ndarray:
        return _mvn_log(rng, n, np.log(self._theta), self._cov)

    def _describe(self) -> str:
        return "typical values with log-normal between-subject variability"


def _numbers(frame: pd.DataFrame, col: str, source: str, rows: np.ndarray | None = None
             ) -> np.ndarray:
    """Column ``col`` as floats (empty cells NaN); text that is no number raises an error
    naming ``source``, the 1-based data row (``rows`` maps positions to rows) and ``col``."""
    raw = frame[col]
    values = pd.to_numeric(raw, errors="coerce").to_numpy(dtype=float)
    text = raw.astype(str).str.strip()
    bad = np.isnan(values) & raw.notna().to_numpy() & ~text.isin(["", "nan", "NaN", "NA", "."])
    if bad.any():
        i = int(np.flatnonzero(bad)[0])
        raise CartKineticsError(
            f"{col} must be a number, got {raw.iloc[i]!r}",
            source=source,
            row=int(rows[i]) if rows is not None else i + 1,
            column=col,
        )
    return values


def _status_ok(frame: pd.DataFrame) -> np.ndarray:
    """Rows of a fit table whose fit succeeded (a 'status' or 'success' column if present)."""
    ok = np.ones(len(frame), dtype=bool)
    if "success" in frame.columns:
        ok &= frame["success"].astype(bool).to_numpy()
    if "status" in frame.columns:
        s = frame["status"]
        if pd.api.types.is_numeric_dtype(s):
            ok &= s.to_numpy() == SUCCESS
        else:
            # the statuses of cartkinetics.fit (converged, converged_singular) and common ones
            good = ["ok", "success", "converged", "converged_singular", "0"]
            ok &= s.astype(str).str.lower().isin(good).to_numpy()
    return ok


@dataclass
class FitTablePopulation(Population):
    """Virtual patients from a table of per-patient fitted parameters.

    Parameters
    ----------
    model : str
    table : DataFrame or path (CSV/Parquet)
        One row per fitted series; columns named as the model's parameters (natural scale).
        Rows with a failed fit (``status`` != 0/'ok', or ``success`` false) are left out and
        counted in :attr:`n_excluded`. ``infusion`` filters rows when given.
    method : {"sample", "lognormal"}
        ``sample``: each virtual patient copies one fitted row (with replacement).
        ``lognormal``: draw from the multivariate log-normal with the rows' mean and
        covariance of log-parameters (diagonal when rows <= parameters).
    infusion : int, optional
        Keep rows of that infusion only (column ``infusion``).
    assay : str, optional
        Keep rows of that assay only (column ``assay``): parameters such as Cmax are in the
        assay's unit, so do not mix assays.

    A table from ``cartkinetics.fit_cohort(...).table`` can be passed as it is.
    """

    table: Any = None
    method: str = "sample"
    infusion: int | None = None
    assay: str | None = None

    def __post_init__(self) -> None:
        super().__post_init__()
        m = _get_model(self.model)
        source = "<DataFrame>"
        frame = self.table
        if isinstance(frame, str | Path):
            source = str(frame)
            if not Path(frame).exists():
                raise CartKineticsError("fit table not found", source=source)
            frame = (
                pd.read_parquet(frame) if str(frame).endswith(".parquet") else pd.read_csv(frame)
            )
        if not isinstance(frame, pd.DataFrame):
            raise CartKineticsError("fit table must be a DataFrame or a CSV/Parquet path")
        if self.method not in ("sample", "lognormal"):
            raise CartKineticsError(f"method must be 'sample' or 'lognormal', got {self.method!r}")
        # 1-based data rows of the table as given, for error messages after filtering
        data_row = pd.Series(np.arange(1, len(frame) + 1), index=frame.index)
        if self.infusion is not None:
            if "infusion" not in frame.columns:
                raise CartKineticsError("no 'infusion' column to filter on", source=source)
            frame = frame[frame["infusion"] == self.infusion]
        if self.assay is not None:
            if "assay" not in frame.columns:
                raise CartKineticsError("no 'assay' column to filter on", source=source)
            frame = frame[frame["assay"] == self.assay]
        elif "assay" in frame.columns and frame["assay"].nunique() > 1:
            raise CartKineticsError(
                f"the fit table holds several assays {sorted(frame['assay'].unique())}: "
                "choose one with assay=", source=source)
        # levels (Cmax ...) of fitted parameters are in the unit of the data they were fitted to
        self.unit = ""
        if "unit" in frame.columns:
            from cartkinetics.units import canonical_unit

            units = sorted({canonical_unit(u) for u in frame["unit"].dropna().astype(str) if u})
            if len(units) > 1:
                raise CartKineticsError(
                    f"the fit table holds fits in several units {units}: their level "
                    "parameters cannot be pooled into one population; choose one assay with "
                    "assay=, or refit data converted to one unit", source=source)
            self.unit = units[0] if units else ""
        cols = [p for p in m.param_names if p in frame.columns]
        if not cols:
            raise CartKineticsError(
                f"fit table has none of the parameters of {m.name} ({m.param_names}); "
                f"columns are {list(frame.columns)}",
                source=source,
            )
        ok = _status_ok(frame)
        rows = data_row.loc[frame.index].to_numpy()
        ok_frame = frame[ok]
        for c in cols:  # text in a successful fit is bad input (a failed fit may hold any)
            _numbers(ok_frame, c, source, rows[ok])
        values = frame[cols].apply(pd.to_numeric, errors="coerce").to_numpy(dtype=float)
        # a successful fit with an infinite or non-positive log-scale parameter is bad input,
        # not a failed fit: say where instead of dropping the row (NaN = not fitted, left out)
        log_cols = np.array([m.log_scale[m.param_names.index(c)] for c in cols], dtype=bool)
        valid = np.isfinite(values) & ((values > 0) | ~log_cols[None, :])
        bad = ok[:, None] & ~np.isnan(values) & ~valid
        if bad.any():
            i, j = (int(k[0]) for k in np.nonzero(bad))
            what = "a positive number" if log_cols[j] else "a finite number"
            raise CartKineticsError(
                f"parameter {cols[j]} must be {what} (a fitted value in the model's unit), "
                f"got {frame[cols[j]].iloc[i]!r}",
                source=source,
                row=int(rows[i]),
                column=cols[j],
            )
        finite = np.all(np.isfinite(values), axis=1) & np.all(values > 0, axis=1)
        self.n_excluded = int(np.sum(~(ok & finite)))
        keep = ok & finite
        if keep.sum() == 0:
            raise CartKineticsError("fit table has no successful fit with positive values",
                                    source=source)
        full = np.tile(m.param_vector(None), (int(keep.sum()), 1))
        for c in cols:
            full[:, m.param_names.index(c)] = values[keep, cols.index(c)]
        self._rows = full
        self._fitted_columns = cols
        if self.method == "lognormal":
            if full.shape[0] < 2:
                raise CartKineticsError("method='lognormal' needs at least 2 successful fits",
                                        source=source)
            logs = np.log(full)
            self._mean = logs.mean(axis=0)
            cov = np.cov(logs, rowvar=False)
            if full.shape[0] <= len(cols):
                cov = np.diag(np.diag(cov))  # too few rows for correlations
            self._cov = cov
        self.table = None  # the rows are kept; do not ship the original frame to workers

    def _sample_params(self, rng: np.random.Generator, n: int, model: Any) -> np.ndarray:
        if self.method == "sample":
            return self._rows[rng.integers(0, self._rows.shape[0], n)].copy()
        return _mvn_log(rng, n, self._mean, self._cov)

    def _describe(self) -> str:
        how = (
            "rows resampled with replacement"
            if self.method == "sample"
            else "multivariate log-normal fitted to the rows"
        )
        return f"{self._rows.shape[0]} per-patient fits ({how}; {self.n_excluded} excluded)"


@dataclass
class DrawsPopulation(Population):
    """Virtual patients from posterior draws (each virtual patient from one draw).

    Parameters
    ----------
    model : str
    draws : DataFrame, (ndraws, np) array or path (CSV/Parquet)
        ``level="individual"``: columns named as parameters (natural scale); each virtual
        patient is one random draw.
        ``level="population"``: typical values as ``<name>`` (natural scale) or ``mu_<name>``
        (on the fit's scale, each parameter's ``transform``: log, or logit for fractions)
        and between-patient SDs
        on that scale as ``omega_<name>`` (or variances ``omega2_<name>``); parameters
        without an omega column take no variability. Each virtual patient takes one random
        draw, then its own random effect from that draw's omegas, so the uncertainty of the
        population parameters propagates into the prediction intervals.
    level : {"individual", "population"}

    See :meth:`from_posterior` for a :class:`cartkinetics.fit.population` result.
    """

    draws: Any = None
    level: str = "individual"

    def __post_init__(self) -> None:
        super().__post_init__()
        m = _get_model(self.model)
        d = self.draws
        source = "<DataFrame>"
        if isinstance(d, str | Path):
            source = str(d)
            if not Path(d).exists():
                raise CartKineticsError("draws file not found", source=source)
            d = pd.read_parquet(d) if str(d).endswith(".parquet") else pd.read_csv(d)
        if isinstance(d, np.ndarray):
            if d.ndim != 2 or d.shape[1] != m.n_params:
                raise CartKineticsError(
                    f"draws array must be (ndraws, {m.n_params}) in the order {m.param_names}"
                )
            d = pd.DataFrame(d, columns=m.param_names)
        if not isinstance(d, pd.DataFrame) or len(d) == 0:
            raise CartKineticsError("draws must be a non-empty DataFrame, array or file")
        if self.level not in ("individual", "population"):
            raise CartKineticsError(
                f"level must be 'individual' or 'population', got {self.level!r}")
        # the declared scales, those the hierarchical fit sampled on (Parameter.transform)
        kinds = m.transforms
        pars = m.parameters
        k = m.n_params
        typical = m.param_vector(None)
        mu = np.tile([float(p.to_scale(v)) for p, v in zip(pars, typical, strict=True)],
                     (len(d), 1))
        sd = np.zeros((len(d), k))
        found = False
        for j, name in enumerate(m.param_names):
            if name in d.columns:
                mu[:, j] = pars[j].to_scale(_numbers(d, name, source))
                found = True
            elif self.level == "population" and "mu_" + name in d.columns:
                mu[:, j] = _numbers(d, "mu_" + name, source)
                found = True
            if self.level == "population":
                if "omega_" + name in d.columns:
                    sd[:, j] = _numbers(d, "omega_" + name, source)
                elif "omega2_" + name in d.columns:
                    sd[:, j] = np.sqrt(_numbers(d, "omega2_" + name, source))
        if not found:
            raise CartKineticsError(
                f"draws have no column for any parameter of {m.name} ({m.param_names}); "
                f"columns are {list(d.columns)}",
                source=source,
            )
        bad = ~(np.all(np.isfinite(mu), axis=1) & np.all(np.isfinite(sd), axis=1))
        bad |= np.any(sd < 0, axis=1)
        if np.any(bad):
            raise CartKineticsError(
                "draw has a non-finite value (or a parameter outside its scale's range, or a "
                "negative omega)", source=source, row=int(np.flatnonzero(bad)[0]) + 1,
            )
        self._mu = mu
        self._sd = sd
        self._kinds = kinds
        self._bounds = [(p.lower, p.upper) for p in pars]
        self.n_draws = len(d)
        self.draws = None

    @classmethod
    def from_posterior(
        cls, result: Any, *, infusion: int = 1, covariates: dict[str, Any] | None = None
    ) -> DrawsPopulation:
        """Population-level draws of a hierarchical fit (:func:`cartkinetics.fit_population`).

        Uses the posterior of ``mu`` and ``omega`` (and, for ``infusion=2``, the infusion
        effect ``delta`` with its between-patient SD ``tau``: mean ``mu + delta``, SD
        ``sqrt(omega^2 + tau^2)``). Covariate effects are not applied: the typical values are
        those of the covariates' reference levels.
        """
        post = result.idata.posterior
        names = [str(x) for x in post["mu"].coords["param"].values]

        def stack(var: str) -> np.ndarray:
            arr = post[var].values
            return arr.reshape((-1,) + arr.shape[2:])

        mu, omega = stack("mu"), stack("omega")
        cols: dict[str, np.ndarray] = {}
        for j, n in enumerate(names):
            cols[f"mu_{n}"] = mu[:, j].copy()
            cols[f"omega_{n}"] = omega[:, j].copy()
        if infusion == 2:
            if "delta" not in post:
                raise CartKineticsError("this fit has no infusion effect (no second infusions)")
            effects = [str(x) for x in post["delta"].coords["effect"].values]
            delta = stack("delta")
            tau = stack("tau") if "tau" in post else np.zeros_like(delta)
            for j, n in enumerate(effects):
                cols[f"mu_{n}"] = cols[f"mu_{n}"] + delta[:, j]
                cols[f"omega_{n}"] = np.sqrt(cols[f"omega_{n}"] ** 2 + tau[:, j] ** 2)
        elif infusion != 1:
            raise CartKineticsError(f"infusion must be 1 or 2, got {infusion}")
        model = result.model.name if hasattr(result.model, "name") else str(result.model)
        return cls(model, dict(covariates or {}), draws=pd.DataFrame(cols), level="population")

    def _sample_params(self, rng: np.random.Generator, n: int, model: Any) -> np.ndarray:
        idx = rng.integers(0, self.n_draws, n)
        phi = self._mu[idx]
        if self.level == "population":
            phi = phi + rng.standard_normal((n, phi.shape[1])) * self._sd[idx]
        out = np.empty_like(phi)
        for j, kind in enumerate(self._kinds):
            out[:, j] = from_scale(phi[:, j], kind, *self._bounds[j])
        return out

    def _describe(self) -> str:
        return f"{self.n_draws} posterior draws ({self.level} parameters, one draw per patient)"


def make_population(
    model: str,
    source: Any = None,
    *,
    method: str = "sample",
    level: str = "individual",
    covariates: dict[str, Any] | None = None,
) -> Population:
    """Convenience constructor used by :func:`simulate` and the CLI.

    ``source`` None -> :class:`ModelPopulation`; ``"fits:PATH"`` or a DataFrame with
    ``method`` -> :class:`FitTablePopulation`; ``"draws:PATH"`` -> :class:`DrawsPopulation`.
    """
    covariates = dict(covariates or {})
    if source is None or (isinstance(source, str) and source in ("model", "published")):
        return ModelPopulation(model, covariates)
    if isinstance(source, Population):
        return source
    if isinstance(source, str):
        kind, _, path = source.partition(":")
        if kind == "fits" and path:
            return FitTablePopulation(model, covariates, table=path, method=method)
        if kind == "draws" and path:
            return DrawsPopulation(model, covariates, draws=path, level=level)
        raise CartKineticsError(
            f"population source must be 'model', 'fits:PATH' or 'draws:PATH', got {source!r}"
        )
    if isinstance(source, pd.DataFrame):
        return FitTablePopulation(model, covariates, table=source, method=method)
    raise CartKineticsError(f"cannot build a population from {type(source).__name__}")
