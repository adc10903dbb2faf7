"""Numba ODE solvers: Tsit5 / Dormand-Prince 5(4), Rodas5P / Rodas4, automatic stiffness
switching, breakpoints with jumps, batches over threads and forward sensitivities.

A model gives three ``@njit(cache=True)`` functions that write into their last argument
(``piece`` is the index of the interval between breakpoints, 0 before the first)::

    import numpy as np
    from numba import njit
    from cartkinetics.solvers import OdeSystem, solve, solve_batch, solve_sensitivities

    @njit(cache=True)
    def rhs(t, y, p, piece, dydt):          # one-compartment decay, rate p[0] per day
        dydt[0] = -p[0] * y[0]

    @njit(cache=True)
    def jac(t, y, p, piece, J):
        J[0, 0] = -p[0]

    @njit(cache=True)
    def dfdp(t, y, p, piece, Jp):
        Jp[0, 0] = -y[0]

    decay = OdeSystem(rhs, jac, dfdp, n_states=1, n_params=1, name="decay", autonomous=True)
    days = np.linspace(0.0, 28.0, 29)
    res = solve(decay, days, y0=[1e6], p=[0.1], breakpoints=[14.0], jumps=[[5e5]])
    res.y, res.status, res.stats               # (29, 1), 0, counters
    y, status = solve_batch(decay, days, np.full((100, 1), 1e6), np.random.rand(100, 1))
    y, S, status = solve_sensitivities(decay, days, [1e6], [0.1])   # S (29, 1, 1)

Status codes (one per problem, never an exception for a failing solve): 0 SUCCESS,
1 MAX_STEPS, 2 STEP_TOO_SMALL, 3 NON_FINITE, 4 INVALID_INPUT; ``STATUS_MESSAGES[code]`` is a
sentence. Outputs a failed solve did not reach are NaN. Wrong shapes or a non-OdeSystem raise
:class:`cartkinetics.errors.CartKineticsError`.

Methods: ``"auto"`` (default) starts with Tsit5 and switches to Rodas5P for the rest of the
solve when Hairer's stiffness test (h |lambda| from the two last stages above the stability
boundary on 15 accepted steps) fires; ``"tsit5"``, ``"dopri5"``, ``"rodas5p"``, ``"rodas4"``.
Each method is its tableau (``cartkinetics.solvers.tableaus``) read by generic numba code.

Batches run on a thread pool, one kernel call per thread solving every T-th problem (the
kernel releases the GIL); the thread count is ``numba.get_num_threads()`` unless
``n_threads`` is given, and results are bitwise identical whatever the count. Plain solves
with ``"tsit5"`` / ``"dopri5"`` step two problems side by side in each thread (the CPU
overlaps their dependency chains: about 1.3x faster, bitwise the same results;
``solve_batch(..., lockstep=False)`` solves one at a time).

Compilation: the generic kernels receive the model functions as numba first-class functions,
so they are compiled once and cached on disk for every model. Each holds one method family, so
a first solve compiles only what it needs (CPU time with an empty cache, see
docs/benchmarks.md: a first auto solve of a non-stiff model about 5.5 s, a first rodas5p
solve about 6 s, a first plain tsit5/dopri5 solve, the lock-step kernel, about 8 s, a first auto
solve that switches, both methods, 9-9.6 s; sensitivity forms the first time sensitivities
are asked for); a new model then compiles only its own three functions (about 0.3 s), and later
processes load everything from numba's cache in well under a second. ``system.compile()``
does it up front.
"""

import importlib
from typing import Any

from cartkinetics.solvers.status import (
    INVALID_INPUT,
    MAX_STEPS,
    NON_FINITE,
    STATS_FIELDS,
    STATUS_MESSAGES,
    STATUS_NAMES,
    STEP_TOO_SMALL,
    SUCCESS,
)

# public name -> module that defines it, imported on first use: the status codes above do
# not need numba, so models and results read them without loading the solvers
_LAZY = {
    "METHODS": "cartkinetics.solvers.api",
    "BatchResult": "cartkinetics.solvers.api",
    "SensitivityBatchResult": "cartkinetics.solvers.api",
    "SensitivityResult": "cartkinetics.solvers.api",
    "SolveResult": "cartkinetics.solvers.api",
    "solve": "cartkinetics.solvers.api",
    "solve_batch": "cartkinetics.solvers.api",
    "solve_sensitivities": "cartkinetics.solvers.api",
    "solve_sensitivities_batch": "cartkinetics.solvers.api",
    "status_name": "cartkinetics.solvers.api",
    "OdeSystem": "cartkinetics.solvers.system",
    "cache_dir": "cartkinetics.solvers.system",
}
_SUBMODULES = {"api", "system", "status", "tableaus", "_core", "_kernels", "_lockstep"}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        value = getattr(importlib.import_module(_LAZY[name]), name)
        globals()[name] = value
        return value
    if name in _SUBMODULES:
        return importlib.import_module(f"cartkinetics.solvers.{name}")
    raise AttributeError(f"module 'cartkinetics.solvers' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_LAZY) | _SUBMODULES)


__all__ = [
    "METHODS",
    "STATS_FIELDS",
    "OdeSystem",
    "SolveResult",
    "BatchResult",
    "SensitivityResult",
    "SensitivityBatchResult",
    "solve",
    "solve_batch",
    "solve_sensitivities",
    "solve_sensitivities_batch",
    "status_name",
    "cache_dir",
    "STATUS_MESSAGES",
    "STATUS_NAMES",
    "SUCCESS",
    "MAX_STEPS",
    "STEP_TOO_SMALL",
    "NON_FINITE",
    "INVALID_INPUT",
]
