"""ODE model specification from equation text, parsed without executing it.

Equation text, one statement per line (``#`` starts a comment; a line starting with an
operator ``+ - * /`` continues the previous statement)::

    rho = log(foldx)/tmax                  # a definition, substituted where it is used
    dE/dt = where(piece < 1, rho*E, -alpha*E)
    dM/dt = where(piece < 1, 0, fb*(alpha - beta)*E - beta*M)

Each right-hand side is parsed with Python's ``ast`` module (parsing only, nothing is
evaluated) and translated node by node into a sympy expression. Allowed: numbers, the
declared names (states, parameters, definitions, ``t``, ``piece``), ``+ - * / ** ^``,
comparisons and ``and``/``or``/``not`` inside conditions, and the functions ``exp, log, sqrt,
Min/min, Max/max, Abs/abs, where(cond, a, b), Piecewise((a, cond), (b, True))``. Anything
else (calls to other functions, attribute access, subscripts, strings, lambdas, imports)
raises a :class:`~cartkinetics.errors.CartKineticsError` that names the line.

``piece`` is the index of the current interval between the model's breakpoints (0 before the
first one), ``t`` the time in days.
"""

from __future__ import annotations

import ast
import re
from dataclasses import dataclass, field
from typing import Any

from cartkinetics.errors import CartKineticsError
from cartkinetics.models.base import Parameter

RESERVED = {"t", "piece"}
FUNCTIONS = {
    "exp", "log", "sqrt", "Min", "Max", "Abs", "min", "max", "abs", "where", "Piecewise",
}
_DERIV = re.compile(r"^\s*d\s*([A-Za-z][A-Za-z0-9_]*)\s*/\s*dt\s*=(.*)$")
_DEF = re.compile(r"^\s*([A-Za-z][A-Za-z0-9_]*)\s*=(.*)$")
_NAME = re.compile(r"^[A-Za-z][A-Za-z0-9_]*$")


@dataclass
class ODESpec:
    """Everything that defines an ODE model, as text (hashable for the code cache).

    Attributes
    ----------
    name : str
    states : dict state name -> unit
    parameters : list of Parameter
    equations : dict state -> right-hand side text (definitions already in ``definitions``)
    definitions : list of (name, text) substituted in order
    observations : dict name -> (expression text, unit)
    initial : dict state -> expression text in the parameters (missing states start at 0)
    breakpoints : list of expression texts in the parameters (days), in increasing order
    dose_state : state receiving doses (jumps), or None
    dose_scale : state units per dose unit (e.g. 1e-9 when states are in 1e9 cells)
    dose_schedule : list of (day offset, fraction) splitting one dose (default all at once)
    dose_parameter : parameter set by a dose at day 0 (initial condition as a parameter)
    """

    name: str
    states: dict[str, str]
    parameters: list[Parameter]
    equations: dict[str, str]
    definitions: list[tuple[str, str]] = field(default_factory=list)
    observations: dict[str, tuple[str, str]] = field(default_factory=dict)
    initial: dict[str, str] = field(default_factory=dict)
    breakpoints: list[str] = field(default_factory=list)
    dose_state: str | None = None
    dose_scale: float = 1.0
    dose_schedule: list[tuple[float, float]] = field(default_factory=lambda: [(0.0, 1.0)])
    dose_parameter: str | None = None
    source: str = "<equations>"
    line_numbers: dict[str, int] = field(default_factory=dict)

    @property
    def param_names(self) -> list[str]:
        return [p.name for p in self.parameters]

    def canonical(self) -> str:
        """Text that identifies the generated code (hash key of the code cache)."""
        parts = [
            "states:" + ",".join(self.states),
            "params:" + ",".join(self.param_names),
            "defs:" + ";".join(f"{n}={e}" for n, e in self.definitions),
            "eqs:" + ";".join(f"{s}={self.equations[s]}" for s in self.states),
            "obs:" + ";".join(f"{n}={e}" for n, (e, _) in self.observations.items()),
            "init:" + ";".join(f"{s}={self.initial.get(s, '0')}" for s in self.states),
            "bp:" + ";".join(self.breakpoints),
        ]
        return "\n".join(parts)


