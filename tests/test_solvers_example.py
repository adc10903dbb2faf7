"""The example at the top of cartkinetics/solvers/__init__.py runs and is right."""

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import cartkinetics.solvers as solvers

ROOT = Path(__file__).resolve().parents[1]


def test_module_docstring_example_runs(tmp_path):
    doc = solvers.__doc__
    block = doc.split("::\n", 1)[1].lstrip("\n").split("\n\n")
    lines = []
    for chunk in block:
        if chunk.startswith("    ") or not chunk.strip():
            lines.append(chunk)
        else:
            break
    code = textwrap.dedent("\n\n".join(lines))
    code += textwrap.dedent(
        """
        assert res.status == 0 and res.y.shape == (29, 1)
        exact = 1e6 * np.exp(-0.1 * days)
        exact[days > 14] += 5e5 * np.exp(-0.1 * (days[days > 14] - 14))
        assert np.allclose(res.y[:, 0], exact, rtol=1e-5)
        assert y.shape == (29, 1) and status == 0  # from the sensitivity line
        assert S.shape == (29, 1, 1)
        assert np.allclose(S[:, 0, 0], -days * 1e6 * np.exp(-0.1 * days), rtol=1e-5, atol=1e-3)
        print("ok")
        """
    )
    script = tmp_path / "example.py"
    script.write_text(code)
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT), env.get("PYTHONPATH", "")])
    out = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, env=env,
                         timeout=600)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.strip().endswith("ok")
