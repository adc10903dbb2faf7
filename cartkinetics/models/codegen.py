"""Generate numba source for an :class:`~cartkinetics.models.spec.ODESpec` and cache it.

The Jacobian df/dy, the parameter derivatives df/dp, the observation derivatives and the
breakpoint derivatives are derived symbolically with sympy, common sub-expressions are
shared (``sympy.cse``) and the code is printed with a scalar Python printer (``math.*``)
into a module written to a cache directory. Because the module is a real file, numba's
``cache=True`` stores the compiled machine code next to it: the second session loads both
without sympy or compilation. The file name carries a hash of the spec text, so a changed
model gets a new module.

Generated functions (all ``@njit(cache=True)``, writing into the last argument)::

    rhs(t, y, p, piece, dydt)    jac(t, y, p, piece, J)    dfdp(t, y, p, piece, Jp)
    init(p, y0)                  init_dp(p, S0)            (n,), (n, np)
    obs(t, y, p, out)            obs_dy(t, y, p, out)      obs_dp(t, y, p, out)
    breaks(p, out)               breaks_dp(p, out)         (nb,), (nb, np)
"""

from __future__ import annotations

import hashlib
import importlib.util
import os
import sys
import tempfile
from pathlib import Path
from types import ModuleType
from typing import Any

from cartkinetics.errors import CartKineticsError
from cartkinetics.models.spec import ODESpec, to_sympy

CODEGEN_VERSION = "5"


def cache_dir() -> Path:
    """Directory of generated model modules: ``<cache>/models``.

    ``<cache>`` is ``$CARTKINETICS_CACHE_DIR`` or ``~/.cache/cartkinetics`` (the solvers'
    kernels live next to it, in ``<cache>/kernels``).
    """
    root = os.environ.get("CARTKINETICS_CACHE_DIR")
    base = Path(root) if root else Path.home() / ".cache" / "cartkinetics"
    d = base / "models"
    try:
        d.mkdir(parents=True, exist_ok=True)
        if not os.access(d, os.W_OK):
            raise PermissionError(str(d))
    except OSError:
        # read-only home (some clusters): fall back to a per-user temporary directory
        d = Path(tempfile.gettempdir()) / f"cartkinetics-{os.getuid()}" / "models"
        d.mkdir(parents=True, exist_ok=True)
    return d


def spec_hash(spec: ODESpec) -> str:
    """Stable hash of a model specification, naming its generated numba module in the cache."""
    h = hashlib.sha256((CODEGEN_VERSION + "\n" + spec.canonical()).encode())
    return h.hexdigest()[:16]


def _printer() -> Any:
    from sympy.printing.pycode import PythonCodePrinter

    class _Printer(PythonCodePrinter):
        def _print_Float(self, expr: Any) -> str:  # full double precision
            return repr(float(expr))

        def _print_Integer(self, expr: Any) -> str:
            return f"{int(expr)}.0"

        def _print_Rational(self, expr: Any) -> str:
            return f"({int(expr.p)}.0/{int(expr.q)}.0)"

        def _print_Heaviside(self, expr: Any) -> str:
            return f"(1.0 if ({self._print(expr.args[0])}) > 0 else 0.0)"

        def _print_sign(self, expr: Any) -> str:
            a = self._print(expr.args[0])
            return f"(0.0 if ({a}) == 0 else math.copysign(1.0, {a}))"

        def _print_Symbol(self, expr: Any) -> str:
            return expr.name

        def _print_BooleanTrue(self, expr: Any) -> str:
            return "True"

        def _print_BooleanFalse(self, expr: Any) -> str:
            return "False"

    return _Printer({"fully_qualified_modules": True, "standard": "python3"})