# ------------------------------------------------------------------ parsing
class _Translator:
    """AST -> sympy, whitelisted node by node (nothing is evaluated)."""

    def __init__(self, symbols: dict[str, Any], where: str) -> None:
        import sympy

        self.sp = sympy
        self.symbols = symbols
        self.where = where

    def fail(self, msg: str) -> None:
        raise CartKineticsError(f"{self.where}: {msg}")

    def expr(self, node: ast.AST, condition_ok: bool = False) -> Any:
        sp = self.sp
        if isinstance(node, ast.Expression):
            return self.expr(node.body, condition_ok)
        if isinstance(node, ast.Constant):
            v = node.value
            if isinstance(v, bool):
                if condition_ok:
                    return sp.true if v else sp.false
                self.fail("True/False are allowed only as a condition")
            if isinstance(v, int):
                return sp.Integer(v)
            if isinstance(v, float):
                return sp.Float(v)
            self.fail(f"constant {v!r} is not a number")
        if isinstance(node, ast.Name):
            if node.id in self.symbols:
                return self.symbols[node.id]
            if node.id in FUNCTIONS:
                self.fail(f"function {node.id!r} used without arguments")
            self.fail(f"unknown name {node.id!r} (declare it as a state, parameter or definition)")
        if isinstance(node, ast.BinOp):
            a, b = self.expr(node.left), self.expr(node.right)
            op = type(node.op)
            if op is ast.Add:
                return a + b
            if op is ast.Sub:
                return a - b
            if op is ast.Mult:
                return a * b
            if op is ast.Div:
                return a / b
            if op is ast.Pow:
                return a**b
            self.fail(f"operator {op.__name__} is not allowed")
        if isinstance(node, ast.UnaryOp):
            if isinstance(node.op, ast.USub):
                return -self.expr(node.operand)
            if isinstance(node.op, ast.UAdd):
                return self.expr(node.operand)
            if isinstance(node.op, ast.Not) and condition_ok:
                return sp.Not(self.expr(node.operand, True))
            self.fail(f"operator {type(node.op).__name__} is not allowed here")
        if isinstance(node, ast.Compare):
            if not condition_ok:
                self.fail("comparisons are allowed only as conditions of where()/Piecewise()")
            ops = {ast.Lt: sp.Lt, ast.LtE: sp.Le, ast.Gt: sp.Gt, ast.GtE: sp.Ge}
            left = self.expr(node.left)
            out = []
            for op, comp in zip(node.ops, node.comparators, strict=True):
                if type(op) not in ops:
                    self.fail(f"comparison {type(op).__name__} is not allowed (use < <= > >=)")
                right = self.expr(comp)
                out.append(ops[type(op)](left, right))
                left = right
            return sp.And(*out) if len(out) > 1 else out[0]
        if isinstance(node, ast.BoolOp) and condition_ok:
            vals = [self.expr(v, True) for v in node.values]
            return sp.And(*vals) if isinstance(node.op, ast.And) else sp.Or(*vals)
        if isinstance(node, ast.Call):
            return self.call(node)
        if isinstance(node, ast.Attribute):
            self.fail("attribute access ('.') is not allowed")
        if isinstance(node, ast.Subscript):
            self.fail("subscripts ('[...]') are not allowed")
        self.fail(f"{type(node).__name__} is not allowed in an equation")

    def call(self, node: ast.Call) -> Any:
        sp = self.sp
        if not isinstance(node.func, ast.Name):
            self.fail(
                "only the functions exp, log, sqrt, Min, Max, Abs, where, Piecewise may be called"
            )
        fname = node.func.id
        if fname not in FUNCTIONS:
            self.fail(f"function {fname!r} is not allowed (allowed: {sorted(FUNCTIONS)})")
        if node.keywords:
            self.fail(f"{fname}() takes no keyword arguments")
        args = node.args
        if fname == "where":
            if len(args) != 3:
                self.fail("where(condition, value_if_true, value_if_false) takes 3 arguments")
            cond = self.expr(args[0], True)
            return sp.Piecewise((self.expr(args[1]), cond), (self.expr(args[2]), True))
        if fname == "Piecewise":
            pieces = []
            for a in args:
                if not (isinstance(a, ast.Tuple) and len(a.elts) == 2):
                    self.fail("Piecewise takes (value, condition) pairs")
                pieces.append((self.expr(a.elts[0]), self.expr(a.elts[1], True)))
            if not pieces:
                self.fail("Piecewise needs at least one (value, condition) pair")
            return sp.Piecewise(*pieces)
        vals = [self.expr(a) for a in args]
        if fname in ("exp", "log", "sqrt", "Abs", "abs"):
            if len(vals) != 1:
                self.fail(f"{fname}() takes one argument")
            f = {"exp": sp.exp, "log": sp.log, "sqrt": sp.sqrt, "Abs": sp.Abs, "abs": sp.Abs}
            return f[fname](vals[0])
        if len(vals) < 2:
            self.fail(f"{fname}() takes at least two arguments")
        return sp.Min(*vals) if fname.lower() == "min" else sp.Max(*vals)


