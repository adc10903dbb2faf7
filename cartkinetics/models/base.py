"""Model specification shared by every model: parameters, solutions and the common API.

A :class:`Model` carries its metadata (states with units, parameters with units, typical
values, bounds and sources, observations, reference, population) and answers three calls:

* ``solve(times, params, dose)`` -> :class:`Solution`
* ``solve_batch(times, params_table, dose)`` -> :class:`BatchSolution`
* ``sensitivities(times, params, dose)`` -> ``(observed, d observed / d params, status)``

Closed-form models (``stein2019``) and ODE models (:class:`cartkinetics.models.ode.ODEModel`)
implement the same calls. Time is in days everywhere.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from cartkinetics.errors import CartKineticsError

# the status codes and their sentences: one table, the solvers' (re-exported for the models)
from cartkinetics.solvers.status import (  # noqa: F401
    INVALID_INPUT,
    MAX_STEPS,
    NON_FINITE,
    STATUS_MESSAGES,
    STEP_TOO_SMALL,
    SUCCESS,
    status_message,
)

# The scales a parameter can be estimated and varied on (``Parameter.transform``):
#   "log"      phi = ln x                      (x > 0)
#   "logit"    phi = ln x - ln(1 - x)          (a fraction, 0 < x < 1)
#   "identity" phi = x
#   "bounded"  phi = logit((x - lower) / (upper - lower))   (finite lower < x < upper)
TRANSFORMS = ("log", "logit", "identity", "bounded")
FRACTION_UNITS = ("-", "", "fraction", "1")


def default_transform(unit: str, lower: float, upper: float, log_scale: bool) -> str:
    """The scale a parameter declared without ``transform`` is estimated on.

    ``"identity"`` when ``log_scale`` is False; ``"logit"`` for a dimensionless fraction
    (unit ``"-"``) bounded by [0, 1] (Stein's FB); else ``"log"``. A rate with an upper
    bound of 1/day (Stein's beta) is not a fraction: it stays on the log scale.
    """
    if not log_scale:
        return "identity"
    if unit.strip() in FRACTION_UNITS and lower >= 0.0 and upper <= 1.0:
        return "logit"
    return "log"


def to_scale(x: Any, transform: str, lower: float = 0.0, upper: float = 1.0) -> np.ndarray:
    """Natural value(s) ``x`` on the ``transform`` scale (see :data:`TRANSFORMS`).

    Values outside the transform's domain give -inf/inf/NaN (no warning).
    """
    x = np.asarray(x, dtype=float)
    with np.errstate(divide="ignore", invalid="ignore"):
        if transform == "log":
            return np.log(x)
        if transform == "logit":
            return np.log(x) - np.log1p(-x)
        if transform == "identity":
            return x.copy()
        if transform == "bounded":
            u = (x - lower) / (upper - lower)
            return np.log(u) - np.log1p(-u)
    raise CartKineticsError(f"unknown transform {transform!r}; transforms are {TRANSFORMS}")


def from_scale(phi: Any, transform: str, lower: float = 0.0, upper: float = 1.0) -> np.ndarray:
    """Inverse of :func:`to_scale`: natural value(s) of ``phi`` on the ``transform`` scale."""
    phi = np.asarray(phi, dtype=float)
    if transform == "log":
        return np.exp(phi)
    if transform == "logit":
        return 1.0 / (1.0 + np.exp(-phi))
    if transform == "identity":
        return phi.copy()
    if transform == "bounded":
        return lower + (upper - lower) / (1.0 + np.exp(-phi))
    raise CartKineticsError(f"unknown transform {transform!r}; transforms are {TRANSFORMS}")


def from_scale_pt(phi: Any, transform: str, lower: float = 0.0, upper: float = 1.0) -> Any:
    """:func:`from_scale` in PyTensor (for the hierarchical fit's graph)."""
    import pytensor.tensor as pt

    if transform == "log":
        return pt.exp(phi)
    if transform == "logit":
        return pt.sigmoid(phi)
    if transform == "identity":
        return phi
    if transform == "bounded":
        return lower + (upper - lower) * pt.sigmoid(phi)
    raise CartKineticsError(f"unknown transform {transform!r}; transforms are {TRANSFORMS}")


@dataclass(frozen=True)
class Parameter:
    """One model parameter.

    Attributes
    ----------
    name : str
        Identifier used in equations and parameter tables.
    unit : str
        Unit, e.g. ``"1/day"``, ``"copies/ug"``, ``"cells"``, ``"-"``.
    value : float
        Typical (published) value.
    lower, upper : float
        Bounds used by fits (natural scale).
    log_scale : bool
        Whether the parameter is positive and per-patient fits estimate log(parameter)
        (lmfit keeps the bounds). Derived from ``transform`` when that is given
        (True for "log" and "logit"); kept as a positional shorthand: False means
        ``transform="identity"``.
    source : str
        Where the value comes from (paper table, re-implementation file).
    description : str
        One line saying what it is.
    transform : {"log", "logit", "identity", "bounded"}
        The scale on which the parameter is estimated and varies between patients: the
        hierarchical fit samples it (and its priors are) on this scale, posterior
        populations map draws back with it and variability is normal on it. Default from
        :func:`default_transform` (logit for a dimensionless fraction in [0, 1], identity
        when ``log_scale`` is False, else log).
    """

    name: str
    unit: str
    value: float
    lower: float = 0.0
    upper: float = np.inf
    log_scale: bool = True
    source: str = ""
    description: str = ""
    transform: str = ""

    def __post_init__(self) -> None:
        kind = self.transform or default_transform(
            self.unit, self.lower, self.upper, self.log_scale
        )
        if kind not in TRANSFORMS:
            raise CartKineticsError(
                f"parameter {self.name}: unknown transform {kind!r}; transforms are {TRANSFORMS}"
            )
        if kind in ("log", "logit") and self.lower < 0:
            raise CartKineticsError(
                f"parameter {self.name}: a {kind} transform needs lower >= 0, got {self.lower}"
            )
        if kind == "logit" and self.upper > 1:
            raise CartKineticsError(
                f"parameter {self.name}: a logit transform needs upper <= 1, got {self.upper}"
            )
        if kind == "bounded" and not (
            np.isfinite(self.lower) and np.isfinite(self.upper) and self.lower < self.upper
        ):
            raise CartKineticsError(
                f"parameter {self.name}: a bounded transform needs finite lower < upper, got "
                f"[{self.lower}, {self.upper}]"
            )
        object.__setattr__(self, "transform", kind)
        object.__setattr__(self, "log_scale", kind in ("log", "logit"))

    def to_scale(self, x: Any) -> np.ndarray:
        """Natural value(s) on this parameter's ``transform`` scale."""
        return to_scale(x, self.transform, self.lower, self.upper)

    def from_scale(self, phi: Any) -> np.ndarray:
        """Natural value(s) of ``phi`` given on this parameter's ``transform`` scale."""
        return from_scale(phi, self.transform, self.lower, self.upper)

    def from_scale_pt(self, phi: Any) -> Any:
        """:meth:`from_scale` in PyTensor."""
        return from_scale_pt(phi, self.transform, self.lower, self.upper)


@dataclass
class Solution:
    """Result of one solve.

    Attributes
    ----------
    t : ndarray (nt,)
        Sample times (days).
    states : dict name -> ndarray (nt,)
        State trajectories in the model's state units.
    observed : dict name -> ndarray (nt,)
        Observation(s) in assay units (e.g. transgene copies/ug).
    status : int
        0 success, 1 max steps, 2 step too small, 3 non-finite, 4 invalid input.
    message : str
        Sentence explaining ``status``.
    """

    t: np.ndarray
    states: dict[str, np.ndarray]
    observed: dict[str, np.ndarray]
    status: int
    message: str

    @property
    def ok(self) -> bool:
        """True when the solve succeeded (``status == SUCCESS``)."""
        return self.status == SUCCESS


@dataclass
class BatchSolution:
    """Result of a batch solve over m parameter sets.

    Attributes
    ----------
    t : ndarray (nt,)
    observed : dict name -> ndarray (m, nt)
        NaN in rows whose solve failed (see ``status``).
    status : ndarray (m,) of int
    states : dict name -> ndarray (m, nt) or None
    """

    t: np.ndarray
    observed: dict[str, np.ndarray]
    status: np.ndarray
    states: dict[str, np.ndarray] | None = None

    @property
    def messages(self) -> list[str]:
        """One sentence per parameter set saying how its solve ended."""
        return [status_message(int(s)) for s in self.status]


@dataclass
class Model:
    """Common metadata and parameter handling; subclasses implement the solves.

    Attributes
    ----------
    name, description, reference, population : str
    states : dict name -> unit
    parameters : list of Parameter
    observations : dict name -> str (unit and assay)
    parameter_sets : dict set name -> dict param -> value (published sets)
    is_closed_form : bool
    primary_observation : str
        Observation returned by :meth:`sensitivities` by default.
    bsv : dict param -> variance of log(param) (omega^2), where published
    residual_sd : float or None
        Residual SD where published; ``residual_model`` says on which scale.
    default_dose : float or None
        Dose used when ``dose=None`` (in ``dose_unit``).

    Capabilities (what fits and simulations may ask a model for; they never test its name):

    fix_order : tuple of str
        Parameters a per-patient fit fixes at their typical values, in this order, when the
        data cannot identify them all (default: none named; the fit falls back to its rule).
    sparse_series_note : bool
        Per-patient maximum-likelihood summaries carry the sparse-series note (the model's
        ML estimates from sparse series are validated as biased in docs/fitting.md).
    outcome_parameters : tuple of str
        Parameters that are curve outcomes of the same name (Stein's ``cmax``, ``tmax``):
        read directly instead of computed from the curve.
    ordered_rates : tuple of (faster, slower) parameter pairs
        Rates the hierarchical fit keeps ordered (a smooth penalty against the
        label-switched mode of a bi-exponential decline).
    lymphodepletion_reset : dict state -> parameter
        States that lymphodepletion resets to a parameter's value before a later infusion.
    closed_form_pytensor, closed_form_numpy, simulation_kernels : methods or None
        Closed forms of ln(observation) in PyTensor and numpy, and the numba kernels of the
        scenario simulator; None where the model has none (ODE models are solved instead).
    """

    name: str
    description: str
    reference: str
    population: str
    states: dict[str, str]
    parameters: list[Parameter]
    observations: dict[str, str]
    parameter_sets: dict[str, dict[str, float]] = field(default_factory=dict)
    is_closed_form: bool = False
    primary_observation: str = ""
    bsv: dict[str, float] = field(default_factory=dict)
    residual_sd: float | None = None
    residual_model: str = ""
    default_dose: float | None = None
    dose_unit: str = ""
    set_doses: dict[str, float] = field(default_factory=dict)
    notes: str = ""
    fix_order: tuple[str, ...] = ()
    sparse_series_note: bool = False
    outcome_parameters: tuple[str, ...] = ()
    ordered_rates: tuple[tuple[str, str], ...] = ()
    lymphodepletion_reset: dict[str, str] = field(default_factory=dict)

    # capabilities given by methods in the models that have them (see the class docstring)
    closed_form_pytensor = None
    closed_form_numpy = None
    simulation_kernels = None

    def __post_init__(self) -> None:
        names = [p.name for p in self.parameters]
        if len(set(names)) != len(names):
            raise CartKineticsError(f"model {self.name}: duplicate parameter names in {names}")
        named = [*self.fix_order, *self.outcome_parameters,
                 *(n for pair in self.ordered_rates for n in pair),
                 *self.lymphodepletion_reset.values()]
        unknown_cap = sorted(set(named) - set(names))
        if unknown_cap:
            raise CartKineticsError(
                f"model {self.name}: capabilities name unknown parameters {unknown_cap}"
            )
        if not self.primary_observation:
            self.primary_observation = next(iter(self.observations))
        for set_name, values in self.parameter_sets.items():
            unknown = set(values) - set(names)
            if unknown:
                raise CartKineticsError(
                    f"model {self.name}: parameter set {set_name!r} names unknown "
                    f"parameters {sorted(unknown)}"
                )

    # ---------------------------------------------------------------- metadata
    @property
    def param_names(self) -> list[str]:
        """Parameter names, in the order of parameter vectors and table columns."""
        return [p.name for p in self.parameters]

    @property
    def n_params(self) -> int:
        """Number of parameters."""
        return len(self.parameters)

    @property
    def typical(self) -> np.ndarray:
        """Typical (published) values, in ``param_names`` order and each parameter's unit."""
        return np.array([p.value for p in self.parameters], dtype=float)

    @property
    def lower(self) -> np.ndarray:
        """Lower bounds used by fits, in ``param_names`` order."""
        return np.array([p.lower for p in self.parameters], dtype=float)

    @property
    def upper(self) -> np.ndarray:
        """Upper bounds used by fits, in ``param_names`` order."""
        return np.array([p.upper for p in self.parameters], dtype=float)

    @property
    def log_scale(self) -> np.ndarray:
        """True where a parameter is estimated on the log scale (``transform`` log or logit)."""
        return np.array([p.log_scale for p in self.parameters], dtype=bool)

    @property
    def transforms(self) -> list[str]:
        """Each parameter's ``transform`` (log, logit, identity, bounded), in order."""
        return [p.transform for p in self.parameters]

    @property
    def state_names(self) -> list[str]:
        """State names, in the order of state vectors."""
        return list(self.states)

    def parameter(self, name: str) -> Parameter:
        """The :class:`Parameter` called ``name`` (unit, typical value, bounds, source)."""
        for p in self.parameters:
            if p.name == name:
                return p
        raise CartKineticsError(
            f"model {self.name} has no parameter {name!r}; it has {self.param_names}"
        )

    def info(self) -> dict[str, Any]:
        """JSON-friendly description of the model (used by ``cartkinetics models --json``)."""
        return {
            "name": self.name,
            "description": self.description,
            "reference": self.reference,
            "population": self.population,
            "closed_form": self.is_closed_form,
            "states": dict(self.states),
            "observations": dict(self.observations),
            "primary_observation": self.primary_observation,
            "parameters": [
                {
                    "name": p.name,
                    "unit": p.unit,
                    "value": p.value,
                    "lower": p.lower,
                    "upper": None if not np.isfinite(p.upper) else p.upper,
                    "log_scale": p.log_scale,
                    "transform": p.transform,
                    "source": p.source,
                    "description": p.description,
                }
                for p in self.parameters
            ],
            "parameter_sets": sorted(self.parameter_sets),
            "bsv_omega2": dict(self.bsv),
            "residual_sd": self.residual_sd,
            "residual_model": self.residual_model,
            "default_dose": self.default_dose,
            "dose_unit": self.dose_unit,
            "notes": self.notes,
        }

    # ---------------------------------------------------------------- parameters
    def param_vector(self, params: Any = None) -> np.ndarray:
        """Full parameter vector in ``param_names`` order.

        Parameters
        ----------
        params : None, str, dict, or array-like
            None -> typical values; str -> a published parameter set (``parameter_sets``);
            dict name -> value (missing names take typical values); array in
            ``param_names`` order (length ``n_params``).
        """
        p = self.typical.copy()
        if params is None:
            return p
        if isinstance(params, str):
            if params not in self.parameter_sets:
                raise CartKineticsError(
                    f"model {self.name} has no parameter set {params!r}; "
                    f"it has {sorted(self.parameter_sets)}"
                )
            params = self.parameter_sets[params]
        if isinstance(params, dict) or hasattr(params, "keys"):
            index = {n: i for i, n in enumerate(self.param_names)}
            for k, v in dict(params).items():
                if k not in index:
                    raise CartKineticsError(
                        f"model {self.name} has no parameter {k!r}; it has {self.param_names}"
                    )
                p[index[k]] = float(v)
            return p
        arr = np.asarray(params, dtype=float)
        if arr.ndim != 1 or arr.shape[0] != self.n_params:
            raise CartKineticsError(
                f"model {self.name}: expected {self.n_params} parameter values in the order "
                f"{self.param_names}, got shape {arr.shape}"
            )
        return arr.copy()

    def param_table(self, params_table: Any) -> np.ndarray:
        """(m, n_params) array from a DataFrame (columns by name; missing -> typical) or array."""
        if hasattr(params_table, "columns"):
            cols = list(params_table.columns)
            table = np.tile(self.typical, (len(params_table), 1))
            for j, n in enumerate(self.param_names):
                if n in cols:
                    table[:, j] = np.asarray(params_table[n], dtype=float)
            extra = [c for c in cols if c not in self.param_names and c not in self._aux_columns()]
            if extra:
                raise CartKineticsError(
                    f"model {self.name}: parameter table has unknown columns {extra}; "
                    f"parameters are {self.param_names}"
                )
            return table
        arr = np.asarray(params_table, dtype=float)
        if arr.ndim == 1:
            arr = arr[None, :]
        if arr.ndim != 2 or arr.shape[1] != self.n_params:
            raise CartKineticsError(
                f"model {self.name}: expected an (m, {self.n_params}) parameter table in the "
                f"order {self.param_names}, got shape {arr.shape}"
            )
        return arr

    def _aux_columns(self) -> tuple[str, ...]:
        """Non-parameter columns a parameter table may carry (e.g. covariates)."""
        return ("patient", "id", "ID", "set")

    @staticmethod
    def check_times(times: Any) -> np.ndarray:
        """Validated sample times: a non-empty, finite, sorted 1-D array of days >= 0."""
        t = np.atleast_1d(np.asarray(times, dtype=float))
        if t.ndim != 1 or t.size == 0:
            raise CartKineticsError("times must be a non-empty 1-D array of days")
        if not np.all(np.isfinite(t)):
            raise CartKineticsError("times must be finite (days)")
        if np.any(np.diff(t) < 0):
            raise CartKineticsError("times must be sorted in increasing order (days)")
        if t[0] < 0:
            raise CartKineticsError("times must be >= 0 days (time since the first infusion)")
        return t

    # ---------------------------------------------------------------- API
    def solve(self, times: Any, params: Any = None, dose: Any = None, **kwargs: Any) -> Solution:
        """Solve for one parameter set.

        Parameters
        ----------
        times : array_like
            Sample times, days since the first infusion (sorted, >= 0).
        params : dict or array, optional
            Name -> value, or a vector in ``param_names`` order (each in its unit);
            missing names take the typical values.
        dose : float, optional
            Dose in the model's dose unit (``dose_unit``); default: the model's own.
        **kwargs
            Solver options (``rtol``, ``atol``, ``method``, ``max_steps``).

        Returns
        -------
        Solution
            ``t``, ``states`` and ``observed`` (name -> array in its unit), ``status``
            and ``message``.
        """
        raise NotImplementedError

    def solve_batch(
        self, times: Any, params_table: Any, dose: Any = None, **kwargs: Any
    ) -> BatchSolution:
        """Solve for many parameter sets (rows of ``params_table``) at the same times (days).

        ``params_table`` is an (m, n_params) array in ``param_names`` order or a DataFrame
        with those columns. Returns a :class:`BatchSolution` with ``observed`` (m, nt) and a
        status per row; a failed row is NaN and never stops the others.
        """
        raise NotImplementedError

    def sensitivities(
        self, times: Any, params: Any = None, dose: Any = None, **kwargs: Any
    ) -> tuple[np.ndarray, np.ndarray, int]:
        """Primary observation (nt,) at ``times`` (days), its derivatives with respect to
        the parameters (nt, n_params; observation unit per parameter unit) and the status."""
        raise NotImplementedError

    def log_sensitivities(
        self, times: Any, params: Any = None, dose: Any = None, **kwargs: Any
    ) -> tuple[np.ndarray, np.ndarray, int]:
        """d log(observed) / d log(params): the scale used by log-normal fits.

        Returns ``(observed, dlogobs_dlogp (nt, np), status)``; entries are
        ``dobs/dp * p / obs`` (NaN where the observation is zero).
        """
        obs, dobs, status = self.sensitivities(times, params, dose, **kwargs)
        p = self.param_vector(params)
        with np.errstate(divide="ignore", invalid="ignore"):
            dl = dobs * p[None, :] / obs[:, None]
        return obs, dl, status

    def __repr__(self) -> str:
        kind = "closed form" if self.is_closed_form else f"{len(self.states)}-state ODE"
        return f"<Model {self.name}: {kind}, {self.n_params} parameters>"
