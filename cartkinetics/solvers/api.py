"""Python-level solver API: argument checking, broadcasting, result objects."""

from __future__ import annotations

from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

import numba
import numpy as np

from cartkinetics.errors import CartKineticsError
from cartkinetics.solvers.status import (
    KIND_AUTO,
    KIND_EXPLICIT,
    KIND_ROSENBROCK,
    N_STATS,
    STATS_FIELDS,
    STATUS_MESSAGES,
    STATUS_NAMES,
    SUCCESS,
    SWITCH,
)
from cartkinetics.solvers.system import OdeSystem
from cartkinetics.solvers.tableaus import ExplicitTableau, RosenbrockTableau
from cartkinetics.solvers.tableaus.dopri5 import DOPRI5
from cartkinetics.solvers.tableaus.rodas4 import RODAS4
from cartkinetics.solvers.tableaus.rodas5p import RODAS5P
from cartkinetics.solvers.tableaus.tsit5 import TSIT5

METHODS: tuple[str, ...] = ("auto", "tsit5", "dopri5", "rodas5p", "rodas4")


class _SingleStatus:
    """``ok`` and ``message`` of one solve, read from its ``status`` code."""

    status: int

    @property
    def ok(self) -> bool:
        """True when the solve succeeded (status SUCCESS)."""
        return self.status == SUCCESS

    @property
    def message(self) -> str:
        """The status as a sentence (see STATUS_MESSAGES)."""
        return STATUS_MESSAGES[self.status]


@dataclass
class SolveResult(_SingleStatus):
    """One solve.

    Attributes
    ----------
    t : (nt,) requested times (days).
    y : (nt, n) states at t; NaN where the solve did not reach (see status).
    status : int, 0 SUCCESS, 1 MAX_STEPS, 2 STEP_TOO_SMALL, 3 NON_FINITE, 4 INVALID_INPUT.
    stats : dict of counters (steps, rejected, f_evaluations, jacobians, lu_decompositions,
        switched_to_stiff).
    method : str
    """

    t: np.ndarray
    y: np.ndarray
    status: int
    stats: dict
    method: str

    def __iter__(self) -> Iterator:
        yield self.y
        yield self.status


@dataclass
class BatchResult:
    """Many solves; unpacks as ``y, status = solve_batch(...)``.

    Attributes
    ----------
    t : (nt,); y : (m, nt, n); status : (m,) int64; stats : (m, 6) int64 (columns
    STATS_FIELDS); method : str.
    """

    t: np.ndarray
    y: np.ndarray
    status: np.ndarray
    stats: np.ndarray
    method: str

    @property
    def messages(self) -> list[str]:
        return [STATUS_MESSAGES[int(s)] for s in self.status]

    def __iter__(self) -> Iterator:
        yield self.y
        yield self.status


@dataclass
class SensitivityResult(_SingleStatus):
    """One solve with forward sensitivities; unpacks as ``y, S, status``.

    S[i, k, j] = d y_k(t_i) / d p_j.
    """

    t: np.ndarray
    y: np.ndarray
    S: np.ndarray
    status: int
    stats: dict
    method: str

    def __iter__(self) -> Iterator:
        yield self.y
        yield self.S
        yield self.status


@dataclass
class SensitivityBatchResult:
    """Many solves with sensitivities: y (m, nt, n), S (m, nt, n, np), status (m,)."""

    t: np.ndarray
    y: np.ndarray
    S: np.ndarray
    status: np.ndarray
    stats: np.ndarray
    method: str = field(default="auto")

    def __iter__(self) -> Iterator:
        yield self.y
        yield self.S
        yield self.status


def _tableaus(method: str) -> tuple[int, ExplicitTableau, RosenbrockTableau]:
    kind, et, rt = _tableaus_of(method)
    if et.a.shape != (7, 7):  # the explicit stepper is unrolled for 7-stage FSAL pairs
        raise CartKineticsError(
            f"explicit tableau {et.name} has {et.a.shape[0]} stages; the kernel takes 7-stage "
            "first-same-as-last pairs (such as Tsit5 and DOPRI5)"
        )
    return kind, et, rt