def parse_expression(text: str, symbols: dict[str, Any], where: str) -> Any:
    """Translate one expression text to sympy using only the whitelisted constructs."""
    if not isinstance(text, str):
        raise CartKineticsError(f"{where}: expected expression text, got {type(text).__name__}")
    if "__" in text:
        raise CartKineticsError(f"{where}: names with '__' are not allowed")
    # '^' means power in equation text; Python's '^' (xor) binds looser than '+', so swap it
    # for '**' before parsing to keep the usual precedence (a + b^2 = a + b**2)
    try:
        tree = ast.parse(text.strip().replace("^", "**"), mode="eval")
    except SyntaxError as exc:
        raise CartKineticsError(f"{where}: cannot parse {text.strip()!r} ({exc.msg})") from None
    return _Translator(symbols, where).expr(tree)


def parse_equations(
    text: str, source: str = "<equations>"
) -> tuple[dict[str, str], list[tuple[str, str]], dict[str, int]]:
    """Split equation text into derivative lines and definitions (texts, line numbers)."""
    equations: dict[str, str] = {}
    definitions: list[tuple[str, str]] = []
    lines: dict[str, int] = {}
    last: tuple[str, str] | None = None  # ("eq", state) or ("def", name) of the last statement
    for i, raw in enumerate(text.splitlines(), start=1):
        line = raw.split("#", 1)[0].strip()
        if not line:
            continue
        if line[0] in "+-*/" and last is not None:
            # continuation: a line starting with an operator extends the previous statement
            if last[0] == "eq":
                equations[last[1]] += " " + line
            else:
                definitions[-1] = (definitions[-1][0], definitions[-1][1] + " " + line)
            continue
        m = _DERIV.match(line)
        where = f"{source}, line {i}"
        if m:
            state, rhs = m.group(1), m.group(2).strip()
            if state in equations:
                raise CartKineticsError(f"{where}: second equation for d{state}/dt")
            if state in RESERVED or state in FUNCTIONS:
                raise CartKineticsError(f"{where}: {state!r} is a reserved name")
            equations[state] = rhs
            lines[f"d{state}/dt"] = i
            last = ("eq", state)
            continue
        m = _DEF.match(line)
        if m:
            name, rhs = m.group(1), m.group(2).strip()
            if name in RESERVED or name in FUNCTIONS:
                raise CartKineticsError(f"{where}: {name!r} is a reserved name")
            definitions.append((name, rhs))
            lines[name] = i
            last = ("def", name)
            continue
        raise CartKineticsError(f"{where}: expected 'dX/dt = expression' or 'name = expression'")
    if not equations:
        raise CartKineticsError(f"{source}: no 'dX/dt = ...' line found")
    return equations, definitions, lines


