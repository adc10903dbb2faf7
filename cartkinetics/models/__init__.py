"""Model library and registry.

    >>> from cartkinetics import models
    >>> models.available()            # library + registered user models
    >>> m = models.get("stein2019")   # closed form; models.get("stein2019_ode") its ODE form
    >>> sol = m.solve([7, 14, 28])

User models: :func:`from_equations` (equation text, parsed without executing it, Jacobian and
d f / d p derived symbolically and compiled with numba), :func:`from_functions` (your own numba
functions), then :func:`register`.
"""

from __future__ import annotations

import importlib
import importlib.util
from typing import Any

from cartkinetics.errors import CartKineticsError
from cartkinetics.models.base import BatchSolution, Model, Parameter, Solution

# library name -> (module, builder argument); modules are imported on first use
_LIBRARY: dict[str, str] = {
    "stein2019": "stein2019",
    "stein2019_ode": "stein2019",
    "liu2022": "liu2022",
    "liu2022_cd19neg": "liu2022",
    "kirouac2023": "kirouac2023",
    "kimmel2021": "kimmel2021",
    "hardiansyah2019": "hardiansyah2019",
    "barros2021": "barros2021",
    "singh2021": "singh2021",
}
_CACHE: dict[str, Model] = {}
_USER: dict[str, Model] = {}


def _library_names() -> list[str]:
    names = []
    for name, mod in _LIBRARY.items():
        if importlib.util.find_spec(f"cartkinetics.models.{mod}") is not None:
            names.append(name)
    return names


def available() -> list[str]:
    """Names of the library models and of the models registered in this session."""
    return sorted(set(_library_names()) | set(_USER))


def get(name: str) -> Model:
    """The model called ``name`` (built once per session, then shared).

    Raises
    ------
    CartKineticsError
        If no library or registered model has that name.
    """
    if name in _USER:
        return _USER[name]
    if name in _CACHE:
        return _CACHE[name]
    if name not in _LIBRARY or name not in _library_names():
        raise CartKineticsError(f"unknown model {name!r}; available: {available()}")
    module = importlib.import_module(f"cartkinetics.models.{_LIBRARY[name]}")
    model = module.build(name)
    _CACHE[name] = model
    return model


def register(model: Model, *, overwrite: bool = False) -> Model:
    """Make a user model available through :func:`get` under ``model.name``."""
    if not isinstance(model, Model):
        raise CartKineticsError(f"register expects a Model, got {type(model).__name__}")
    if not overwrite and (model.name in _USER or model.name in _LIBRARY):
        raise CartKineticsError(
            f"a model called {model.name!r} exists already; pass overwrite=True to replace it"
        )
    _USER[model.name] = model
    return model


def unregister(name: str) -> None:
    """Remove a model registered in this session (library models cannot be removed)."""
    if name not in _USER:
        raise CartKineticsError(f"no registered user model called {name!r}")
    del _USER[name]


def from_equations(*args: Any, **kwargs: Any) -> Model:
    """Build an ODE model from equation text or sympy expressions (see ``models.spec``)."""
    from cartkinetics.models.spec import from_equations as _fe

    return _fe(*args, **kwargs)


def from_file(path: str, parameters: Any, *, name: str | None = None, **kwargs: Any) -> Model:
    """Build an ODE model from an equation text file (parsed, never executed).

    Errors name the file and the line. ``name`` defaults to the file's stem; other keyword
    arguments as in :func:`from_equations` (states, observations, initial, ...).
    """
    from pathlib import Path

    p = Path(path)
    try:
        text = p.read_text()
    except OSError as exc:
        raise CartKineticsError(f"cannot read model file: {exc}", source=str(p)) from None
    return from_equations(name or p.stem, text, parameters, source=str(p), **kwargs)


def from_functions(*args: Any, **kwargs: Any) -> Model:
    """Build an ODE model from user numba functions (see ``models.ode.ODEModel``)."""
    from cartkinetics.models.ode import from_functions as _ff

    return _ff(*args, **kwargs)


__all__ = [
    "BatchSolution",
    "CartKineticsError",
    "Model",
    "Parameter",
    "Solution",
    "available",
    "from_equations",
    "from_file",
    "from_functions",
    "get",
    "register",
    "unregister",
]
