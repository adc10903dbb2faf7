"""Bridge between ODE models and the numba solvers of :mod:`cartkinetics.solvers`.

A model's breakpoints (functions of the parameters, with their derivatives) become the
solver's breakpoints with zero jumps and ``dtb_dp``; doses after day 0 become breakpoints with
jumps into the dose state. The solver counts every breakpoint in ``piece``, so a model whose
right-hand side switches on ``piece`` cannot also take doses after day 0 (that would shift
its pieces): such a request is refused with a clear error instead of giving a wrong curve.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from cartkinetics.errors import CartKineticsError
from cartkinetics.solvers.status import INVALID_INPUT, SUCCESS

_NUMBA_METHODS = ("auto", "tsit5", "dopri5", "rodas5p", "rodas4")


def solver_method(method: str) -> str:
    """The numba solver method for a model-level ``method`` name (unknown names refused)."""
    m = str(method).lower()
    if m not in _NUMBA_METHODS:
        raise CartKineticsError(
            f"unknown method {method!r}; expected one of {_NUMBA_METHODS} or "
            "'scipy-lsoda', 'scipy-radau', 'scipy-bdf'"
        )
    return m


def ode_system(model: Any) -> Any:
    """The model's :class:`cartkinetics.solvers.OdeSystem` (built once, kept on the model)."""
    system = getattr(model, "_ode_system", None)
    if system is None:
        from cartkinetics.solvers import OdeSystem

        f = model.functions
        system = OdeSystem(
            f.rhs, f.jac, f.dfdp, model.n_states, model.n_params, name=model.name,
            autonomous=bool(getattr(f, "AUTONOMOUS", False)),
        )
        model._ode_system = system
    return system