def as_parameters(parameters: Any) -> list[Parameter]:
    """Parameter objects from a list of Parameters or a dict name -> typical value."""
    if isinstance(parameters, dict):
        out = []
        for k, v in parameters.items():
            if isinstance(v, Parameter):
                out.append(v)
            else:
                out.append(Parameter(k, "", float(v), 0.0, float("inf"), True, "user"))
        return out
    out = list(parameters)
    for p in out:
        if not isinstance(p, Parameter):
            raise CartKineticsError("parameters must be Parameter objects or a dict name -> value")
    return out


def _expr_text(e: Any) -> str:
    """Text of an equation given as a string or as a sympy expression."""
    if isinstance(e, str):
        return e
    try:
        import sympy

        if isinstance(e, sympy.Basic):
            return sympy.sstr(e)
    except ImportError:  # pragma: no cover
        pass
    if isinstance(e, int | float):
        return repr(float(e))
    raise CartKineticsError(f"expected equation text or a sympy expression, got {type(e).__name__}")


def build_spec(
    name: str,
    equations: str | dict[str, Any],
    parameters: Any,
    *,
    states: dict[str, str] | list[str] | None = None,
    observations: dict[str, Any] | None = None,
    initial: dict[str, Any] | None = None,
    breakpoints: list[Any] | None = None,
    dose_state: str | None = None,
    dose_scale: float = 1.0,
    dose_schedule: list[tuple[float, float]] | None = None,
    dose_parameter: str | None = None,
    source: str = "<equations>",
) -> ODESpec:
    """Check names and structure and return an :class:`ODESpec` (no code generated yet)."""
    if not _NAME.match(name or ""):
        raise CartKineticsError(f"model name {name!r} must be an identifier")
    params = as_parameters(parameters)
    if isinstance(equations, str):
        eqs, defs, lines = parse_equations(equations, source)
    else:
        eqs = {k: _expr_text(v) for k, v in equations.items()}
        defs, lines = [], {}
    if states is None:
        state_units = {s: "" for s in eqs}
    elif isinstance(states, dict):
        state_units = dict(states)
    else:
        state_units = {s: "" for s in states}
    missing = [s for s in state_units if s not in eqs]
    extra = [s for s in eqs if s not in state_units]
    if missing or extra:
        raise CartKineticsError(
            f"{source}: states {list(state_units)} and equations {list(eqs)} differ "
            f"(no equation for {missing}, undeclared {extra})"
        )
    eqs = {s: eqs[s] for s in state_units}  # declaration order
    names = list(state_units) + [p.name for p in params] + [d for d, _ in defs]
    for n in names:
        if not _NAME.match(n) or n in RESERVED or n in FUNCTIONS:
            raise CartKineticsError(f"{source}: {n!r} cannot be used as a name")
    dup = {n for n in names if names.count(n) > 1}
    if dup:
        raise CartKineticsError(f"{source}: names used twice: {sorted(dup)}")
    if observations is None:
        observations = {"total": " + ".join(state_units)}
    obs: dict[str, tuple[str, str]] = {}
    for k, v in observations.items():
        if isinstance(v, tuple):
            obs[k] = (_expr_text(v[0]), str(v[1]))
        else:
            obs[k] = (_expr_text(v), "")
    init = {k: _expr_text(v) for k, v in (initial or {}).items()}
    unknown_init = set(init) - set(state_units)
    if unknown_init:
        raise CartKineticsError(
            f"{source}: initial values for unknown states {sorted(unknown_init)}"
        )
    if dose_state is not None and dose_state not in state_units:
        raise CartKineticsError(f"{source}: dose_state {dose_state!r} is not a state")
    if dose_parameter is not None and dose_parameter not in [p.name for p in params]:
        raise CartKineticsError(f"{source}: dose_parameter {dose_parameter!r} is not a parameter")
    spec = ODESpec(
        name=name,
        states=state_units,
        parameters=params,
        equations=eqs,
        definitions=defs,
        observations=obs,
        initial=init,
        breakpoints=[_expr_text(b) for b in (breakpoints or [])],
        dose_state=dose_state,
        dose_scale=float(dose_scale),
        dose_schedule=list(dose_schedule or [(0.0, 1.0)]),
        dose_parameter=dose_parameter,
        source=source,
        line_numbers=lines,
    )
    # parse everything now so that errors surface at definition time with their line
    to_sympy(spec)
    return spec


