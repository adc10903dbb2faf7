"""Stein et al. 2019: tisagenlecleucel cellular kinetics (closed form and two-state ODE).

Reference
---------
Stein AM, Grupp SA, Levine JE, Laetsch TW, Pulsipher MA, Boyer MW, et al.
Tisagenlecleucel Model-Based Cellular Kinetic Analysis of Chimeric Antigen Receptor-T Cells.
CPT Pharmacometrics Syst Pharmacol 2019;8(5):285-295. doi:10.1002/psp4.12388.
Public re-implementation read for the numbers: nlmixr2/nlmixr2lib,
inst/modeldb/specificDrugs/Stein_2019_Tisagenlecleucel.R.

Model (transgene copies/ug genomic DNA in peripheral blood, qPCR; time in days)::

    t <  Tmax:  C(t) = R0 exp(rho t)                     rho = ln(foldx)/Tmax, R0 = Cmax/foldx
    t >= Tmax:  C(t) = Cmax [(1-FB) exp(-alpha (t-Tmax)) + FB exp(-beta (t-Tmax))]

The ODE form has an effector state E (expands at rho, contracts at alpha after Tmax) and a
memory state M fed at k = FB (alpha - beta) E after Tmax, decaying at beta; C = E + M. The
right-hand side switches at t = Tmax, a parameter-dependent breakpoint.

Comedication (Table 1): the expansion rate rho is multiplied by F_toci = 1.2 from the first
tocilizumab dose and by F_ster = 1.0 from the first corticosteroid dose when that dose is
before Tmax. Pass the days of the first doses as ``covariates={"tocilizumab_day": 5.7}``
(or columns of the same names in a batch table); NaN or absent means not given. With
comedication the peak exceeds Cmax (Cmax is then the peak the patient would have had
without it), exactly as the ODE with a multiplied rho gives.

Variability: nlmixr2lib (checked 2026-11-25, file above) enters the Table 1 "random effect"
column (2.4, 0.38, 0.65, 0.91, 0.80, 0.86) as variances omega^2 of the log-parameters,
commenting that Stein 2019 Table 1 reports Monolix variances; the paper's text itself was not
available here, so this library follows nlmixr2lib and exposes them as ``bsv`` (omega^2).
Residual error: constant (additive) on the ln scale, SD 0.56 (nlmixr2lib writes it as a
proportional error propSd = 0.56, the linear-scale approximation of the same thing).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from cartkinetics.errors import CartKineticsError
from cartkinetics.models.base import (
    INVALID_INPUT,
    SUCCESS,
    BatchSolution,
    Model,
    Parameter,
    Solution,
    status_message,
)

REFERENCE = (
    "Stein AM, Grupp SA, Levine JE, et al. Tisagenlecleucel Model-Based Cellular Kinetic "
    "Analysis of Chimeric Antigen Receptor-T Cells. CPT Pharmacometrics Syst Pharmacol "
    "2019;8(5):285-295. doi:10.1002/psp4.12388 (re-implementation: nlmixr2lib "
    "Stein_2019_Tisagenlecleucel.R)"
)
POPULATION = (
    "90 paediatric and young adult patients with relapsed/refractory B-ALL (ELIANA "
    "NCT02435849, ENSIGN NCT02228096), age 3-25 y (median 12), weight 14-140 kg; "
    "tisagenlecleucel median 3.1e6 CAR+ cells/kg (<=50 kg) or 1.0e8 cells (>50 kg)"
)
DESCRIPTION = (
    "Tisagenlecleucel cellular kinetics: exponential expansion to Tmax, then bi-exponential "
    "decline (fast contraction alpha, memory-like persistence beta for a fraction FB)"
)
SOURCE = "Stein 2019 Table 1"

PARAMETERS = [
    Parameter("foldx", "-", 3900.0, 1.0, 1e8, True, SOURCE, "fold expansion from R0 to Cmax"),
    Parameter("tmax", "day", 9.3, 0.5, 60.0, True, SOURCE, "time of maximal expansion"),
    Parameter("cmax", "copies/ug", 24000.0, 1e-2, 1e8, True, SOURCE, "maximal transgene level"),
    Parameter("alpha", "1/day", 0.16, 1e-4, 10.0, True, SOURCE, "fast contraction rate"),
    Parameter("fb", "-", 0.0079, 1e-7, 1.0, True, SOURCE, "fraction into the slow phase"),
    Parameter("beta", "1/day", 0.0032, 1e-6, 1.0, True, SOURCE, "slow (memory) decline rate"),
]
BSV = {"foldx": 2.4, "tmax": 0.38, "cmax": 0.65, "alpha": 0.91, "fb": 0.80, "beta": 0.86}
RESIDUAL_SD = 0.56
COMEDICATION_FACTORS = {"tocilizumab": 1.2, "corticosteroids": 1.0}
COVARIATE_COLUMNS = ("tocilizumab_day", "corticosteroid_day")
#: parameters a per-patient fit fixes at their typical values, in this order, when the data
#: cannot identify all six (the slow phase first: it needs late samples)
FIX_ORDER = ("beta", "fb", "foldx", "alpha")
#: the capabilities shared by the closed form and the ODE form (see ``Model``)
CAPABILITIES: dict[str, Any] = {
    "fix_order": FIX_ORDER,
    "sparse_series_note": True,  # ML from sparse series is biased (docs/fitting.md)
}
#: those of the closed form only: Cmax and Tmax read from the parameters (the ODE form
#: computes them from its curve), the hierarchical fit's ordering of the fast contraction
#: above the slow decline
CLOSED_FORM_CAPABILITIES: dict[str, Any] = {
    "outcome_parameters": ("cmax", "tmax"),
    "ordered_rates": (("alpha", "beta"),),
}
#: parameters whose closed form takes ln(value) (all but the fraction FB)
LOG_CURVE_NAMES = ("foldx", "tmax", "cmax", "alpha", "beta")
NOTES = (
    "bsv holds omega^2 (variances of log-parameters) as nlmixr2lib enters Stein 2019 Table 1; "
    "residual_sd is the SD of an additive error on ln(copies/ug). Comedication factors on rho "
    "(tocilizumab 1.2, corticosteroids 1.0) via covariates tocilizumab_day / corticosteroid_day."
)


def _growth_integral(
    t: np.ndarray, t_toci: np.ndarray, t_ster: np.ndarray, f_toci: float, f_ster: float
) -> tuple[np.ndarray, np.ndarray]:
    """g(t) = int_0^t F(s) ds and F(t), F(s) = product of the active comedication factors."""
    a, b = f_toci - 1.0, f_ster - 1.0
    both = np.maximum(t_toci, t_ster)
    g = (
        t
        + a * np.maximum(0.0, t - t_toci)
        + b * np.maximum(0.0, t - t_ster)
        + a * b * np.maximum(0.0, t - both)
    )
    on_t, on_s = t >= t_toci, t >= t_ster
    f = (1.0 + a * on_t) * (1.0 + b * on_s)
    return g, f


def log_curve_pytensor(t: Any, theta_log: Any, fb: Any) -> Any:
    """ln C(t) of the Stein 2019 closed form, in PyTensor, stable on both branches.

    Parameters
    ----------
    t : tensor (n,) days
    theta_log : tensor (n, 5)
        ln foldx, ln tmax, ln cmax, ln alpha, ln beta per observation.
    fb : tensor (n,) the fraction FB in (0, 1) (its log and log(1-FB) are taken here).

    Notes
    -----
    Rising branch: ln C = ln Cmax + ln(foldx) (t/Tmax - 1), clipped at 0 past Tmax; declining
    branch: ln C = ln Cmax + logaddexp(ln(1-FB) - alpha dt, ln FB - beta dt) with dt clipped at
    0 before Tmax. The clipping keeps the branch that ``switch`` discards finite, so neither
    its value nor its gradient can be NaN/inf (a NaN there would poison the gradient).
    """
    import pytensor.tensor as pt

    lfx, ltm, lcm, lal, lbe = (theta_log[:, i] for i in range(5))
    tmax = pt.exp(ltm)
    rising = lcm + lfx * (pt.minimum(t / tmax, 1.0) - 1.0)
    dt = pt.maximum(t - tmax, 0.0)
    a = pt.log1p(-fb) - pt.exp(lal) * dt
    b = pt.log(fb) - pt.exp(lbe) * dt
    hi = pt.maximum(a, b)
    falling = lcm + hi + pt.log1p(pt.exp(-pt.abs(a - b)))
    return pt.switch(t < tmax, rising, falling)


def log_curve_numpy(t: np.ndarray, theta: np.ndarray) -> np.ndarray:
    """ln C(t) of Stein 2019 in numpy; theta (..., 6) natural scale in parameter order."""
    foldx, tmax, cmax, alpha, fb, beta = (theta[..., i] for i in range(6))
    rising = np.log(cmax) + np.log(foldx) * (np.minimum(t / tmax, 1.0) - 1.0)
    dt = np.maximum(t - tmax, 0.0)
    falling = np.log(cmax) + np.logaddexp(np.log1p(-fb) - alpha * dt, np.log(fb) - beta * dt)
    return np.where(t < tmax, rising, falling)


class Stein2019(Model):
    """Closed-form Stein 2019 model; answers solve/solve_batch/sensitivities analytically."""

    def __init__(self) -> None:
        super().__init__(
            name="stein2019",
            description=DESCRIPTION + " (closed form)",
            reference=REFERENCE,
            population=POPULATION,
            states={"E": "copies/ug", "M": "copies/ug"},
            parameters=list(PARAMETERS),
            observations={"transgene": "copies/ug genomic DNA (qPCR, peripheral blood)"},
            parameter_sets={"typical": {p.name: p.value for p in PARAMETERS}},
            is_closed_form=True,
            primary_observation="transgene",
            bsv=dict(BSV),
            residual_sd=RESIDUAL_SD,
            residual_model="additive on ln(copies/ug)",
            default_dose=None,
            dose_unit="(dose does not enter: Cmax is a parameter)",
            notes=NOTES,
            **CAPABILITIES,
            **CLOSED_FORM_CAPABILITIES,
        )
        self.comedication_factors = dict(COMEDICATION_FACTORS)

    # ---------------------------------------------------------------- capabilities
    def closed_form_pytensor(self, t: Any, scaled: dict[str, Any], natural: dict[str, Any],
                             rows: np.ndarray) -> Any:
        """ln(transgene) at the observation times ``t`` (PyTensor), for the hierarchical fit.

        ``scaled`` / ``natural``: parameter name -> per-series tensor on the parameter's
        ``transform`` scale (log for all but FB) / on the natural scale; ``rows``: the series
        of each observation. Comedication is not part of this form.
        """
        import pytensor.tensor as pt

        theta_log = pt.stack([scaled[n] for n in LOG_CURVE_NAMES], axis=1)[rows]
        return log_curve_pytensor(t, theta_log, natural["fb"][rows])

    def closed_form_numpy(self, t: np.ndarray, theta: np.ndarray) -> np.ndarray:
        """ln(transgene) at times ``t`` for natural-scale parameters ``theta`` (..., 6)."""
        return log_curve_numpy(t, theta)

    def simulation_kernels(self) -> Any:
        """The numba kernels of the scenario simulator (``stein_curves``, ``stein_outcomes``
        of :mod:`cartkinetics.models.stein2019_numba`), imported on first use."""
        from cartkinetics.models import stein2019_numba

        return stein2019_numba

    def _aux_columns(self) -> tuple[str, ...]:
        return super()._aux_columns() + COVARIATE_COLUMNS

    # ------------------------------------------------------------ core, vectorised
    def _covariate_arrays(self, covariates: Any, m: int) -> tuple[np.ndarray, np.ndarray]:
        out = []
        for col in COVARIATE_COLUMNS:
            if covariates is None:
                v = np.full(m, np.inf)
            else:
                raw = covariates[col] if col in covariates else None
                if raw is None:
                    v = np.full(m, np.inf)
                else:
                    v = np.broadcast_to(np.asarray(raw, dtype=float), (m,)).copy()
                    v[np.isnan(v)] = np.inf  # not given
                    if np.any(v < 0):
                        raise CartKineticsError(f"{col} must be >= 0 days (or NaN: not given)")
            out.append(v)
        return out[0], out[1]

    def _evaluate(
        self,
        t: np.ndarray,
        P: np.ndarray,
        covariates: Any = None,
        need_grad: bool = False,
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray | None, np.ndarray]:
        """E, M, C (m, nt), dC/dp (m, nt, 6) or None, status (m,)."""
        m = P.shape[0]
        t_toci, t_ster = self._covariate_arrays(covariates, m)
        foldx, tmax, cmax, alpha, fb, beta = (P[:, j][:, None] for j in range(6))
        valid = np.all(np.isfinite(P), axis=1) & np.all(P[:, [0, 1, 2, 3, 5]] > 0, axis=1)
        valid &= (P[:, 4] >= 0) & (P[:, 4] <= 1) & (P[:, 0] >= 1)
        status = np.where(valid, SUCCESS, INVALID_INPUT).astype(np.int64)
        with np.errstate(all="ignore"):
            tt = t[None, :]
            lf = np.log(foldx)
            f_t, f_s = self.comedication_factors.values()
            g, _ = _growth_integral(tt, t_toci[:, None], t_ster[:, None], f_t, f_s)
            g_T, F_T = _growth_integral(tmax, t_toci[:, None], t_ster[:, None], f_t, f_s)
            # log of the level: before Tmax R0*exp(rho*g(t)); the peak is R0*exp(rho*g(Tmax))
            log_pre = np.log(cmax) - lf + lf * g / tmax
            log_peak = np.log(cmax) - lf + lf * g_T / tmax
            peak = np.exp(log_peak)
            dt = tt - tmax
            ea, eb = np.exp(-alpha * dt), np.exp(-beta * dt)
            # at t == Tmax: the value is continuous; report the left derivative (as the ODE)
            before = tt <= tmax
            pre = np.exp(log_pre)
            # the ODE's states: E decays at alpha from the peak, M is fed at fb (alpha - beta) E
            E = np.where(before, pre, peak * ea)
            M = np.where(before, 0.0, peak * fb * (eb - ea))
            C = E + M
            grad = None
            if need_grad:
                grad = np.empty((m, t.size, 6))
                D = (1.0 - fb) * ea + fb * eb
                # before Tmax: C = exp(log_pre)
                grad_pre = [
                    pre * (-1.0 + g / tmax) / foldx,
                    pre * (-lf * g / tmax**2),
                    pre / cmax,
                    np.zeros_like(pre),
                    np.zeros_like(pre),
                    np.zeros_like(pre),
                ]
                dlogpeak_dT = lf * (F_T * tmax - g_T) / tmax**2
                grad_post = [
                    C * (-1.0 + g_T / tmax) / foldx,
                    C * dlogpeak_dT + peak * ((1.0 - fb) * alpha * ea + fb * beta * eb),
                    C / cmax,
                    -peak * (1.0 - fb) * dt * ea,
                    peak * (eb - ea),
                    -peak * fb * dt * eb,
                ]
                for j in range(6):
                    grad[:, :, j] = np.where(before, grad_pre[j], grad_post[j])
                del D
        bad = status != SUCCESS
        if np.any(bad):
            for arr in (E, M, C):
                arr[bad] = np.nan
            if grad is not None:
                grad[bad] = np.nan
        return E, M, C, grad, status

    # ------------------------------------------------------------ API
    def solve(
        self,
        times: Any,
        params: Any = None,
        dose: Any = None,
        *,
        covariates: dict | None = None,
        **kwargs: Any,
    ) -> Solution:
        """Transgene level at ``times`` (days) for one parameter set.

        Parameters
        ----------
        times : array (nt,), days since infusion, sorted, >= 0
        params : None, set name, dict or array (see :meth:`Model.param_vector`)
        dose : ignored (Cmax is a parameter of this model); accepted for a common signature
        covariates : dict, optional
            ``tocilizumab_day`` / ``corticosteroid_day``: day of the first dose (NaN: none).
        rtol, atol, method, max_steps : ignored (exact solution)
        """
        t = self.check_times(times)
        p = self.param_vector(params)
        E, M, C, _, status = self._evaluate(t, p[None, :], covariates)
        st = int(status[0])
        return Solution(
            t=t,
            states={"E": E[0], "M": M[0]},
            observed={"transgene": C[0]},
            status=st,
            message=status_message(st),
        )

    def solve_batch(
        self,
        times: Any,
        params_table: Any,
        dose: Any = None,
        *,
        covariates: dict | None = None,
        return_states: bool = False,
        **kwargs: Any,
    ) -> BatchSolution:
        """Vectorised solve of m parameter sets; table (m, 6) or DataFrame by column name.

        A DataFrame may also carry ``tocilizumab_day`` / ``corticosteroid_day`` columns.
        """
        t = self.check_times(times)
        P = self.param_table(params_table)
        if covariates is None and hasattr(params_table, "columns"):
            cols = [c for c in COVARIATE_COLUMNS if c in params_table.columns]
            if cols:
                covariates = {c: np.asarray(params_table[c], dtype=float) for c in cols}
        E, M, C, _, status = self._evaluate(t, P, covariates)
        return BatchSolution(
            t=t,
            observed={"transgene": C},
            status=status,
            states={"E": E, "M": M} if return_states else None,
        )

    def sensitivities(
        self,
        times: Any,
        params: Any = None,
        dose: Any = None,
        *,
        covariates: dict | None = None,
        observation: str | None = None,
        wrt: Any = None,
        **kwargs: Any,
    ) -> tuple[np.ndarray, np.ndarray, int]:
        """Transgene level and its analytic derivatives d C / d params (natural scale).

        ``wrt`` selects parameters (names or indices, default all) like the ODE models';
        solver options in ``kwargs`` (rtol, method, ...) are accepted and unused (closed form).

        Returns
        -------
        observed : (nt,) copies/ug
        dobs_dp : (nt, 6) in ``param_names`` order, or (nt, len(wrt)) in ``wrt`` order
        status : int
        """
        if observation not in (None, "transgene"):
            raise CartKineticsError(
                f"stein2019 has one observation 'transgene', not {observation!r}"
            )
        t = self.check_times(times)
        p = self.param_vector(params)
        _, _, C, grad, status = self._evaluate(t, p[None, :], covariates, need_grad=True)
        assert grad is not None
        return C[0], grad[0][:, self._wrt_index(wrt)], int(status[0])

    def sensitivities_batch(
        self, times: Any, params_table: Any, *, covariates: dict | None = None, wrt: Any = None
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Batch version: observed (m, nt), gradients (m, nt, 6 or len(wrt)), status (m,)."""
        t = self.check_times(times)
        P = self.param_table(params_table)
        _, _, C, grad, status = self._evaluate(t, P, covariates, need_grad=True)
        assert grad is not None
        return C, grad[:, :, self._wrt_index(wrt)], status

    def _wrt_index(self, wrt: Any) -> Any:
        """Column selection for ``wrt`` (all columns when None), checked like the ODE models'."""
        if wrt is None:
            return slice(None)
        from cartkinetics.solvers.api import sens_indices

        return sens_indices(wrt, self.n_params, self.param_names)


def build(name: str = "stein2019") -> Model:
    """Build the Stein 2019 closed-form model (transgene copies/ug genomic DNA; time in days)."""
    if name == "stein2019":
        return Stein2019()
    if name == "stein2019_ode":
        from cartkinetics.models.stein2019_ode import build_ode

        return build_ode()
    raise CartKineticsError(f"unknown Stein model {name!r}")
