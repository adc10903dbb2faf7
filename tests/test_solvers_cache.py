"""The solver kernels are compiled once and loaded from numba's file cache in a new process."""

import os
import subprocess
import sys
from pathlib import Path

import numpy as np

from cartkinetics.solvers import solve, solve_sensitivities
from cartkinetics.testing.solver_problems import LOGISTIC

ROOT = Path(__file__).resolve().parents[1]

SCRIPT = """
import numpy as np
from cartkinetics.solvers import solve, solve_sensitivities, _kernels
from cartkinetics.testing.solver_problems import LOGISTIC
r = solve(LOGISTIC, [0.0, 1.0], [1.0], [1.0, 10.0])
rs = solve_sensitivities(LOGISTIC, [0.0, 1.0], [1.0], [1.0, 10.0])
out = [r.status, rs.status]
for kernel in (_kernels.solve_erk, _kernels.solve_serial):  # auto without a switch, sens
    out += [sum(kernel.stats.cache_hits.values()), sum(kernel.stats.cache_misses.values())]
print(*out)
"""


def test_kernel_loaded_from_cache_in_fresh_process():
    # make sure the caches of both entry points (plain, sensitivities) are populated
    solve(LOGISTIC, [0.0, 1.0], [1.0], [1.0, 10.0])
    solve_sensitivities(LOGISTIC, [0.0, 1.0], [1.0], [1.0, 10.0])
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT), str(ROOT / "tests"), env.get("PYTHONPATH", "")])
    out = subprocess.run([sys.executable, "-c", SCRIPT], capture_output=True, text=True, env=env,
                         cwd=ROOT, timeout=600)
    assert out.returncode == 0, out.stderr
    status, status_sens, hits, misses, hits_sens, misses_sens = (
        int(v) for v in out.stdout.split()
    )
    assert status == 0 and status_sens == 0
    assert hits == 1 and misses == 0
    assert hits_sens == 1 and misses_sens == 0


def test_pickled_system_solves_again():
    import pickle

    again = pickle.loads(pickle.dumps(LOGISTIC))
    r1 = solve(again, np.linspace(0, 5, 6), [1.0], [1.0, 10.0])
    r2 = solve(LOGISTIC, np.linspace(0, 5, 6), [1.0], [1.0, 10.0])
    np.testing.assert_array_equal(r1.y, r2.y)