def _events(
    model: Any, jumps: list[tuple[float, np.ndarray]], tau: np.ndarray, dtau: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(breakpoints (k,), jumps (k, n), dtb_dp (k, np)) for one parameter set."""
    n, npar = model.n_states, model.n_params
    if model.n_breaks and jumps:
        raise CartKineticsError(
            f"model {model.name} switches its equations at parameter-dependent breakpoints; "
            "doses after day 0 are not supported for it"
        )
    if model.n_breaks:
        order = np.argsort(tau)
        return tau[order].copy(), np.zeros((tau.size, n)), dtau[order].copy()
    if jumps:
        b = np.array([d for d, _ in jumps], dtype=float)
        J = np.array([v for _, v in jumps], dtype=float)
        return b, J, np.zeros((b.size, npar))
    return np.empty(0), np.empty((0, n)), np.empty((0, npar))


def single_backend(method: str) -> Any:
    """Solve function for one parameter set with the numba solvers, for ``method``."""
    m = solver_method(method)

    def run(model, t, p, y0, jumps, tau, dtau, rtol, atol, method_, max_steps, sens, sidx=None):
        from cartkinetics.solvers import solve, solve_sensitivities

        system = ode_system(model)
        atol = np.full(model.n_states, float(atol))  # per-state form (a scalar is accepted too)
        b, J, dtb = _events(model, jumps, tau, dtau)
        bp = b if b.size else None
        jp = J if b.size else None
        if sens:
            S0 = np.zeros((model.n_states, model.n_params))
            model.functions.init_dp(p, S0)
            res = solve_sensitivities(
                system, t, y0, p, dy0_dp=S0, breakpoints=bp, dtb_dp=dtb if b.size else None,
                jumps=jp, method=m, rtol=rtol, atol=atol, max_steps=max_steps, t0=0.0,
                wrt=sidx,  # None: all parameters; dy0_dp and dtb_dp keep all their columns
            )
            return res.y, res.S, int(res.status)
        res = solve(system, t, y0, p, breakpoints=bp, jumps=jp, method=m, rtol=rtol,
                    atol=atol, max_steps=max_steps, t0=0.0)
        return res.y, None, int(res.status)

    return run


def batch_backend(method: str) -> Any:
    """Solve function for many parameter sets with the batched numba solver, for ``method``."""
    m = solver_method(method)

    def run(model, t, P, dose, rtol, atol, method_, max_steps, return_states):
        from cartkinetics.models.base import BatchSolution
        from cartkinetics.solvers import solve_batch

        system = ode_system(model)
        n = model.n_states
        atol = np.full(n, float(atol))
        events = model.resolve_dose(dose)
        BPS, JUMPS, P_used, Y0 = batch_events(model, P, events)
        res = solve_batch(system, t, Y0, P_used, breakpoints=BPS, jumps=JUMPS, method=m,
                          rtol=rtol, atol=atol, max_steps=max_steps, t0=0.0)
        status = np.asarray(res.status, dtype=np.int64).copy()
        status[~np.all(np.isfinite(P_used), axis=1)] = INVALID_INPUT
        Y = res.y
        obs = model.observe_batch(t, Y, P_used)
        failed = status != SUCCESS
        if failed.any():
            obs[failed] = np.nan
        observed = {name: obs[:, j, :] for j, name in enumerate(model.obs_names)}
        states = None
        if return_states:
            states = {s: Y[:, :, j] for j, s in enumerate(model.state_names)}
        return BatchSolution(t=t, observed=observed, status=status, states=states)

    return run


def batch_initial_states(model: Any, P: np.ndarray) -> np.ndarray:
    """Initial states (m, n_states) of the parameter rows ``P`` (m, n_params).

    Uses the model's vectorised ``init_batch`` when it has one, else ``init`` per row.
    """
    f = model.functions
    Y0 = np.zeros((P.shape[0], model.n_states))
    if hasattr(f, "init_batch"):
        f.init_batch(P, Y0)
    else:
        for i in range(P.shape[0]):
            f.init(P[i], Y0[i])
    return Y0


def batch_breakpoints(model: Any, P: np.ndarray) -> np.ndarray:
    """Parameter-dependent breakpoints (m, n_breaks) in days, sorted along each row."""
    f = model.functions
    bps = np.zeros((P.shape[0], model.n_breaks))
    if hasattr(f, "breaks_batch"):
        f.breaks_batch(P, bps)
    else:
        for i in range(P.shape[0]):
            f.breaks(P[i], bps[i])
    bps.sort(axis=1)
    return bps


def batch_events(
    model: Any, P: np.ndarray, events: list[tuple[float, float]]
) -> tuple[np.ndarray | None, np.ndarray | None, np.ndarray, np.ndarray]:
    """Breakpoints (m, k), jumps (m, k, n), parameters and initial states for a batch.

    The same rules as :meth:`ODEModel.initial_conditions`, vectorised over the rows: a day-0
    dose sets ``dose_parameter`` if the model has one, otherwise it is added to the dose state
    at t = 0; later doses are jumps into the dose state.
    """
    rows, n = P.shape[0], model.n_states
    spec = model.spec
    P_used = np.array(P, dtype=float, copy=True)
    events = list(events)
    if spec.dose_parameter is not None and events and events[0][0] == 0.0:
        P_used[:, model.param_names.index(spec.dose_parameter)] = events[0][1] * spec.dose_scale
        events = events[1:]
    if events and spec.dose_state is None:
        raise CartKineticsError(f"model {model.name} takes no doses after day 0")
    Y0 = batch_initial_states(model, P_used)
    jumps: dict[float, np.ndarray] = {}
    if events:
        k = model.state_names.index(spec.dose_state)
        for day, amount in events:
            jumps.setdefault(day, np.zeros(n))[k] += amount * spec.dose_scale
    if 0.0 in jumps:
        Y0 += jumps.pop(0.0)
    later = sorted(jumps.items())
    if model.n_breaks:
        _events(model, later, np.zeros(0), np.zeros((0, 0)))  # refuses doses after day 0
        BPS = batch_breakpoints(model, P_used)
        return BPS, np.zeros((rows, model.n_breaks, n)), P_used, Y0
    if later:
        b = np.array([d for d, _ in later])
        J = np.array([v for _, v in later])
        return (np.broadcast_to(b, (rows, b.size)).copy(),
                np.broadcast_to(J, (rows, *J.shape)).copy(), P_used, Y0)
    return None, None, P_used, Y0