def _tableaus_of(method: str) -> tuple[int, ExplicitTableau, RosenbrockTableau]:
    m = str(method).lower()
    if m == "auto":
        return KIND_AUTO, TSIT5, RODAS5P
    if m == "tsit5":
        return KIND_EXPLICIT, TSIT5, RODAS5P
    if m == "dopri5":
        return KIND_EXPLICIT, DOPRI5, RODAS5P
    if m == "rodas5p":
        return KIND_ROSENBROCK, TSIT5, RODAS5P
    if m == "rodas4":
        return KIND_ROSENBROCK, TSIT5, RODAS4
    raise CartKineticsError(f"unknown method {method!r}; expected one of {', '.join(METHODS)}")


@dataclass(frozen=True)
class KernelArguments:
    """The method-dependent arguments of the kernels' entry points (see
    ``_kernels.signature``): ``kind`` (KIND_EXPLICIT, KIND_ROSENBROCK or KIND_AUTO), the
    explicit tableau ``etab = (a, b, e, c, dense)``, the Rosenbrock tableau ``rtab = (a, C,
    c, d, b, e, H)`` and ``reals = (explicit error order, stiffness threshold, gamma,
    Rosenbrock error order, rtol, first_step)``."""

    kind: int
    etab: tuple
    rtab: tuple
    reals: tuple


def kernel_arguments(method: str, rtol: float, first_step: float = 0.0) -> KernelArguments:
    """The kernel arguments of ``method`` with tolerance ``rtol`` and ``first_step`` (0:
    automatic): the one place that packs them, for the Python API and the PyTensor Op."""
    kind, et, rt = _tableaus(method)
    return KernelArguments(
        kind=int(kind),
        etab=(et.a, et.b, et.e, et.c, et.dense),
        rtab=(rt.a, rt.C, rt.c, rt.d, rt.b, rt.e, rt.H),
        reals=(float(et.error_order), float(et.stiff_threshold), float(rt.gamma),
               float(rt.error_order), float(rtol), float(first_step)),
    )