def to_sympy(spec: ODESpec) -> dict[str, Any]:
    """Sympy form of a spec: symbols and expressions with definitions substituted."""
    import sympy as sp

    t, piece = sp.Symbol("t", real=True), sp.Symbol("piece", integer=True)
    ys = {s: sp.Symbol(s, real=True) for s in spec.states}
    ps = {p.name: sp.Symbol(p.name, real=True) for p in spec.parameters}
    base = {"t": t, "piece": piece, **ys, **ps}
    symbols = dict(base)
    defs: dict[str, Any] = {}
    for name, text in spec.definitions:
        where = f"{spec.source}, line {spec.line_numbers.get(name, '?')} ({name})"
        value = parse_expression(text, symbols, where)
        defs[name] = value
        symbols[name] = value  # definitions are substituted by value
    rhs = []
    for s in spec.states:
        where = f"{spec.source}, line {spec.line_numbers.get(f'd{s}/dt', '?')} (d{s}/dt)"
        rhs.append(parse_expression(spec.equations[s], symbols, where))
    obs = [
        parse_expression(text, symbols, f"{spec.source}, observation {k!r}")
        for k, (text, _) in spec.observations.items()
    ]
    pars_only = {**ps, **{k: v for k, v in defs.items() if not (v.free_symbols - set(ps.values()))}}
    init = [
        parse_expression(spec.initial.get(s, "0"), pars_only, f"{spec.source}, initial {s!r}")
        for s in spec.states
    ]
    bps = [
        parse_expression(b, pars_only, f"{spec.source}, breakpoint {i + 1}")
        for i, b in enumerate(spec.breakpoints)
    ]
    return {
        "t": t,
        "piece": piece,
        "y": [ys[s] for s in spec.states],
        "p": [ps[n] for n in spec.param_names],
        "rhs": rhs,
        "obs": obs,
        "init": init,
        "breakpoints": bps,
    }


_SPEC_KEYS = {
    "states", "observations", "initial", "breakpoints", "dose_state", "dose_scale",
    "dose_schedule", "dose_parameter", "source",
}


def from_equations(
    name: str, equations: str | dict[str, Any], parameters: Any, **kwargs: Any
) -> Any:
    """An ODE model from equation text (or a dict state -> sympy expression).

    Parameters
    ----------
    name : identifier of the model
    equations : text with ``dX/dt = ...`` lines and ``name = ...`` definitions, or a dict
        state -> expression (text or sympy)
    parameters : dict name -> typical value, or a list of :class:`Parameter`
    states : dict state -> unit (default: the states in equation order, no unit)
    observations : dict name -> expression text or (expression, unit); default sum of states
    initial : dict state -> expression in the parameters (default 0)
    breakpoints : expressions in the parameters (days) where the right-hand side switches;
        ``piece`` in the equations counts the breakpoints passed
    dose_state, dose_scale, dose_schedule, dose_parameter : how a dose enters (see ODESpec)
    description, reference, population, parameter_sets, default_dose, dose_unit, ... :
        metadata passed to :class:`~cartkinetics.models.ode.ODEModel`

    Returns
    -------
    ODEModel with numba rhs / jac / dfdp generated from the symbolic derivatives.
    """
    from cartkinetics.models.ode import model_from_spec

    spec_kw = {k: v for k, v in kwargs.items() if k in _SPEC_KEYS}
    meta = {k: v for k, v in kwargs.items() if k not in _SPEC_KEYS}
    spec = build_spec(name, equations, parameters, **spec_kw)
    return model_from_spec(spec, **meta)
