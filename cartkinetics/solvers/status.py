"""Status codes returned by every solve (one per parameter set)."""

from __future__ import annotations

SUCCESS = 0
MAX_STEPS = 1
STEP_TOO_SMALL = 2
NON_FINITE = 3
INVALID_INPUT = 4

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
