"""OdeSystem: a model's numba functions in the form the solver kernel takes.

Design (measured, see benchmarks/bench_solvers.py): the generic kernel in ``_kernels.py``
receives the model functions as numba first-class functions with fixed signatures, so it is
compiled once per installation and cached on disk for every model; a new model only compiles
its three small functions (``OdeSystem.compile``). Passing @njit dispatchers as plain arguments
was rejected: numba specialises on the dispatcher's identity and never hits its file cache for
such specialisations (the whole solver recompiled in each process), and binding the functions
as globals of a generated per-model module cached well but cost 15-30 s of compilation per model.
A per-model explicit kernel (the model inlined into the stepping code) was measured again for
plain Tsit5 solves: 1 % faster, not worth a compile per model; the gain came instead from
stepping two problems side by side (``_lockstep.py``), which stays generic.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable
from pathlib import Path

import numba

from cartkinetics.errors import CartKineticsError
from cartkinetics.solvers import _core
from cartkinetics.solvers._core import JAC_SIG, RHS_SIG

_LOCK = threading.Lock()


def cache_dir() -> Path:
    """Where numba caches the solver kernel: ``$NUMBA_CACHE_DIR`` if set, else the
    ``__pycache__`` folder of the cartkinetics.solvers package (numba falls back to a user
    cache folder when that is not writable)."""
    env = os.environ.get("NUMBA_CACHE_DIR")
    if env:
        return Path(env)
    return Path(__file__).with_name("__pycache__")


def _is_njit(func: Callable) -> bool:
    return isinstance(func, numba.core.registry.CPUDispatcher)


class OdeSystem:
    """A model's right-hand side and derivatives, ready for the numba solvers.

    Parameters
    ----------
    rhs : numba @njit function ``rhs(t, y, p, piece, dydt)``
        Writes dy/dt (units of state per day) into ``dydt`` (n,). ``piece`` (int64) is the
        index of the interval between breakpoints (0 before the first).
    jac : numba @njit function ``jac(t, y, p, piece, J)`` or None
        Writes df/dy (n, n). None: forward differences (slower, less exact for stiff models).
    dfdp : numba @njit function ``dfdp(t, y, p, piece, Jp)`` or None
        Writes df/dp (n, n_params); needed by the sensitivity solvers only.
    n_states, n_params : int
    name : str
        Used in file names and messages.
    autonomous : bool
        True if f does not depend on t within a piece; the Rosenbrock method then skips the
        df/dt difference (one f evaluation per step). Default False (always correct).

    Notes
    -----
    Declare model functions with ``@njit(cache=True)``; they are compiled for the signature
    ``(float64, float64[:], float64[:], int64, float64[:] or float64[:, :])`` (any layout).
    """

    def __init__(
        self,
        rhs: Callable,
        jac: Callable | None,
        dfdp: Callable | None,
        n_states: int,
        n_params: int,
        name: str = "ode",
        autonomous: bool = False,
    ) -> None:
        for label, func in (("rhs", rhs), ("jac", jac), ("dfdp", dfdp)):
            if func is None and label != "rhs":
                continue
            if not _is_njit(func):
                raise CartKineticsError(
                    f"OdeSystem '{name}': {label} must be a numba @njit function "
                    f"(got {type(func).__name__})"
                )
        if int(n_states) < 1 or int(n_params) < 0:
            raise CartKineticsError(
                f"OdeSystem '{name}': n_states must be >= 1 and n_params >= 0 "
                f"(got {n_states}, {n_params})"
            )
        self.rhs = rhs
        self.jac = jac
        self.dfdp = dfdp
        self.n_states = int(n_states)
        self.n_params = int(n_params)
        self.name = str(name)
        self.autonomous = bool(autonomous)
        self._compiled: tuple | None = None

    def __repr__(self) -> str:
        return (
            f"OdeSystem(name={self.name!r}, n_states={self.n_states}, n_params={self.n_params}, "
            f"jac={'yes' if self.jac is not None else 'differences'}, "
            f"dfdp={'yes' if self.dfdp is not None else 'no'})"
        )

    def __getstate__(self) -> dict:
        state = self.__dict__.copy()
        state["_compiled"] = None  # recompiled (from numba's cache) in the receiving process
        return state

    def functions(self, sensitivities: bool = True) -> tuple:
        """(rhs, jac, dfdp) compiled for the kernel's signatures (placeholders if missing).

        ``sensitivities=False``: dfdp is the placeholder, never called by plain solves, so a
        model's first plain solve does not compile its dfdp (0.16 s for the benchmark's CART4).
        """
        with _LOCK:
            if self._compiled is None:
                jac = self.jac if self.jac is not None else _core.missing_jac
                self._compile((self.rhs, RHS_SIG), (jac, JAC_SIG))
                self._compiled = (self.rhs, jac, _core.missing_dfdp)
            if sensitivities and self._compiled[2] is _core.missing_dfdp and self.dfdp is not None:
                self._compile((self.dfdp, JAC_SIG))
                self._compiled = (*self._compiled[:2], self.dfdp)
        return self._compiled

    def _compile(self, *funcs: tuple) -> None:
        """Compile each (njit function, signature) pair; a typing error names the model."""
        try:
            for func, sig in funcs:
                func.compile(sig)
        except Exception as exc:  # typing errors in the model code
            raise CartKineticsError(
                f"OdeSystem '{self.name}': the model functions do not compile with the "
                f"solver signatures rhs(t, y, p, piece, dydt), jac/dfdp(t, y, p, piece, "
                f"M) (float64 arrays, int64 piece): {exc}"
            ) from exc

    def compile(self, sensitivities: bool = False, parallel: bool = True) -> float:
        """Compile (or load from the cache) the kernels with a tiny problem; returns seconds."""
        from cartkinetics.solvers import api

        start = time.perf_counter()
        api._warmup(self, sensitivities=sensitivities, parallel=parallel)
        return time.perf_counter() - start
