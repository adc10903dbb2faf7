"""ODE models: a spec plus compiled numba functions, answering solve/solve_batch/sensitivities.

The integration itself is done by the numba solvers in :mod:`cartkinetics.solvers` when they
are available (``method="auto"``, ``"tsit5"``, ``"rodas"``...), or by
``scipy.integrate.solve_ivp`` (``method="scipy-lsoda"``, ``"scipy-radau"``,
``"scipy-bdf"``): the scipy path is also the reference the tests compare against.

Breakpoints and doses: the right-hand side may switch at the model's breakpoints (functions of
the parameters, e.g. Stein's Tmax); doses are jumps added to ``dose_state`` at dose times. The
integration stops at each of these times and restarts, so a discontinuity is never stepped over.
A sample at a breakpoint or dose time reports the state just before its jump (doses at day 0
are part of the initial state), the convention of :mod:`cartkinetics.solvers`.
Across a parameter-dependent switch at tau(p) the sensitivities jump by
``(f_before - f_after) * d tau / d p`` (the state itself is continuous).
"""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

import numpy as np

from cartkinetics.errors import CartKineticsError
from cartkinetics.models.base import (
    INVALID_INPUT,
    NON_FINITE,
    STEP_TOO_SMALL,
    SUCCESS,
    BatchSolution,
    Model,
    Parameter,
    Solution,
    status_message,
)
from cartkinetics.models.spec import ODESpec

SCIPY_METHODS = {"scipy-lsoda": "LSODA", "scipy-radau": "Radau", "scipy-bdf": "BDF",
                 "scipy-rk45": "RK45", "scipy-dop853": "DOP853"}


