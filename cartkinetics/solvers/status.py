"""The solver contract: status codes, their messages, statistics slots and method kinds.

Every solve returns one status code per parameter set; the numba kernels, the Python API, the
models, the closed-form Stein kernels and the PyTensor Op all read the codes from here (module
level ints: numba folds them into the compiled code as constants, so naming them costs
nothing). This module imports nothing heavy (no numba) so that models and results can use it.
"""

from __future__ import annotations

# ----------------------------------------------------------------- status codes (public)
SUCCESS = 0
MAX_STEPS = 1
STEP_TOO_SMALL = 2
NON_FINITE = 3
INVALID_INPUT = 4

# internal codes of the kernels (never returned by the API)
#: the explicit part of an auto solve detected stiffness: the Rosenbrock entry point resumes
SWITCH = -1
#: ``step_head``: no failure, take the step
TAKE_STEP = -1

STATUS_NAMES: dict[int, str] = {
    SUCCESS: "SUCCESS",
    MAX_STEPS: "MAX_STEPS",
    STEP_TOO_SMALL: "STEP_TOO_SMALL",
    NON_FINITE: "NON_FINITE",
    INVALID_INPUT: "INVALID_INPUT",
}

STATUS_MESSAGES: dict[int, str] = {
    SUCCESS: "The integration reached the last requested time.",
    MAX_STEPS: (
        "The solver stopped after max_steps steps before the last requested time; the problem "
        "may be stiff (use method='rodas5p' or 'auto') or max_steps too small. Outputs not "
        "reached are NaN."
    ),
    STEP_TOO_SMALL: (
        "The step size fell below the floating-point resolution of t (a singularity or a "
        "solution escaping to infinity?). Outputs not reached are NaN."
    ),
    NON_FINITE: (
        "The right-hand side or the state became NaN or infinite (overflow, log/sqrt of a "
        "negative number, division by zero?). Outputs not reached are NaN."
    ),
    INVALID_INPUT: (
        "Invalid input for this parameter set: non-finite y0, parameters, times or tolerances, "
        "unsorted times or breakpoints, or times before t0. All outputs are NaN."
    ),
}


def status_message(code: int) -> str:
    """The sentence for a status code (``f"status {code}"`` for an unknown code)."""
    return STATUS_MESSAGES.get(int(code), f"status {code}")


# ----------------------------------------------------------------- statistics slots
#: columns of the per-problem counters (``STATS[m, slot]``, ``SolveResult.stats``)
STAT_STEPS = 0  # accepted steps
STAT_REJECTED = 1  # rejected steps
STAT_F_EVALUATIONS = 2  # right-hand side evaluations
STAT_JACOBIANS = 3  # Jacobian evaluations
STAT_LU = 4  # LU factorisations
STAT_SWITCHED = 5  # 1 if an auto solve switched to the stiff method
N_STATS = 6
STATS_FIELDS: tuple[str, ...] = (
    "steps",
    "rejected",
    "f_evaluations",
    "jacobians",
    "lu_decompositions",
    "switched_to_stiff",
)

# ----------------------------------------------------------------- method kinds
#: the ``kind`` argument of the kernels' entry points
KIND_EXPLICIT = 0
KIND_ROSENBROCK = 1
KIND_AUTO = 2  # explicit, switching to Rosenbrock when Hairer's stiffness test fires
