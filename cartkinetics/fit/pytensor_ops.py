"""PyTensor Ops that put the library's ODE models inside a PyMC model.

:class:`ODEObservationOp` maps the natural-scale parameters of every series,
``theta (n_series, n_params)``, to the ln predictions at all observation times,
``log_pred (n_obs,)``, in one call. Its gradient uses the forward sensitivities of the numba
solvers (``model.sensitivities``: d obs / d p from S' = J S + df/dp, including the jumps at
parameter-dependent breakpoints), so NUTS gets exact-to-solver-tolerance gradients without
finite differences. The vector-Jacobian product is

    d L / d theta[s, j] = sum_{i in series s} g_i * (d obs_i / d p_j) / obs_i .

The Op has two outputs, the ln predictions and their Jacobian; its gradient is assembled
symbolically from the second output, so a log-density-and-gradient function solves the ODEs
once per evaluation.

``wrt`` (the parameters that vary in the fit, e.g. the free ones) restricts the forward
sensitivities to those columns: the solver integrates n_states (1 + len(wrt)) equations
instead of n_states (1 + n_params) (Liu 2022 with 4 of 12 free: 15 instead of 39), and the
Jacobian columns of the other parameters are zero (they must then be constants in the graph).

Sampling: for models without parameter-dependent breakpoints or per-series doses (e.g. Liu
2022), a numba implementation of the Op is registered with PyTensor's
``numba_funcify`` dispatcher: it calls the solvers' numba kernel
(``cartkinetics.solvers._kernels.solve_serial``) with forward sensitivities for all series,
so nutpie's numba backend runs the whole log-density without calling back into Python.
Other models (Stein's ODE form switches at Tmax, a parameter-dependent breakpoint) use the
Python ``perform``; nutpie then runs it in numba object mode (PyTensor's fallback, with a
warning), and ``sampler="pymc"`` uses it directly.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from cartkinetics.errors import CartKineticsError
from cartkinetics.solvers.status import N_STATS, SUCCESS


def _series_blocks(pdata: Any) -> list[tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]]:
    """Per series: observation indices, sorted unique times, inverse map, dose (or None)."""
    blocks = []
    for s in range(pdata.n_series):
        idx = np.flatnonzero(pdata.obs_series == s)
        tt, inv = np.unique(pdata.t[idx], return_inverse=True)
        blocks.append((idx, tt, inv, pdata.series_dose[s]))
    return blocks


HORIZON_GROUPS = 4  # batched solver calls per evaluation in the Python path


def _horizons(obs_series: np.ndarray, t_pos: np.ndarray, n_series: int,
              groups: int = HORIZON_GROUPS) -> np.ndarray:
    """How many of the cohort's sorted observation times each series is solved through.

    Series are solved to the last observation of their group, not all to the cohort's last
    time: Liu 2022's 32 series end at days 4-200, and solving every one to day 200 took 5499
    steps where 4 groups (series sorted by their last time, split in 4) take 4079 and each
    series' own last time 3742. Both forms of the Op use these horizons, so they give the
    same numbers; the Python form makes one batched call per group.
    """
    own = np.zeros(n_series, dtype=np.int64)
    np.maximum.at(own, obs_series, t_pos + 1)
    nt = np.empty_like(own)
    for chunk in np.array_split(np.argsort(own, kind="stable"), min(groups, n_series)):
        if chunk.size:
            nt[chunk] = own[chunk].max()
    return nt


class ODEObservationOp:
    """Callable building the PyTensor graph ``log_pred = op(theta)`` for an ODE model.

    Parameters
    ----------
    model : ODEModel (``models.get(...)``)
    pdata : PopulationData (observation times per series; the series' doses where known)
    rtol : relative tolerance of the solves (sensitivities are error-controlled too)
    atol : absolute tolerance of the states (model units, e.g. cells/uL); a sensitivity
        column's is atol / |parameter|
    method : solver method passed to ``model.sensitivities``
    batch : solve all series in one call of ``cartkinetics.solvers.solve_sensitivities_batch``
        (numba kernels on threads) when the model has no parameter-dependent breakpoints and
        no per-series dose; otherwise (or False) one ``model.sensitivities`` call per series
    wrt : None (all parameters) or the names / indices of the parameters that vary
        Sensitivities are computed for these columns of theta only; the Jacobian (and so the
        gradient) of the other columns is zero, which is exact when they are constants.
    observations : None or a list of model observation names, one per output of ``pdata``
        (``pdata.outputs``); row i is predicted by ``observations[pdata.obs_output[i]]``.
        Default: the model's primary observation for every row.
    """

    def __init__(
        self, model: Any, pdata: Any, rtol: float = 1e-6, method: str = "auto",
        batch: bool = True, wrt: Any = None, observations: list[str] | None = None,
        atol: float = 1e-10,
    ) -> None:
        self.model = model
        self.pdata = pdata
        self.rtol = float(rtol)
        self.atol = float(atol)
        self.method = method
        self.blocks = _series_blocks(pdata)
        self.n_obs = int(pdata.n_obs)
        self.n_series = int(pdata.n_series)
        self.n_params = int(model.n_params)
        from cartkinetics.solvers.api import sens_indices

        self.sidx = sens_indices(wrt, self.n_params, getattr(model, "param_names", None))
        names = list(model.obs_names)
        self.observations = list(observations or [model.primary_observation])
        for o in self.observations:
            if o not in names:
                raise CartKineticsError(f"ODE op: {o!r} is not an observation of the model "
                                        f"({names})")
        out = getattr(pdata, "obs_output", None)
        out = np.zeros(self.n_obs, dtype=np.int64) if out is None else np.asarray(out)
        if out.size and out.max() >= len(self.observations):
            raise CartKineticsError("ODE op: the data have more outputs than observations")
        # the model observation function of every row
        self.obs_k = np.asarray([names.index(o) for o in self.observations],
                                dtype=np.int64)[out]
        self._cache_key: bytes | None = None
        self._cache: tuple[np.ndarray, np.ndarray] | None = None
        self.n_solves = 0
        self.batched: bool | None = None if batch else False
        self._op = _make_ops(self)

    # ------------------------------------------------------------ numerics
    def evaluate(self, theta: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """ln prediction (n_obs,) and d ln prediction / d theta (n_obs, n_params).

        A failed solve gives NaN predictions for its series (the sampler rejects the point)
        and zero gradients.
        """
        theta = np.ascontiguousarray(theta, dtype=np.float64)
        key = theta.tobytes()
        if key == self._cache_key and self._cache is not None:
            return self._cache
        if self._batchable():
            out = self._evaluate_batch(theta)
            self._cache_key, self._cache = key, out
            return out
        logp = np.full(self.n_obs, np.nan)
        jac = np.zeros((self.n_obs, self.n_params))
        names = self.model.obs_names
        for s, (idx, tt, inv, dose) in enumerate(self.blocks):
            d = None if not np.isfinite(dose) else float(dose)
            for k in np.unique(self.obs_k[idx]):  # one solve per observation of the series
                mine = self.obs_k[idx] == k
                try:
                    obs, dobs, status = self.model.sensitivities(
                        tt, theta[s], dose=d, rtol=self.rtol, atol=self.atol, method=self.method,
                        wrt=self.sidx, observation=names[k],
                    )
                except CartKineticsError:
                    continue
                self.n_solves += 1
                if status != SUCCESS or not np.all(np.isfinite(obs)) or np.any(obs <= 0):
                    continue
                rows, at = idx[mine], inv[mine]
                logp[rows] = np.log(obs)[at]
                jac[np.ix_(rows, self.sidx)] = (dobs / obs[:, None])[at]
        self._cache_key, self._cache = key, (logp, jac)
        return logp, jac

    def _batchable(self) -> bool:
        """One batched solver call serves models without breakpoints or later doses."""
        if self.batched is not None:
            return self.batched
        m = self.model
        ok = (
            hasattr(m, "functions")
            and getattr(m, "n_breaks", 1) == 0
            and not str(self.method).startswith("scipy")
            and not np.any(np.isfinite(self.pdata.series_dose))
            # a default dose would override a parameter (e.g. Liu's nTN0): per-series path
            and not (getattr(getattr(m, "spec", None), "dose_parameter", None) is not None
                     and m.default_dose is not None)
        )
        if ok:
            try:
                from cartkinetics.models._solver_adapter import ode_system

                self._system = ode_system(m)
                self._t_all = np.unique(self.pdata.t)
                self._t_pos = np.searchsorted(self._t_all, self.pdata.t)
                self._nt_of = _horizons(self.pdata.obs_series, self._t_pos, self.n_series)
            except Exception:  # solvers not importable: per-series path
                ok = False
        self.batched = bool(ok)
        return self.batched

    def _evaluate_batch(self, theta: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """All series in one call of the numba solvers (forward sensitivities, threads)."""
        from cartkinetics.solvers import solve_sensitivities_batch

        m = self.model
        ns, n, npar = self.n_series, m.n_states, m.n_params
        sidx = self.sidx
        P = np.empty((ns, npar))
        Y0 = np.empty((ns, n))
        S0 = np.zeros((ns, n, npar))
        for s in range(ns):
            p_used, y0, _ = m.initial_conditions(theta[s], [])
            P[s], Y0[s] = p_used, y0
            m.functions.init_dp(p_used, S0[s])
        logp = np.full(self.n_obs, np.nan)
        jac = np.zeros((self.n_obs, npar))
        if not (np.all(np.isfinite(P)) and np.all(P >= 0)):
            return logp, jac
        # one batched call per horizon group (_horizons); the kernel solves each series
        # alone, so the numbers are those of the numba form below
        Y = np.full((ns, len(self._t_all), n), np.nan)
        SS = np.zeros((ns, len(self._t_all), n, len(sidx)))
        status = np.zeros(ns, dtype=np.int64)
        for nt in np.unique(self._nt_of[self._nt_of > 0]):
            grp = np.flatnonzero(self._nt_of == nt)
            r = solve_sensitivities_batch(
                self._system, self._t_all[:nt], Y0[grp], P[grp], dY0_dp=S0[grp],
                method=self.method, rtol=self.rtol, atol=np.full(n, self.atol), t0=0.0,
                wrt=sidx,
            )
            Y[grp, :nt], SS[grp, :nt], status[grp] = r.y, r.S, r.status
        self.n_solves += ns
        kk = self.obs_k
        n_fn = len(m.obs_names)
        dy = np.empty((n_fn, n))
        dp = np.empty((n_fn, npar))
        ob = np.empty(n_fn)
        OB = np.full(self.n_obs, np.nan)
        DY = np.zeros((self.n_obs, n))
        DP = np.zeros((self.n_obs, npar))
        f = m.functions
        series, pos = self.pdata.obs_series, self._t_pos
        ok = status[series] == SUCCESS
        for i in np.flatnonzero(ok):  # model calls only; the algebra is vectorised below
            s, j = series[i], pos[i]
            t, y = self._t_all[j], Y[s, j]
            f.obs(t, y, P[s], ob)
            f.obs_dy(t, y, P[s], dy)
            f.obs_dp(t, y, P[s], dp)
            k = kk[i]
            OB[i], DY[i], DP[i] = ob[k], dy[k], dp[k]
        ok &= np.isfinite(OB) & (OB > 0)
        rows = np.flatnonzero(ok)
        S = SS[series[rows], pos[rows]]  # (rows, n, len(sidx))
        logp[rows] = np.log(OB[rows])
        jac[np.ix_(rows, sidx)] = (
            np.einsum("rq,rqj->rj", DY[rows], S) + DP[np.ix_(rows, sidx)]
        ) / OB[rows, None]
        return logp, jac

    def __call__(self, theta: Any) -> Any:
        return self._op(theta)


def _make_ops(owner: ODEObservationOp) -> Any:
    """The PyTensor Op (two outputs: ln prediction and its Jacobian) and its numba form."""
    import pytensor.tensor as pt
    from pytensor.graph.basic import Apply
    from pytensor.graph.op import Op

    class ODELogPred(Op):
        """theta (n_series, n_params) -> (ln prediction (n_obs,), d ln pred / d theta (n_obs,
        n_params)); the gradient is assembled symbolically from the second output, so a
        log-density-and-gradient function solves the ODEs once per evaluation."""

        __props__ = ()

        def make_node(self, theta: Any) -> Apply:
            theta = pt.as_tensor_variable(theta)
            if theta.ndim != 2:
                raise CartKineticsError("ODE op: theta must be (n_series, n_params)")
            return Apply(self, [theta], [pt.dvector(), pt.dmatrix()])

        def perform(self, node: Any, inputs: list, outputs: list) -> None:
            logp, jac = owner.evaluate(inputs[0])
            outputs[0][0] = logp.copy()
            outputs[1][0] = jac.copy()

        def grad(self, inputs: list, output_grads: list) -> list:
            from pytensor.gradient import DisconnectedType

            theta = inputs[0]
            _, jac = self(theta)
            g = output_grads[0]
            if isinstance(g.type, DisconnectedType):
                return [pt.zeros_like(theta)]
            contrib = g[:, None] * jac
            out = pt.zeros((owner.n_series, owner.n_params))
            return [pt.inc_subtensor(out[owner.pdata.obs_series], contrib)]

        def infer_shape(self, fgraph: Any, node: Any, shapes: list) -> list:
            return [(owner.n_obs,), (owner.n_obs, owner.n_params)]

    op = ODELogPred()
    _register_numba(ODELogPred, owner)

    def call(theta: Any) -> Any:
        return op(theta)[0]

    return call


def _register_numba(op_class: Any, owner: ODEObservationOp) -> None:
    """Register a numba implementation of the Op (nutpie's numba backend then runs the
    whole log-density, ODE solves included, without calling back into Python)."""
    try:
        from pytensor.link.numba.dispatch import numba_funcify
    except ImportError:  # pragma: no cover - old pytensor
        return
    evaluate = _numba_evaluator(owner)
    if evaluate is None:
        return

    @numba_funcify.register(op_class)
    def _funcify(op: Any, node: Any = None, **kwargs: Any) -> Any:
        return evaluate


def _numba_evaluator(owner: ODEObservationOp) -> Any:
    """An @njit function theta -> (log_pred, jac) doing the batched sensitivity solve, or
    None when the model cannot take this path (breakpoints, per-series doses, no solvers)."""
    if not owner._batchable():
        return None
    try:
        import numba

        from cartkinetics.solvers import _kernels
        from cartkinetics.solvers.api import kernel_arguments
    except ImportError:
        return None
    model = owner.model
    f = model.functions
    f_rhs, f_jac, f_dfdp = owner._system.functions()
    f_init, f_init_dp = f.init, f.init_dp
    f_obs, f_obs_dy, f_obs_dp = f.obs, f.obs_dy, f.obs_dp
    solve_serial = _kernels.solve_serial
    ka = kernel_arguments(owner.method, float(owner.rtol), 0.0)
    ea, eb, ee, ec, edense = ka.etab
    ra, rC, rc, rd, rb, re, rH = ka.rtab
    reals = ka.reals
    kind = np.int64(ka.kind)
    has_jac = owner._system.jac is not None
    autonomous = bool(owner._system.autonomous)
    n, npar = np.int64(model.n_states), np.int64(model.n_params)
    sidx = owner.sidx.astype(np.int64)
    nsel = np.int64(sidx.shape[0])
    n_obs_fn = len(model.obs_names)
    obs_k = owner.obs_k.astype(np.int64)
    t_all = owner._t_all.copy()
    t_pos = owner._t_pos.astype(np.int64)
    obs_series = owner.pdata.obs_series.astype(np.int64)
    nt_of = owner._nt_of.copy()  # each series' horizon, as in evaluate
    n_obs = owner.n_obs
    atol = float(owner.atol)
    max_steps = np.int64(100_000)

    @numba.njit(cache=False)
    def evaluate(theta):  # pragma: no cover - numba
        ns = theta.shape[0]
        N = n * (1 + nsel)
        nt = t_all.shape[0]
        P = np.ascontiguousarray(theta).copy()
        Y0 = np.zeros((ns, N))
        ATOL = np.empty((ns, N))
        y0 = np.zeros(n)
        S0 = np.zeros((n, npar))
        logp = np.full(n_obs, np.nan)
        jac = np.zeros((n_obs, npar))
        for s in range(ns):
            for j in range(npar):
                if not (np.isfinite(P[s, j]) and P[s, j] >= 0.0):
                    return logp, jac
            y0[:] = 0.0
            S0[:, :] = 0.0
            f_init(P[s], y0)
            f_init_dp(P[s], S0)
            for i in range(n):
                Y0[s, i] = y0[i]
                ATOL[s, i] = atol
            for j in range(nsel):  # the selected parameters only
                c = sidx[j]
                sc = abs(P[s, c])
                if not (np.isfinite(sc) and sc > 0.0):
                    sc = 1.0
                for i in range(n):
                    Y0[s, n + j * n + i] = S0[i, c]  # column-major sensitivities
                    ATOL[s, n + j * n + i] = atol / sc
        T0 = np.zeros(ns)
        BPS = np.empty((ns, 0))
        JUMPS = np.zeros((ns, 0, n))
        DTB = np.zeros((ns, 0, nsel))
        OUT = np.empty((ns, nt, N))
        STATS = np.zeros((ns, N_STATS), dtype=np.int64)
        STATUS = np.zeros(ns, dtype=np.int64)
        # closure arrays are read-only constants in numba: the kernel's signature wants
        # writable ones
        etab = (ea.copy(), eb.copy(), ee.copy(), ec.copy(), edense.copy())
        rtab = (ra.copy(), rC.copy(), rc.copy(), rd.copy(), rb.copy(), re.copy(), rH.copy())
        sid = sidx.copy()
        one = np.zeros(1, dtype=np.int64)
        for s in range(ns):
            one[0] = s
            # rows of OUT[s] past nt_of[s] are never read (no observation of s lies there);
            # one series per call, through its group's horizon as in evaluate
            solve_serial(f_rhs, f_jac, f_dfdp, T0, t_all[:nt_of[s]].copy(), Y0, P, BPS, JUMPS,
                         DTB, sid, n, npar, True, kind, has_jac, autonomous, etab, rtab, reals,
                         ATOL, max_steps, OUT, STATS, STATUS, one)
        ob = np.empty(n_obs_fn)
        dy = np.empty((n_obs_fn, n))
        dp = np.empty((n_obs_fn, npar))
        y = np.empty(n)
        for i in range(n_obs):
            s = obs_series[i]
            k = obs_k[i]
            if STATUS[s] != SUCCESS:
                continue
            jt = t_pos[i]
            t = t_all[jt]
            for q in range(n):
                y[q] = OUT[s, jt, q]
            f_obs(t, y, P[s], ob)
            if not (np.isfinite(ob[k]) and ob[k] > 0.0):
                continue
            f_obs_dy(t, y, P[s], dy)
            f_obs_dp(t, y, P[s], dp)
            logp[i] = np.log(ob[k])
            for j in range(nsel):
                c = sidx[j]
                acc = dp[k, c]
                for q in range(n):
                    acc += dy[k, q] * OUT[s, jt, n + j * n + q]
                jac[i, c] = acc / ob[k]
        return logp, jac

    return evaluate