class ODEModel(Model):
    """A model defined by ODEs, with compiled rhs / jac / dfdp and observation functions.

    Build one with :func:`cartkinetics.models.from_equations` (text or sympy) or
    :func:`from_functions` (your own numba functions); library models are ODEModels too.
    """

    def __init__(
        self,
        spec: ODESpec,
        functions: Any,
        *,
        description: str = "",
        reference: str = "",
        population: str = "",
        parameter_sets: dict[str, dict[str, float]] | None = None,
        primary_observation: str = "",
        bsv: dict[str, float] | None = None,
        residual_sd: float | None = None,
        residual_model: str = "",
        default_dose: float | None = None,
        dose_unit: str = "",
        set_doses: dict[str, float] | None = None,
        notes: str = "",
        preferred_method: str = "auto",
        **capabilities: Any,
    ) -> None:
        super().__init__(
            name=spec.name,
            description=description,
            reference=reference,
            population=population,
            states=dict(spec.states),
            parameters=list(spec.parameters),
            observations={k: u for k, (_, u) in spec.observations.items()},
            parameter_sets=dict(parameter_sets or {}),
            is_closed_form=False,
            primary_observation=primary_observation,
            bsv=dict(bsv or {}),
            residual_sd=residual_sd,
            residual_model=residual_model,
            default_dose=default_dose,
            dose_unit=dose_unit,
            set_doses=dict(set_doses or {}),
            notes=notes,
            **capabilities,
        )
        self.spec = spec
        self.functions = functions
        self.n_states = len(spec.states)
        self.n_obs = len(spec.observations)
        self.n_breaks = len(spec.breakpoints)
        self.obs_names = list(spec.observations)
        # what method="auto" means for this model (stiff library models prefer Rodas5P)
        self.preferred_method = preferred_method

    def info(self) -> dict[str, Any]:
        """Model description as a dict: states, parameters with units and sources, outputs,
        reference.
        """
        out = super().info()
        spec = self.spec
        out["equations"] = [f"{n} = {e}" for n, e in spec.definitions] + [
            f"d{s}/dt = {spec.equations[s]}" for s in spec.states
        ]
        out["initial"] = {s: spec.initial.get(s, "0") for s in spec.states}
        out["breakpoints"] = list(spec.breakpoints)
        out["dose"] = {
            "state": spec.dose_state, "scale": spec.dose_scale,
            "schedule": [list(x) for x in spec.dose_schedule], "parameter": spec.dose_parameter,
        }
        return out

    # ------------------------------------------------------------ pickling (Dask workers)
    def __getstate__(self) -> dict:
        state = self.__dict__.copy()
        state.pop("_ode_system", None)
        if self.spec.source != "<functions>":
            # generated code: rebuilt from the spec (loaded from the code cache) on arrival
            state["functions"] = None
        return state

    def __setstate__(self, state: dict) -> None:
        self.__dict__.update(state)
        if self.functions is None:
            from cartkinetics.models.codegen import compile_spec

            self.functions = compile_spec(self.spec)

    # ------------------------------------------------------------ doses, breakpoints
    def resolve_dose(self, dose: Any, params: Any = None) -> list[tuple[float, float]]:
        """Dose events as (day, amount in dose units).

        ``None`` -> the model's default dose (or the dose of the named parameter set);
        a number -> that total amount split by the model's ``dose_schedule``; a sequence of
        (day, amount) pairs -> exactly those (e.g. a second infusion).
        """
        if dose is None:
            if isinstance(params, str) and params in self.set_doses:
                dose = self.set_doses[params]
            else:
                dose = self.default_dose
        if dose is None:
            return []
        if np.isscalar(dose):
            amount = float(dose)
            if not np.isfinite(amount) or amount < 0:
                raise CartKineticsError(f"dose must be a finite amount >= 0, got {dose!r}")
            return [(float(d), amount * float(f)) for d, f in self.spec.dose_schedule]
        events = []
        for k, ev in enumerate(dose):
            try:
                day, amount = float(ev[0]), float(ev[1])
            except (TypeError, ValueError, IndexError):
                raise CartKineticsError(
                    f"dose entry {k + 1}: expected (day, amount), got {ev!r}"
                ) from None
            if not (np.isfinite(day) and np.isfinite(amount)) or day < 0 or amount < 0:
                raise CartKineticsError(f"dose entry {k + 1}: day and amount must be >= 0")
            events.append((day, amount))
        return sorted(events)

    def initial_conditions(
        self, p: np.ndarray, dose_events: list[tuple[float, float]]
    ) -> tuple[np.ndarray, np.ndarray, list[tuple[float, np.ndarray]]]:
        """(p after dose_parameter, y0 at t=0, later jumps [(day, (n,) vector)])."""
        p = p.copy()
        events = list(dose_events)
        if self.spec.dose_parameter is not None and events and events[0][0] == 0.0:
            j = self.param_names.index(self.spec.dose_parameter)
            p[j] = events[0][1] * self.spec.dose_scale
            events = events[1:]
        if events and self.spec.dose_state is None:
            if self.spec.dose_parameter is None:
                raise CartKineticsError(
                    f"model {self.name} has no dose input ({self.dose_unit or 'no dose state'})"
                )
            raise CartKineticsError(
                f"model {self.name} takes no doses after day 0 (no dose state declared)"
            )
        y0 = np.zeros(self.n_states)
        self.functions.init(p, y0)
        jumps: dict[float, np.ndarray] = {}
        if events:
            k = self.state_names.index(self.spec.dose_state)
            for day, amount in events:
                v = jumps.setdefault(day, np.zeros(self.n_states))
                v[k] += amount * self.spec.dose_scale
        if 0.0 in jumps:
            y0 = y0 + jumps.pop(0.0)
        return p, y0, sorted(jumps.items())

    def breakpoints(self, p: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Model breakpoints tau(p) (days) and d tau / d p (nb, np)."""
        tau = np.zeros(self.n_breaks)
        dtau = np.zeros((self.n_breaks, self.n_params))
        if self.n_breaks:
            self.functions.breaks(p, tau)
            self.functions.breaks_dp(p, dtau)
        return tau, dtau

    # ------------------------------------------------------------ observation helpers
    def observe_batch(self, t: np.ndarray, Y: np.ndarray, P: np.ndarray) -> np.ndarray:
        """Observations (m, n_obs, nt) from states Y (m, nt, n) and parameters P (m, np)."""
        m = Y.shape[0]
        out = np.empty((m, self.n_obs, t.size))
        fb = getattr(self.functions, "obs_batch", None)
        if fb is not None:
            fb(np.ascontiguousarray(t), np.ascontiguousarray(Y), np.ascontiguousarray(P), out)
            return out
        tmp = np.empty(self.n_obs)
        for i in range(m):
            for k in range(t.size):
                self.functions.obs(t[k], Y[i, k], P[i], tmp)
                out[i, :, k] = tmp
        return out

    def _observe(self, t: np.ndarray, Y: np.ndarray, p: np.ndarray) -> np.ndarray:
        return self.observe_batch(t, Y[None], p[None])[0]

    def _observe_sens(
        self, t: np.ndarray, Y: np.ndarray, S: np.ndarray, p: np.ndarray, k: int,
        sidx: np.ndarray | None = None,
    ) -> np.ndarray:
        """d obs_k / d p at each time: obs_dy @ S + obs_dp (columns sidx, default all)."""
        dy = np.empty((self.n_obs, self.n_states))
        dp = np.empty((self.n_obs, self.n_params))
        cols = np.arange(self.n_params) if sidx is None else sidx
        out = np.empty((t.size, cols.size))
        for i in range(t.size):
            self.functions.obs_dy(t[i], Y[i], p, dy)
            self.functions.obs_dp(t[i], Y[i], p, dp)
            out[i] = dy[k] @ S[i] + dp[k][cols]
        return out

    def _wrt(self, wrt: Any) -> np.ndarray:
        """Indices of the parameters selected by ``wrt`` (names or indices; None: all)."""
        from cartkinetics.solvers.api import sens_indices

        return sens_indices(wrt, self.n_params, self.param_names)

    # ------------------------------------------------------------ integration
    def _integrate(
        self,
        t: np.ndarray,
        p: np.ndarray,
        dose_events: list[tuple[float, float]],
        *,
        rtol: float,
        atol: float,
        method: str,
        max_steps: int,
        sens: bool,
        sidx: np.ndarray | None = None,
    ) -> tuple[np.ndarray, np.ndarray | None, int, str, np.ndarray]:
        """States (nt, n), sensitivities (nt, n, len(sidx)) or None, status, message, p used.

        ``sidx``: indices of the parameters whose sensitivities are computed (None: all).
        """
        p, y0, jumps = self.initial_conditions(p, dose_events)
        nsel = self.n_params if sidx is None else len(sidx)
        if not np.all(np.isfinite(p)) or not np.all(np.isfinite(y0)):
            Y = np.full((t.size, self.n_states), np.nan)
            S = np.full((t.size, self.n_states, nsel), np.nan) if sens else None
            return Y, S, INVALID_INPUT, status_message(INVALID_INPUT), p
        tau, dtau = self.breakpoints(p)
        if method == "auto":
            method = self.preferred_method
        backend = _numba_backend(method)
        if backend is not None:
            Y, S, status = backend(self, t, p, y0, jumps, tau, dtau, rtol, atol, method,
                                   max_steps, sens, sidx=sidx)
            return Y, S, status, status_message(status), p
        Y, S, status, msg = _scipy_integrate(
            self, t, p, y0, jumps, tau, dtau, rtol, atol, SCIPY_METHODS.get(method, "LSODA"),
            max_steps, sens,
        )
        if S is not None and sidx is not None:  # the reference path computes all columns
            S = np.ascontiguousarray(S[:, :, sidx])
        return Y, S, status, msg, p

    # ------------------------------------------------------------ API
    def solve(
        self,
        times: Any,
        params: Any = None,
        dose: Any = None,
        *,
        rtol: float = 1e-6,
        atol: float | None = None,
        method: str = "auto",
        max_steps: int = 100_000,
        **kwargs: Any,
    ) -> Solution:
        """Solve one parameter set at ``times`` (days since the first dose).

        Parameters
        ----------
        times : (nt,) days, sorted, >= 0
        params : None (typical), a parameter-set name, dict name -> value, or array
        dose : None (default / set dose), total amount (split by the dose schedule), or a list
            of (day, amount) pairs; amounts in ``dose_unit``
        rtol, atol : tolerances (atol defaults to 1e-9 x the largest |state| scale seen)
        method : "auto", a numba solver name, or "scipy-lsoda" / "scipy-radau" / "scipy-bdf"
        max_steps : step limit; reaching it gives status 1 (never a silent result)
        """
        t = self.check_times(times)
        p = self.param_vector(params)
        events = self.resolve_dose(dose, params)
        Y, _, status, msg, p_used = self._integrate(
            t, p, events, rtol=rtol, atol=_atol(atol), method=method, max_steps=max_steps,
            sens=False,
        )
        obs = self._observe(t, Y, p_used)
        return Solution(
            t=t,
            states={s: Y[:, i].copy() for i, s in enumerate(self.state_names)},
            observed={k: obs[j] for j, k in enumerate(self.obs_names)},
            status=int(status),
            message=msg,
        )

    def solve_batch(
        self,
        times: Any,
        params_table: Any,
        dose: Any = None,
        *,
        rtol: float = 1e-6,
        atol: float | None = None,
        method: str = "auto",
        max_steps: int = 100_000,
        return_states: bool = False,
        **kwargs: Any,
    ) -> BatchSolution:
        """Solve m parameter sets; a failed row gets NaN and its status, the others go on.

        ``dose`` is one dose for every row, or a sequence of m doses (one per row).
        """
        t = self.check_times(times)
        P = self.param_table(params_table)
        m = P.shape[0]
        per_row = dose is not None and not np.isscalar(dose) and len(dose) == m and m > 1 and (
            dose[0] is None or np.isscalar(dose[0]) or _is_event_list(dose[0])
        )
        obs = {k: np.full((m, t.size), np.nan) for k in self.obs_names}
        states = (
            {s: np.full((m, t.size), np.nan) for s in self.state_names} if return_states else None
        )
        status = np.zeros(m, dtype=np.int64)
        if method == "auto":
            method = self.preferred_method
        batch = _numba_batch_backend(method)
        if batch is not None and not per_row:
            return batch(self, t, P, dose, rtol, _atol(atol), method, max_steps, return_states)
        for i in range(m):
            d = dose[i] if per_row else dose
            try:
                events = self.resolve_dose(d)
                Y, _, st, _, p_used = self._integrate(
                    t, P[i], events, rtol=rtol, atol=_atol(atol), method=method,
                    max_steps=max_steps, sens=False,
                )
            except CartKineticsError:
                status[i] = INVALID_INPUT
                continue
            status[i] = st
            if st == SUCCESS:
                o = self._observe(t, Y, p_used)
                for j, k in enumerate(self.obs_names):
                    obs[k][i] = o[j]
                if states is not None:
                    for j, s in enumerate(self.state_names):
                        states[s][i] = Y[:, j]
        return BatchSolution(t=t, observed=obs, status=status, states=states)

    def sensitivities_batch(
        self, times: Any, params_table: Any, dose: Any = None, **kwargs: Any
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Batch sensitivities: observed (m, nt), d obs / d p (m, nt, np), status (m,)."""
        return sensitivities_batch(self, times, params_table, dose, **kwargs)

    def sensitivities(
        self,
        times: Any,
        params: Any = None,
        dose: Any = None,
        *,
        observation: str | None = None,
        rtol: float = 1e-8,
        atol: float | None = None,
        method: str = "auto",
        max_steps: int = 100_000,
        wrt: Any = None,
        **kwargs: Any,
    ) -> tuple[np.ndarray, np.ndarray, int]:
        """Observation and d observation / d params (natural scale) from forward sensitivities.

        Parameters
        ----------
        wrt : None (all parameters) or a sequence of parameter names or indices
            Compute the derivatives with respect to these parameters only (e.g. the free
            parameters of a fit): the solver then integrates n_states (1 + len(wrt))
            equations instead of n_states (1 + n_params).

        Returns
        -------
        observed : (nt,) in the observation's unit
        dobs_dp : (nt, n_params), columns in ``param_names`` order; (nt, len(wrt)) in the
            order of ``wrt`` when given
        status : int
        """
        sidx = None if wrt is None else self._wrt(wrt)
        name = observation or self.primary_observation
        if name not in self.obs_names:
            raise CartKineticsError(
                f"model {self.name} has no observation {name!r}; it has {self.obs_names}"
            )
        k = self.obs_names.index(name)
        t = self.check_times(times)
        p = self.param_vector(params)
        events = self.resolve_dose(dose, params)
        Y, S, status, _, p_used = self._integrate(
            t, p, events, rtol=rtol, atol=_atol(atol), method=method, max_steps=max_steps,
            sens=True, sidx=sidx,
        )
        assert S is not None
        obs = self._observe(t, Y, p_used)[k]
        dobs = self._observe_sens(t, Y, S, p_used, k, sidx)
        if self.spec.dose_parameter is not None and events and events[0][0] == 0.0:
            # the dose overrides that parameter: it is not a free parameter in this solve
            jd = self.param_names.index(self.spec.dose_parameter)
            cols = list(range(self.n_params)) if sidx is None else list(sidx)
            if jd in cols:
                dobs[:, cols.index(jd)] = 0.0
        return obs, dobs, int(status)


def sensitivities_batch(
    model: ODEModel,
    times: Any,
    params_table: Any,
    dose: Any = None,
    *,
    observation: str | None = None,
    rtol: float = 1e-8,
    atol: float | None = None,
    method: str = "auto",
    max_steps: int = 100_000,
    wrt: Any = None,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Observation (m, nt), d observation / d params (m, nt, np) and status (m,) for a table.

    Uses the numba batch sensitivity solver (threads) with one shared dose. ``wrt``
    (parameter names or indices, default all) selects the derivative columns: d obs / d p
    is then (m, nt, len(wrt)) in the order of ``wrt``.
    """
    from cartkinetics.models._solver_adapter import batch_events, ode_system, solver_method
    from cartkinetics.solvers import solve_sensitivities_batch

    name = observation or model.primary_observation
    if name not in model.obs_names:
        raise CartKineticsError(f"model {model.name} has no observation {name!r}")
    k = model.obs_names.index(name)
    t = model.check_times(times)
    P = model.param_table(params_table)
    if method == "auto":
        method = model.preferred_method
    events = model.resolve_dose(dose)
    BPS, JUMPS, P_used, Y0 = batch_events(model, P, events)
    m, n, npar = P.shape[0], model.n_states, model.n_params
    sidx = model._wrt(wrt)
    S0 = np.zeros((m, n, npar))
    for i in range(m):
        model.functions.init_dp(P_used[i], S0[i])
    DTB = None
    if model.n_breaks:
        DTB = np.zeros((m, model.n_breaks, npar))
        tau = np.zeros(model.n_breaks)
        for i in range(m):
            model.functions.breaks(P_used[i], tau)
            d = np.zeros((model.n_breaks, npar))
            model.functions.breaks_dp(P_used[i], d)
            DTB[i] = d[np.argsort(tau)]
    res = solve_sensitivities_batch(
        ode_system(model), t, Y0, P_used, dY0_dp=S0, breakpoints=BPS, dtb_dp=DTB, jumps=JUMPS,
        method=solver_method(method), rtol=rtol, atol=np.full(n, _atol(atol)),
        max_steps=max_steps, t0=0.0, wrt=sidx,
    )
    Y, S = res.y, res.S
    obs = model.observe_batch(t, Y, P_used)[:, k, :]
    dobs = np.empty((m, t.size, sidx.size))
    for i in range(m):
        dobs[i] = model._observe_sens(t, Y[i], S[i], P_used[i], k, sidx)
    status = np.asarray(res.status, dtype=np.int64).copy()
    status[~np.all(np.isfinite(P_used), axis=1)] = INVALID_INPUT
    bad = status != SUCCESS
    obs[bad] = np.nan
    dobs[bad] = np.nan
    if model.spec.dose_parameter is not None and events and events[0][0] == 0.0:
        jd = model.param_names.index(model.spec.dose_parameter)
        if jd in list(sidx):
            dobs[:, :, list(sidx).index(jd)] = 0.0
    return obs, dobs, status


def _is_event_list(x: Any) -> bool:
    try:
        return all(len(e) == 2 for e in x)
    except TypeError:
        return False


def _atol(atol: float | None) -> float:
    return 1e-10 if atol is None else float(atol)


# ---------------------------------------------------------------- numba backend hook
def _numba_backend(method: str) -> Any:
    """The numba solver adapter for one solve, or None (then scipy is used)."""
    if method.startswith("scipy"):
        return None
    try:
        from cartkinetics.models import _solver_adapter
    except ImportError:
        return None
    return _solver_adapter.single_backend(method)


def _numba_batch_backend(method: str) -> Any:
    if method.startswith("scipy"):
        return None
    try:
        from cartkinetics.models import _solver_adapter
    except ImportError:
        return None
    return _solver_adapter.batch_backend(method)


# ---------------------------------------------------------------- scipy backend
def _scipy_integrate(
    model: ODEModel,
    t: np.ndarray,
    p: np.ndarray,
    y0: np.ndarray,
    jumps: list[tuple[float, np.ndarray]],
    tau: np.ndarray,
    dtau: np.ndarray,
    rtol: float,
    atol: float,
    method: str,
    max_steps: int,
    sens: bool,
) -> tuple[np.ndarray, np.ndarray | None, int, str]:
    """Piecewise solve_ivp between breakpoints and dose times (reference implementation)."""
    from scipy.integrate import solve_ivp

    f = model.functions
    n, npar = model.n_states, model.n_params
    t_end = float(t[-1])
    order = np.argsort(tau)
    tau_sorted = tau[order]
    bounds = sorted(
        {float(b) for b in tau_sorted if 0.0 < b <= t_end}
        | {float(d) for d, _ in jumps if 0.0 < d <= t_end}
    )
    jump_at = dict(jumps)
    Y = np.full((t.size, n), np.nan)
    S = np.full((t.size, n, npar), np.nan) if sens else None

    def piece_at(a: float) -> int:
        return int(np.searchsorted(tau_sorted, a, side="right"))

    def make_fun(piece: int) -> tuple[Any, Any]:
        dydt = np.empty(n)
        J = np.empty((n, n))
        Jp = np.empty((n, npar))

        def fun(tt: float, z: np.ndarray) -> np.ndarray:
            y = z[:n]
            f.rhs(tt, y, p, piece, dydt)
            if not sens:
                return dydt.copy()
            f.jac(tt, y, p, piece, J)
            f.dfdp(tt, y, p, piece, Jp)
            Sm = z[n:].reshape(n, npar)
            return np.concatenate([dydt, (J @ Sm + Jp).ravel()])

        def jac(tt: float, z: np.ndarray) -> np.ndarray:
            f.jac(tt, z[:n], p, piece, J)
            return J.copy()

        return fun, (None if sens else jac)

    z = np.concatenate([y0, np.zeros(n * npar)]) if sens else y0.copy()
    if sens:
        S0 = np.zeros((n, npar))
        f.init_dp(p, S0)
        z[n:] = S0.ravel()
    a = 0.0
    segments = [*bounds]
    if not segments or segments[-1] < t_end:
        segments.append(t_end)
    status, msg = SUCCESS, status_message(SUCCESS)
    for b in segments:
        last = b == segments[-1]
        # samples exactly at a breakpoint report the state before its jump (as the solvers do)
        mask = (t > a) & (t <= b) if a > 0.0 else (t >= a) & (t <= b)
        piece = piece_at(a)
        fun, jac = make_fun(piece)
        if b > a:
            kw: dict[str, Any] = {"rtol": rtol, "atol": atol, "method": method}
            if jac is not None and method in ("Radau", "BDF", "LSODA"):
                kw["jac"] = jac
            # always evaluate at b too: the state there starts the next segment
            t_eval = np.unique(np.append(t[mask], b))
            res = solve_ivp(fun, (a, b), z, t_eval=t_eval, dense_output=False, **kw)
            pos = np.searchsorted(t_eval, t[mask])
            if not res.success or not np.all(np.isfinite(res.y)):
                bad = not np.all(np.isfinite(res.y))
                status = NON_FINITE if bad else STEP_TOO_SMALL
                msg = f"{status_message(status)} (scipy {method}: {res.message}, t={res.t[-1]:.6g})"
                return Y, S, status, msg
            if mask.any():
                Y[mask] = res.y[:n, pos].T
                if sens:
                    S[mask] = res.y[n:, pos].T.reshape(-1, n, npar)
            z = res.y[:, -1].copy()
        elif mask.any():
            Y[mask] = z[:n]
            if sens:
                S[mask] = z[n:].reshape(n, npar)
        if last:
            break
        # at b: parameter-dependent switches first (sensitivity jump), then doses
        hits = np.nonzero(tau == b)[0]
        if sens and hits.size:
            f_before, f_after = np.empty(n), np.empty(n)
            f.rhs(b, z[:n], p, piece, f_before)
            f.rhs(b, z[:n], p, piece_at(b), f_after)
            Sm = z[n:].reshape(n, npar).copy()
            for k in hits:
                Sm += np.outer(f_before - f_after, dtau[k])
            z[n:] = Sm.ravel()
        if b in jump_at:
            z[:n] = z[:n] + jump_at[b]
        a = b
    del max_steps  # scipy has no step limit; the numba solvers enforce it
    return Y, S, status, msg


# ---------------------------------------------------------------- user numba functions
def from_functions(
    name: str,
    rhs: Any,
    states: dict[str, str] | list[str],
    parameters: Any,
    *,
    jac: Any = None,
    dfdp: Any = None,
    observations: dict[str, Any] | None = None,
    initial: Any = None,
    dose_state: str | None = None,
    dose_scale: float = 1.0,
    dose_schedule: list[tuple[float, float]] | None = None,
    default_dose: float | None = None,
    description: str = "",
    reference: str = "",
    **metadata: Any,
) -> ODEModel:
    """An ODE model from your own numba functions ``rhs(t, y, p, piece, dydt)``.

    Parameters
    ----------
    jac, dfdp : optional numba functions with the signatures of the contract; when absent,
        they are approximated by central finite differences of ``rhs`` (compiled with numba).
    observations : dict name -> (weights over states, unit); default the sum of all states
    initial : callable ``init(p, y0)`` (numba or Python) or an array of initial states
    """
    from cartkinetics.models.spec import as_parameters

    params = as_parameters(parameters)
    st = dict(states) if isinstance(states, dict) else {s: "" for s in states}
    n, npar = len(st), len(params)
    if observations is None:
        observations = {"total": (np.ones(n), "")}
    W = np.array([np.asarray(w, dtype=float) for w, _ in observations.values()])
    if W.shape != (len(observations), n):
        raise CartKineticsError(f"observation weights must each have {n} entries")
    jac_f = jac if jac is not None else _fd_jac(rhs, n)
    dfdp_f = dfdp if dfdp is not None else _fd_dfdp(rhs, n, npar)
    if initial is None:
        def init(p: np.ndarray, y0: np.ndarray) -> None:
            y0[:] = 0.0
    elif callable(initial):
        init = initial
    else:
        y_init = np.asarray(initial, dtype=float)

        def init(p: np.ndarray, y0: np.ndarray) -> None:
            y0[:] = y_init

    def init_dp(p: np.ndarray, S0: np.ndarray) -> None:
        # finite differences: initial states may depend on p through a user callable
        base = np.zeros(n)
        init(p, base)
        for j in range(npar):
            h = 1e-7 * max(abs(p[j]), 1e-8)
            q = p.copy()
            q[j] += h
            y = np.zeros(n)
            init(q, y)
            S0[:, j] = (y - base) / h

    def obs(t: float, y: np.ndarray, p: np.ndarray, out: np.ndarray) -> None:
        out[:] = W @ y

    def obs_dy(t: float, y: np.ndarray, p: np.ndarray, out: np.ndarray) -> None:
        out[:, :] = W

    def obs_dp(t: float, y: np.ndarray, p: np.ndarray, out: np.ndarray) -> None:
        out[:, :] = 0.0

    functions = SimpleNamespace(
        rhs=rhs, jac=jac_f, dfdp=dfdp_f, init=init, init_dp=init_dp, obs=obs, obs_dy=obs_dy,
        obs_dp=obs_dp, breaks=lambda p, out: None, breaks_dp=lambda p, out: None,
    )
    spec = ODESpec(
        name=name,
        states=st,
        parameters=params,
        equations={s: "<numba>" for s in st},
        observations={k: ("<weights>", u) for k, (_, u) in observations.items()},
        dose_state=dose_state,
        dose_scale=dose_scale,
        dose_schedule=list(dose_schedule or [(0.0, 1.0)]),
        source="<functions>",
    )
    return ODEModel(spec, functions, description=description, reference=reference,
                    default_dose=default_dose, **metadata)


def _fd_jac(rhs: Any, n: int) -> Any:
    from numba import njit

    @njit
    def jac(t, y, p, piece, J):  # noqa: ANN001
        f0 = np.empty(n)
        f1 = np.empty(n)
        yy = y.copy()
        for k in range(n):
            h = 1e-7 * max(abs(y[k]), 1e-6)
            yy[k] = y[k] + h
            rhs(t, yy, p, piece, f1)
            yy[k] = y[k] - h
            rhs(t, yy, p, piece, f0)
            yy[k] = y[k]
            for i in range(n):
                J[i, k] = (f1[i] - f0[i]) / (2.0 * h)

    return jac


def _fd_dfdp(rhs: Any, n: int, npar: int) -> Any:
    from numba import njit

    @njit
    def dfdp(t, y, p, piece, Jp):  # noqa: ANN001
        f0 = np.empty(n)
        f1 = np.empty(n)
        pp = p.copy()
        for j in range(npar):
            h = 1e-7 * max(abs(p[j]), 1e-8)
            pp[j] = p[j] + h
            rhs(t, y, pp, piece, f1)
            pp[j] = p[j] - h
            rhs(t, y, pp, piece, f0)
            pp[j] = p[j]
            for i in range(n):
                Jp[i, j] = (f1[i] - f0[i]) / (2.0 * h)

    return dfdp


def model_from_spec(spec: ODESpec, **metadata: Any) -> ODEModel:
    """Compile (or load from the cache) the spec's functions and wrap them in an ODEModel."""
    from cartkinetics.models.codegen import compile_spec

    module = compile_spec(spec)
    return ODEModel(spec, module, **metadata)


__all__ = ["ODEModel", "Parameter", "from_functions", "model_from_spec"]