def _function(
    name: str,
    args: str,
    header: list[str],
    targets: list[tuple[str, Any]],
    zero_fill: str | None,
    printer: Any,
) -> list[str]:
    """Source lines of one njit function assigning ``targets`` (target text, sympy expr)."""
    import sympy as sp

    # error_model="numpy": 0/0 or x**-k at x=0 give inf/nan (caught as a status), never raise
    lines = ['@njit(cache=True, error_model="numpy")', f"def {name}({args}):"]
    lines += ["    " + h for h in header]
    if zero_fill:
        lines.append(f"    {zero_fill}[...] = 0.0")
    nonzero = [(tgt, e) for tgt, e in targets if not (zero_fill and e == 0)]
    if nonzero:
        repl, reduced = sp.cse([e for _, e in nonzero], symbols=sp.numbered_symbols("_c"))
        for sym, val in repl:
            lines.append(f"    {sym.name} = {printer.doprint(val)}")
        for (tgt, _), e in zip(nonzero, reduced, strict=True):
            lines.append(f"    {tgt} = {printer.doprint(e)}")
    if zero_fill:
        # derivative arrays: a non-finite entry only arises where the right-hand side is not
        # differentiable, e.g. x**n (n < 1) or x**n*log(x) at x = 0; use the finite limit 0
        lines.append(f"    for _i in range({zero_fill}.shape[0]):")
        lines.append(f"        for _j in range({zero_fill}.shape[1]):")
        lines.append(f"            if not math.isfinite({zero_fill}[_i, _j]):")
        lines.append(f"                {zero_fill}[_i, _j] = 0.0")
    lines.append("    return None")
    lines.append("")
    lines.append("")
    return lines