def kernel_outputs(m: int, nt: int, N: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Output arrays of a kernel call for m problems of N equations at nt times: OUT (m, nt,
    N), STATS (m, N_STATS) int64 and STATUS (m,) int64."""
    return (np.empty((m, nt, N)), np.zeros((m, N_STATS), dtype=np.int64),
            np.zeros(m, dtype=np.int64))


def _as_float(x, name: str, shape: tuple[int, ...] | None = None) -> np.ndarray:
    try:
        a = np.asarray(x, dtype=np.float64)
        if a.ndim:
            a = np.ascontiguousarray(a)
    except (TypeError, ValueError) as exc:
        raise CartKineticsError(f"{name} must be numeric ({exc})") from None
    if shape is not None and a.shape != shape:
        raise CartKineticsError(f"{name} must have shape {shape}, got {a.shape}")
    if not a.flags.writeable:  # read-only arrays would compile a second kernel specialisation
        a = a.copy()
    return a


def _broadcast(x, name: str, m: int, tail: tuple[int, ...]) -> np.ndarray:
    """Accept tail-shaped (shared by all problems) or (m, *tail) arrays."""
    a = _as_float(x, name)
    if a.shape == tail:
        return np.broadcast_to(a, (m, *tail)).copy()  # writable: one kernel type
    if a.shape == (m, *tail):
        return a
    raise CartKineticsError(f"{name} must have shape {tail} or {(m, *tail)}, got {a.shape}")


def sens_indices(wrt, n_params: int, param_names=None) -> np.ndarray:
    """Indices (int64, in the order given) of the parameters ``wrt`` selects.

    Parameters
    ----------
    wrt : None (all parameters), or a sequence of parameter indices (0-based) or names
        (names need ``param_names``).
    n_params : number of model parameters.
    param_names : sequence of str or None.

    Raises CartKineticsError for an unknown name, an index out of range or a duplicate.
    """
    if wrt is None:
        return np.arange(n_params, dtype=np.int64)
    if isinstance(wrt, (str, int, np.integer)):
        wrt = [wrt]
    idx = []
    for w in wrt:
        if isinstance(w, str):
            names = list(param_names) if param_names is not None else []
            if w not in names:
                raise CartKineticsError(
                    f"wrt: unknown parameter {w!r}; expected one of {names} or indices"
                )
            idx.append(names.index(w))
        elif isinstance(w, (int, np.integer)) and not isinstance(w, bool):
            if not 0 <= int(w) < n_params:
                raise CartKineticsError(
                    f"wrt: parameter index {int(w)} out of range for {n_params} parameters"
                )
            idx.append(int(w))
        else:
            raise CartKineticsError(f"wrt: expected parameter names or indices, got {w!r}")
    if len(set(idx)) != len(idx):
        raise CartKineticsError(f"wrt: duplicate parameters in {list(wrt)}")
    return np.asarray(idx, dtype=np.int64).reshape(-1)


def _prepare(system, t_eval, Y0, P, breakpoints, jumps, dtb_dp, dy0_dp, t0, atol, sens, single,
             sidx=None):
    """Normalise inputs to the kernels' (m, ...) arrays (sensitivities for columns sidx)."""
    if not isinstance(system, OdeSystem):
        raise CartKineticsError(f"system must be an OdeSystem, got {type(system).__name__}")
    n, npar = system.n_states, system.n_params
    t_eval = _as_float(t_eval, "t_eval")
    if t_eval.ndim != 1:
        raise CartKineticsError(f"t_eval must be one-dimensional, got shape {t_eval.shape}")
    P = _as_float(P, "p" if single else "P")
    if single:
        P = P.reshape(1, -1) if P.ndim == 1 else P
    if P.ndim != 2 or P.shape[1] != npar:
        raise CartKineticsError(
            f"parameters must have shape {'(n_params,)' if single else '(m, n_params)'} with "
            f"n_params={npar} for model '{system.name}', got {np.shape(P)}"
        )
    m = P.shape[0]
    Y0 = _broadcast(Y0, "y0" if single else "Y0", m, (n,))
    if breakpoints is None:
        BPS = np.empty((m, 0))
    else:
        b = _as_float(breakpoints, "breakpoints")
        if b.ndim == 1:
            BPS = np.broadcast_to(b, (m, b.shape[0])).copy()
        elif b.ndim == 2 and b.shape[0] == m and not single:
            BPS = b
        else:
            raise CartKineticsError(f"breakpoints must have shape (k,) or (m, k), got {b.shape}")
    k = BPS.shape[1]
    JUMPS = np.zeros((m, k, n)) if jumps is None else _broadcast(jumps, "jumps", m, (k, n))
    if t0 is None:
        t0v = float(t_eval[0]) if t_eval.size else 0.0
        T0 = np.full(m, t0v)
    else:
        T0 = np.broadcast_to(_as_float(t0, "t0"), (m,)).copy()
    atol = _as_float(atol, "atol")
    if atol.ndim == 0:
        atol_n = np.full(n, float(atol))
    elif atol.shape == (n,):
        atol_n = atol
    else:
        raise CartKineticsError(f"atol must be a scalar or have shape ({n},), got {atol.shape}")
    if sens:
        if sidx is None:
            sidx = np.arange(npar, dtype=np.int64)
        if system.dfdp is None:
            raise CartKineticsError(
                f"model '{system.name}' has no dfdp function: sensitivities need df/dp"
            )
        ns = sidx.shape[0]
        # dtb_dp / dy0_dp: one column per model parameter, or one per selected parameter
        if dtb_dp is None:
            DTB = np.zeros((m, k, ns))
        else:
            DTB = _select(dtb_dp, "dtb_dp", m, (k,), npar, sidx)
        if dy0_dp is None:
            S0 = np.zeros((m, n, ns))
        else:
            S0 = _select(dy0_dp, "dy0_dp", m, (n,), npar, sidx)
        N = n * (1 + ns)
        Y0a = np.empty((m, N))
        Y0a[:, :n] = Y0
        # column-major: S[:, j] contiguous
        Y0a[:, n:] = np.transpose(S0, (0, 2, 1)).reshape(m, n * ns)
        # sensitivities of a parameter of size |p_j| get atol / |p_j| (controls p_j dy/dp_j)
        scale = np.abs(P[:, sidx])
        scale = np.where(np.isfinite(scale) & (scale > 0), scale, 1.0)
        ATOL = np.empty((m, N))
        ATOL[:, :n] = atol_n
        ATOL[:, n:] = (atol_n[None, None, :] / scale[:, :, None]).reshape(m, n * ns)
        Y0 = Y0a
    else:
        DTB = np.zeros((m, k, max(npar, 0)))
        ATOL = np.broadcast_to(atol_n, (m, n)).copy()
    return t_eval, T0, Y0, P, BPS, JUMPS, DTB, ATOL


def _select(x, name: str, m: int, head: tuple[int, ...], npar: int, sidx: np.ndarray) -> np.ndarray:
    """(m, *head, len(sidx)) from an array shared or per problem whose last axis has n_params
    columns (all parameters: the selected ones are taken) or len(sidx) columns (already
    selected)."""
    a = _as_float(x, name)
    ns = sidx.shape[0]
    if a.ndim >= 1 and a.shape[-1] == npar:
        a = np.ascontiguousarray(a[..., sidx])
    elif not (a.ndim >= 1 and a.shape[-1] == ns):
        raise CartKineticsError(
            f"{name} must have {npar} (all parameters) or {ns} (the selected parameters) "
            f"columns, got shape {a.shape}"
        )
    return _broadcast(a, name, m, (*head, ns))


def _kernel(sens: bool, kind: int, lockstep: bool):
    """The numba entry point for a call (each compiled, or loaded from the cache, on first use).

    Each entry point holds one method family, so that a first solve compiles one method only
    (the first-call compile time users see); an auto solve runs the explicit entry point and
    continues the problems it found stiff with the Rosenbrock one (see ``_run``)."""
    from cartkinetics.solvers import _kernels

    if kind == KIND_EXPLICIT and lockstep and not sens:
        from cartkinetics.solvers import _lockstep

        return _lockstep.solve_explicit  # two problems side by side: same results, faster
    if kind == KIND_ROSENBROCK:
        return _kernels.solve_sens_ros if sens else _kernels.solve_ros
    return _kernels.solve_sens_erk if sens else _kernels.solve_erk


def _run(system, t_eval, T0, Y0, P, BPS, JUMPS, DTB, ATOL, method, rtol, max_steps, first_step,
         sens, parallel, n_threads=None, sidx=None, lockstep=True):
    from cartkinetics.solvers._kernels import entry_arguments

    ka = kernel_arguments(method, rtol, first_step)
    kind, etab, rtab, reals = ka.kind, ka.etab, ka.rtab, ka.reals
    f_rhs, f_jac, f_dfdp = system.functions(sensitivities=bool(sens))
    m, N = Y0.shape
    OUT, STATS, STATUS = kernel_outputs(m, t_eval.shape[0], N)
    split = kind == KIND_AUTO
    if split:  # the explicit part writes each switch point (t, y) into T0, Y0: not the caller's
        T0, Y0 = T0.copy(), Y0.copy()
    SIDX = np.ascontiguousarray(sidx if sidx is not None else np.empty(0), dtype=np.int64)

    def run_share(kernel, idx: np.ndarray) -> None:
        s, e, r = entry_arguments(kernel, bool(sens), etab, rtab)
        kernel(
            f_rhs, f_jac, f_dfdp, T0, t_eval, Y0, P, BPS, JUMPS, DTB,
            SIDX, np.int64(system.n_states), np.int64(system.n_params), s, np.int64(kind),
            system.jac is not None, system.autonomous, e, r, reals, ATOL, np.int64(max_steps),
            OUT, STATS, STATUS, idx,
        )

    threads = n_threads if n_threads is not None else numba.get_num_threads()
    threads = max(1, int(threads)) if parallel else 1
    _threaded(run_share, _kernel(sens, kind, lockstep), np.arange(m, dtype=np.int64), threads)
    if split:
        switched = np.flatnonzero(STATUS == SWITCH).astype(np.int64)
        if switched.size:
            _threaded(run_share, _kernel(sens, KIND_ROSENBROCK, lockstep), switched, threads)
    return OUT, STATS, STATUS


def _threaded(run_share, kernel, idx: np.ndarray, threads: int) -> None:
    """Solve problems ``idx`` with ``kernel`` on up to ``threads`` threads.

    The kernel releases the GIL: one call per thread, thread r solving problems idx[r],
    idx[r + T], idx[r + 2T], ... Interleaving balances batches whose cost trends along the
    rows; one call per thread because each call costs ~50 us of argument conversion under the
    GIL (16 chunks on 2 threads lost ~7% of the 2-thread speed-up to it). Every problem is
    solved by the same serial code, so results do not depend on the thread count."""
    threads = min(threads, idx.shape[0])
    if threads <= 1:
        run_share(kernel, idx)
        return
    shares = [np.ascontiguousarray(idx[r::threads]) for r in range(threads)]
    with ThreadPoolExecutor(max_workers=threads) as pool:
        futures = [pool.submit(run_share, kernel, share) for share in shares[1:]]
        run_share(kernel, shares[0])  # this thread takes a share too
        for fut in futures:
            fut.result()


def _stats_dict(row: np.ndarray) -> dict:
    return {k: int(v) for k, v in zip(STATS_FIELDS, row, strict=True)}


def solve(
    system: OdeSystem,
    t_eval,
    y0,
    p,
    breakpoints=None,
    jumps=None,
    method: str = "auto",
    rtol: float = 1e-6,
    atol=1e-9,
    max_steps: int = 100_000,
    first_step: float = 0.0,
    t0: float | None = None,
) -> SolveResult:
    """Solve one initial value problem and return the states at ``t_eval``.

    Parameters
    ----------
    system : OdeSystem
    t_eval : (nt,) sorted output times (days); the solution is interpolated (dense output),
        steps are never forced onto them.
    y0 : (n,) state at ``t0``.
    p : (n_params,) parameters, passed unchanged to the model functions.
    breakpoints : (k,) sorted times (days) or None. Integration stops exactly at each one and
        restarts with a fresh step; ``piece`` increments and ``jumps[k]`` is added to the state.
        A sample at a breakpoint time reports the state *before* the jump. ``+inf`` entries
        are ignored. A breakpoint at ``t0`` is applied before the start (after writing the
        output at ``t0``).
    jumps : (k, n) or None (no jumps).
    method : "auto" (Tsit5 with Hairer's stiffness test, switching to Rodas5P for the rest
        of the solve once stiffness is detected), "tsit5", "dopri5", "rodas5p", "rodas4".
    rtol : relative tolerance; atol : absolute tolerance, scalar or (n,) (state units).
    max_steps : maximum number of steps (accepted + rejected) for the whole solve.
    first_step : initial step (days); 0 selects it automatically (Hairer's algorithm),
        at the start and after every breakpoint.
    t0 : start time; default ``t_eval[0]``.

    Returns
    -------
    SolveResult with ``y`` (nt, n), ``status`` and ``stats``. Outputs the solver did not
    reach are NaN; invalid numbers in the inputs give status 4 (INVALID_INPUT), wrong shapes
    raise CartKineticsError.
    """
    t_eval, T0, Y0, P, BPS, JUMPS, DTB, ATOL = _prepare(
        system, t_eval, y0, p, breakpoints, jumps, None, None, t0, atol, False, True
    )
    OUT, STATS, STATUS = _run(system, t_eval, T0, Y0, P, BPS, JUMPS, DTB, ATOL, method, rtol,
                              max_steps, first_step, False, False)
    return SolveResult(t_eval, OUT[0], int(STATUS[0]), _stats_dict(STATS[0]), str(method))


def solve_batch(
    system: OdeSystem,
    t_eval,
    Y0,
    P,
    breakpoints=None,
    jumps=None,
    method: str = "auto",
    rtol: float = 1e-6,
    atol=1e-9,
    max_steps: int = 100_000,
    first_step: float = 0.0,
    t0=None,
    parallel: bool = True,
    n_threads: int | None = None,
    lockstep: bool = True,
) -> BatchResult:
    """Solve m problems (parameter sets) in one call, in parallel over numba threads.

    Parameters
    ----------
    Y0 : (m, n) or (n,) initial states; P : (m, n_params) parameters.
    breakpoints : (k,) shared or (m, k) per problem, padded with +inf; jumps : (k, n) or
        (m, k, n). t0 : scalar or (m,). Other arguments as in :func:`solve`.
    parallel : solve on a thread pool (thread r takes problems r, r + T, ...); the numba kernel
        releases the GIL.
    n_threads : number of threads; default ``numba.get_num_threads()`` (so
        ``numba.set_num_threads`` applies). Every problem is solved by the same serial code,
        so results do not depend on the thread count.
    lockstep : with an explicit method ("tsit5", "dopri5"), step two problems side by side in
        each thread (the CPU overlaps their dependency chains: about 1.3x faster on the
        benchmark, bitwise the same results). False: one problem at a time, with the kernel
        that also serves "auto" (saves compiling a second kernel, about 8 s once per
        installation). Other methods and sensitivities ignore it.

    Returns
    -------
    BatchResult (unpacks as ``y, status``): y (m, nt, n), status (m,), stats (m, 6).
    A failing problem gets its status and NaN outputs and never stops the others.
    """
    t_eval, T0, Y0, P, BPS, JUMPS, DTB, ATOL = _prepare(
        system, t_eval, Y0, P, breakpoints, jumps, None, None, t0, atol, False, False
    )
    OUT, STATS, STATUS = _run(system, t_eval, T0, Y0, P, BPS, JUMPS, DTB, ATOL, method, rtol,
                              max_steps, first_step, False, parallel, n_threads, lockstep=lockstep)
    return BatchResult(t_eval, OUT, STATUS, STATS, str(method))


def _split_sens(OUT: np.ndarray, n: int, npar: int) -> tuple[np.ndarray, np.ndarray]:
    m, nt, _ = OUT.shape
    y = OUT[:, :, :n]
    S = OUT[:, :, n:].reshape(m, nt, npar, n).transpose(0, 1, 3, 2)
    return np.ascontiguousarray(y), np.ascontiguousarray(S)


def solve_sensitivities(
    system: OdeSystem,
    t_eval,
    y0,
    p,
    dy0_dp=None,
    breakpoints=None,
    dtb_dp=None,
    jumps=None,
    method: str = "auto",
    rtol: float = 1e-6,
    atol=1e-9,
    max_steps: int = 100_000,
    first_step: float = 0.0,
    t0: float | None = None,
    wrt=None,
) -> SensitivityResult:
    """Solve with forward sensitivities S = dy/dp (S' = J S + df/dp, S(t0) = dy0_dp).

    Error control includes the sensitivities with ``atol / |p_j|`` (i.e. it controls
    ``p_j dy/dp_j``). Arguments not listed here are as in :func:`solve`.

    Parameters
    ----------
    dy0_dp : (n, n_params) or None (zeros)
        Derivative of the initial state.
    dtb_dp : (k, n_params) or None (zeros)
        Derivative of each breakpoint time with respect to the parameters (e.g. Stein's
        switch at Tmax). At such a breakpoint ``S+ = S- + (f_before - f_after) dtb/dp``.
        Jumps are taken as parameter-independent.
    wrt : None (all parameters) or a sequence of parameter indices
        Propagate only the sensitivities to these parameters (e.g. the free parameters of a
        fit): the augmented system has n (1 + len(wrt)) equations instead of
        n (1 + n_params). ``dy0_dp`` and ``dtb_dp`` may then have n_params columns (the
        selected ones are used) or len(wrt) columns.

    Returns
    -------
    SensitivityResult (unpacks as ``y, S, status``): y (nt, n), S (nt, n, n_params), or
    S (nt, n, len(wrt)) with ``S[..., j] = dy / dp[wrt[j]]``.
    """
    sidx = sens_indices(wrt, system.n_params, getattr(system, "param_names", None))
    t_eval, T0, Y0, P, BPS, JUMPS, DTB, ATOL = _prepare(
        system, t_eval, y0, p, breakpoints, jumps, dtb_dp, dy0_dp, t0, atol, True, True, sidx
    )
    OUT, STATS, STATUS = _run(system, t_eval, T0, Y0, P, BPS, JUMPS, DTB, ATOL, method, rtol,
                              max_steps, first_step, True, False, sidx=sidx)
    y, S = _split_sens(OUT, system.n_states, sidx.shape[0])
    return SensitivityResult(t_eval, y[0], S[0], int(STATUS[0]), _stats_dict(STATS[0]), str(method))


def solve_sensitivities_batch(
    system: OdeSystem,
    t_eval,
    Y0,
    P,
    dY0_dp=None,
    breakpoints=None,
    dtb_dp=None,
    jumps=None,
    method: str = "auto",
    rtol: float = 1e-6,
    atol=1e-9,
    max_steps: int = 100_000,
    first_step: float = 0.0,
    t0=None,
    parallel: bool = True,
    n_threads: int | None = None,
    wrt=None,
) -> SensitivityBatchResult:
    """Batch version of :func:`solve_sensitivities`: dY0_dp (n, np) or (m, n, np), dtb_dp
    (k, np) or (m, k, np). Returns y (m, nt, n), S (m, nt, n, np), status (m,).

    ``wrt`` (parameter indices) as in :func:`solve_sensitivities`: S (m, nt, n, len(wrt)).
    """
    sidx = sens_indices(wrt, system.n_params, getattr(system, "param_names", None))
    t_eval, T0, Y0, P, BPS, JUMPS, DTB, ATOL = _prepare(
        system, t_eval, Y0, P, breakpoints, jumps, dtb_dp, dY0_dp, t0, atol, True, False, sidx
    )
    OUT, STATS, STATUS = _run(system, t_eval, T0, Y0, P, BPS, JUMPS, DTB, ATOL, method, rtol,
                              max_steps, first_step, True, parallel, n_threads, sidx=sidx)
    y, S = _split_sens(OUT, system.n_states, sidx.shape[0])
    return SensitivityBatchResult(t_eval, y, S, STATUS, STATS, str(method))


def status_name(code: int) -> str:
    """Short name of a status code ("SUCCESS", "MAX_STEPS", ...)."""
    return STATUS_NAMES[int(code)]


def _warmup(system: OdeSystem, sensitivities: bool = False, parallel: bool = True) -> None:
    """Trigger compilation (or cache loading) of the kernels with a tiny problem: the explicit
    and the Rosenbrock entry points (both parts of an auto solve), the lock-step kernel, and
    with ``sensitivities`` their sensitivity forms."""
    n, npar = system.n_states, system.n_params
    y0 = np.ones(n)
    p = np.ones(npar)
    t = np.array([0.0, 1e-3])
    solve(system, t, y0, p, max_steps=10)
    solve(system, t, y0, p, method="rodas5p", max_steps=10)
    if parallel:
        solve_batch(system, t, np.ones((2, n)), np.ones((2, npar)), max_steps=10)
        # the lock-step kernel of plain explicit batches
        solve_batch(system, t, np.ones((2, n)), np.ones((2, npar)), method="tsit5", max_steps=10)
    if sensitivities and system.dfdp is not None:
        solve_sensitivities(system, t, y0, p, max_steps=10)
        solve_sensitivities(system, t, y0, p, method="rodas5p", max_steps=10)
        if parallel:
            solve_sensitivities_batch(system, t, np.ones((2, n)), np.ones((2, npar)), max_steps=10)