def generate_source(spec: ODESpec) -> str:
    """Python/numba source text of the model functions (sympy does the derivatives)."""
    import sympy as sp

    S = to_sympy(spec)
    t, piece, y, p = S["t"], S["piece"], S["y"], S["p"]
    n, npar, nobs, nb = len(y), len(p), len(S["obs"]), len(S["breakpoints"])
    # internal names avoid clashes between user names and Python/numba names
    ysub = {s: sp.Symbol(f"_y{i}", real=True) for i, s in enumerate(y)}
    psub = {s: sp.Symbol(f"_p{j}", real=True) for j, s in enumerate(p)}
    sub = {**ysub, **psub, t: sp.Symbol("t", real=True), piece: sp.Symbol("piece", integer=True)}

    def prep(e: Any) -> Any:
        e = sp.sympify(e).xreplace(sub)
        return e

    rhs = [prep(e) for e in S["rhs"]]
    Y = list(ysub.values())
    P = list(psub.values())
    jac = [[sp.diff(f, yk) for yk in Y] for f in rhs]
    dfdp = [[sp.diff(f, pj) for pj in P] for f in rhs]
    obs = [prep(e) for e in S["obs"]]
    obs_dy = [[sp.diff(h, yk) for yk in Y] for h in obs]
    obs_dp = [[sp.diff(h, pj) for pj in P] for h in obs]
    init = [prep(e) for e in S["init"]]
    init_dp = [[sp.diff(e, pj) for pj in P] for e in init]
    bps = [prep(e) for e in S["breakpoints"]]
    bps_dp = [[sp.diff(e, pj) for pj in P] for e in bps]

    pr = _printer()
    unpack_y = [f"_y{i} = y[{i}]" for i in range(n)]
    unpack_p = [f"_p{j} = p[{j}]" for j in range(npar)]
    src = [
        f'"""Generated by cartkinetics.models.codegen {CODEGEN_VERSION} for model {spec.name}.',
        "",
        "Do not edit: regenerated from the model specification when it changes.",
        '"""',
        "# ruff: noqa",
        "import math",
        "",
        "import numpy as np",
        "from numba import njit",
        "",
        f"N_STATES = {n}",
        f"N_PARAMS = {npar}",
        f"N_OBS = {nobs}",
        f"N_BREAKS = {nb}",
        f"AUTONOMOUS = {not any(sp.Symbol('t', real=True) in e.free_symbols for e in rhs)}",
        "",
        "",
    ]
    full = unpack_y + unpack_p
    src += _function(
        "rhs", "t, y, p, piece, dydt", full,
        [(f"dydt[{i}]", rhs[i]) for i in range(n)], None, pr,
    )
    src += _function(
        "jac", "t, y, p, piece, J", full,
        [(f"J[{i}, {k}]", jac[i][k]) for i in range(n) for k in range(n)], "J", pr,
    )
    src += _function(
        "dfdp", "t, y, p, piece, Jp", full,
        [(f"Jp[{i}, {j}]", dfdp[i][j]) for i in range(n) for j in range(npar)], "Jp", pr,
    )
    src += _function(
        "init", "p, y0", unpack_p, [(f"y0[{i}]", init[i]) for i in range(n)], None, pr
    )
    src += _function(
        "init_dp", "p, S0", unpack_p,
        [(f"S0[{i}, {j}]", init_dp[i][j]) for i in range(n) for j in range(npar)], "S0", pr,
    )
    src += _function(
        "obs", "t, y, p, out", full, [(f"out[{k}]", obs[k]) for k in range(nobs)], None, pr
    )
    src += _function(
        "obs_dy", "t, y, p, out", full,
        [(f"out[{k}, {i}]", obs_dy[k][i]) for k in range(nobs) for i in range(n)], "out", pr,
    )
    src += _function(
        "obs_dp", "t, y, p, out", full,
        [(f"out[{k}, {j}]", obs_dp[k][j]) for k in range(nobs) for j in range(npar)], "out", pr,
    )
    src += _function(
        "breaks", "p, out", unpack_p, [(f"out[{k}]", bps[k]) for k in range(nb)], None, pr
    )
    src += _function(
        "breaks_dp", "p, out", unpack_p,
        [(f"out[{k}, {j}]", bps_dp[k][j]) for k in range(nb) for j in range(npar)], "out", pr,
    )
    # all observations at all times of a batch, without a Python call per time point
    src += [
        '@njit(cache=True, error_model="numpy")',
        "def obs_batch(t, Y, P, out):",
        f"    tmp = np.empty({max(nobs, 1)})",
        "    for i in range(Y.shape[0]):",
        "        for k in range(t.shape[0]):",
        "            obs(t[k], Y[i, k], P[i], tmp)",
        f"            for j in range({nobs}):",
        "                out[i, j, k] = tmp[j]",
        "    return None",
        "",
    ]
    src += [
        '@njit(cache=True, error_model="numpy")',
        "def init_batch(P, Y0):",
        "    for i in range(P.shape[0]):",
        "        init(P[i], Y0[i])",
        "    return None",
        "",
        "",
        '@njit(cache=True, error_model="numpy")',
        "def breaks_batch(P, out):",
        "    for i in range(P.shape[0]):",
        "        breaks(P[i], out[i])",
        "    return None",
        "",
    ]
    # unused unpacked names are harmless for numba; the printer never emits user names
    return "\n".join(src) + "\n"


def _load(path: Path, modname: str) -> ModuleType:
    if modname in sys.modules:
        return sys.modules[modname]
    spec = importlib.util.spec_from_file_location(modname, path)
    if spec is None or spec.loader is None:  # pragma: no cover
        raise CartKineticsError(f"cannot load generated model code {path}")
    module = importlib.util.module_from_spec(spec)
    sys.modules[modname] = module
    spec.loader.exec_module(module)
    return module


def compile_spec(spec: ODESpec) -> ModuleType:
    """Generated module for ``spec``: loaded from the cache, or generated and written first."""
    h = spec_hash(spec)
    modname = f"ck_gen_{spec.name}_{h}"
    d = cache_dir()
    path = d / f"{modname}.py"
    if not path.exists():
        src = generate_source(spec)
        # atomic write: concurrent processes may generate the same module
        fd, tmp = tempfile.mkstemp(dir=d, suffix=".tmp")
        with os.fdopen(fd, "w") as fh:
            fh.write(src)
        os.replace(tmp, path)
    return _load(path, modname)
