"""User models from equation text or numba functions: safe parsing, derivatives, registry."""

from __future__ import annotations

import json

import numpy as np
import pytest

from cartkinetics import models
from cartkinetics.errors import CartKineticsError
from cartkinetics.models import Parameter
from cartkinetics.models.spec import build_spec

EFFECTOR_MEMORY = """
# effector E expands on antigen A, converts to memory M; antigen is killed by E
growth = rho*A/(A + K)
dE/dt = growth*E - (delta + k)*E
dM/dt = k*E - mu*M
dA/dt = r*A - gamma*E*A/(E + 1e4)
"""
PARAMS = {"rho": 1.2, "K": 1e6, "delta": 0.1, "k": 0.05, "mu": 0.01, "r": 0.05,
          "gamma": 0.8}


@pytest.fixture(scope="module")
def user_model():
    return models.from_equations(
        "test_em", EFFECTOR_MEMORY, PARAMS,
        states={"E": "cells", "M": "cells", "A": "cells"},
        observations={"car_t": ("E + M", "cells"), "log_tumour": "log(A)"},
        initial={"A": "1e7"},
        dose_state="E", default_dose=1e5,
    )


@pytest.mark.parametrize("text,message", [
    ("dX/dt = __import__('os').system('true')", "line 1"),
    ("dX/dt = a*X\ndY/dt = X.real", "line 2"),
    ("dX/dt = a*X\n\ndY/dt = open('f')", "line 3"),
    ("dX/dt = a*X + unknown_name", "unknown name 'unknown_name'"),
    ("dX/dt = a*X[0]", "subscripts"),
    ("dX/dt = (lambda z: z)(X)", "line 1"),
    ("dX/dt = 'text'", "not a number"),
    ("dX/dt = a*X if X > 1 else 0", "line 1"),
    ("dX/dt = a*X\nimport os", "line 2"),
    ("dX/dt = exp(X, a)", "one argument"),
    ("dX/dt = a*X +", "cannot parse"),
])
def test_parser_rejects_anything_but_arithmetic(text, message):
    with pytest.raises(CartKineticsError, match=message.replace("(", r"\(")):
        build_spec("bad", text, {"a": 1.0}, states=None, source="user.txt")


def test_error_names_source_and_line():
    text = "k2 = a*2\n# comment\ndX/dt = -k2*X + nope\n"
    with pytest.raises(CartKineticsError) as info:
        build_spec("bad", text, {"a": 1.0}, source="model.txt")
    assert "model.txt, line 3" in str(info.value)


def test_power_caret_continuation_and_where():
    text = "dX/dt = -a*X^2 + b\n    + where(piece < 1, 1, 0) * Max(t - 1, 0)"
    spec = build_spec("ok", text, {"a": 2.0, "b": 1.0})
    assert "Max" in spec.equations["X"] and "^2" in spec.equations["X"]
    import sympy as sp

    from cartkinetics.models.spec import to_sympy

    S = to_sympy(spec)
    X = S["y"][0]
    a, b = S["p"]
    # '^' is power with the usual precedence: -a*X**2 + b (not -(a*X) xor ...)
    rhs = S["rhs"][0].subs(S["piece"], 0).subs(S["t"], 0)
    assert sp.simplify(rhs - (-a * X**2 + b)) == 0


def test_user_model_matches_scipy_and_registry(user_model):
    from scipy.integrate import solve_ivp

    p = PARAMS

    def f(t, y):
        E, M, A = y
        g = p["rho"] * A / (A + p["K"])
        return [g * E - (p["delta"] + p["k"]) * E, p["k"] * E - p["mu"] * M,
                p["r"] * A - p["gamma"] * E * A / (E + 1e4)]

    t = np.array([1.0, 5.0, 10.0, 20.0, 40.0])
    ref = solve_ivp(f, (0, 40), [1e5, 0, 1e7], t_eval=t, method="Radau", rtol=1e-11,
                    atol=1e-6)
    sol = user_model.solve(t, rtol=1e-9)
    assert sol.status == 0
    np.testing.assert_allclose(sol.observed["car_t"], ref.y[0] + ref.y[1], rtol=1e-6)
    np.testing.assert_allclose(sol.observed["log_tumour"], np.log(ref.y[2]), rtol=1e-6)
    models.register(user_model, overwrite=True)
    try:
        assert "test_em" in models.available() and models.get("test_em") is user_model
        with pytest.raises(CartKineticsError, match="exists already"):
            models.register(user_model)
    finally:
        # the registry is per session: leave it as the other tests expect it
        models.unregister("test_em")
    assert "test_em" not in models.available()


def test_generated_sensitivities_vs_central_differences(user_model):
    t = np.array([2.0, 7.0, 14.0, 30.0])
    p = user_model.typical
    for obs_name in ("car_t", "log_tumour"):
        obs, grad, status = user_model.sensitivities(t, p, observation=obs_name, rtol=1e-10,
                                                     atol=1e-10)
        assert status == 0
        fd = np.empty_like(grad)
        for j in range(p.size):
            h = 1e-4 * p[j]
            up, dn = p.copy(), p.copy()
            up[j] += h
            dn[j] -= h
            fd[:, j] = (
                user_model.solve(t, up, rtol=1e-12, atol=1e-10).observed[obs_name]
                - user_model.solve(t, dn, rtol=1e-12, atol=1e-10).observed[obs_name]
            ) / (2 * h)
        # columns that do not move this observation are compared on the largest column's scale
        scale = np.maximum(np.abs(fd).max(axis=0), 1e-4 * np.abs(fd).max())
        np.testing.assert_allclose(grad / scale, fd / scale, atol=1e-5)


def test_scipy_backend_sensitivities_match_numba(user_model):
    t = np.array([3.0, 12.0, 30.0])
    _, g1, s1 = user_model.sensitivities(t, rtol=1e-10, atol=1e-10)
    _, g2, s2 = user_model.sensitivities(t, rtol=1e-10, atol=1e-10, method="scipy-radau")
    assert s1 == s2 == 0
    scale = np.abs(g2).max(axis=0)
    np.testing.assert_allclose(g1 / scale, g2 / scale, atol=1e-6)


def test_doses_and_second_infusion(user_model):
    t = np.array([9.99, 10.0, 10.01])
    one = user_model.solve(t, rtol=1e-10)
    two = user_model.solve(t, dose=[(0.0, 1e5), (10.0, 5e5)], rtol=1e-10)
    assert two.states["E"][1] == pytest.approx(one.states["E"][1], rel=1e-8)  # before the jump
    assert two.states["E"][2] - one.states["E"][2] == pytest.approx(5e5, rel=0.05)
    with pytest.raises(CartKineticsError, match="dose entry 2"):
        user_model.solve(t, dose=[(0.0, 1e5), (-1.0, 1.0)])


def test_batch_keeps_going_after_a_failure(user_model):
    P = np.tile(user_model.typical, (4, 1))
    P[1, 0] = np.nan
    P[2, 0] = 60.0  # explosive expansion: still a finite solve or a reported failure
    b = user_model.solve_batch([1.0, 5.0], P)
    assert b.status[0] == 0 and b.status[1] == 4 and b.status[3] == 0
    assert np.isnan(b.observed["car_t"][1]).all()
    np.testing.assert_allclose(b.observed["car_t"][3], b.observed["car_t"][0])


@pytest.mark.slow
def test_max_steps_is_reported_not_silent(user_model):
    sol = user_model.solve([40.0], method="tsit5", max_steps=5, rtol=1e-10)
    assert sol.status == 1
    assert np.isnan(sol.observed["car_t"]).all()
    assert "max_steps" in sol.message


def test_sympy_expressions_and_from_functions():
    import sympy as sp
    from numba import njit

    X = sp.Symbol("X")
    k = sp.Symbol("k")
    m = models.from_equations("decay_sym", {"X": -k * X}, {"k": 0.3}, initial={"X": "2"})
    sol = m.solve([1.0, 2.0])
    np.testing.assert_allclose(sol.observed["total"], 2 * np.exp(-0.3 * np.array([1, 2])),
                               rtol=1e-5)

    @njit(cache=True)
    def rhs(t, y, p, piece, dydt):
        dydt[0] = -p[0] * y[0]

    mf = models.from_functions("decay_fn", rhs, ["X"], [Parameter("k", "1/day", 0.3)],
                               initial=[2.0])
    sol2 = mf.solve([1.0, 2.0], method="scipy-lsoda", rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(sol2.observed["total"], 2 * np.exp(-0.3 * np.array([1, 2])),
                               rtol=1e-7)
    _, g, st = mf.sensitivities([2.0], method="scipy-radau", rtol=1e-10, atol=1e-12)
    assert st == 0
    assert g[0, 0] == pytest.approx(-2 * 2 * np.exp(-0.6), rel=1e-5)


def test_generated_code_is_cached(user_model, tmp_path, monkeypatch):
    from cartkinetics.models import codegen

    path = codegen.cache_dir()
    files = list(path.glob("ck_gen_test_em_*.py"))
    assert len(files) == 1
    text = files[0].read_text()
    assert "@njit(cache=True" in text and "def dfdp(" in text


def test_cli_lists_models(capsys):
    from cartkinetics.commands import models as cmd

    class Args:
        name = None
        json = True

    assert cmd.run(Args()) == 0
    out = json.loads(capsys.readouterr().out)
    names = {m["name"] for m in out}
    assert {"stein2019", "kirouac2023", "hardiansyah2019"} <= names
    Args.name, Args.json = "stein2019", False
    assert cmd.run(Args()) == 0
    assert "Stein 2019 Table 1" in capsys.readouterr().out


def test_batch_sensitivities_and_pickle(user_model):
    import pickle

    P = user_model.typical * np.array([[1.0] * 7, [1.1] * 7, [0.9] * 7])
    t = np.array([3.0, 12.0])
    obs, grad, status = user_model.sensitivities_batch(t, P, rtol=1e-10, atol=1e-10)
    assert list(status) == [0, 0, 0] and grad.shape == (3, 2, 7)
    for i in range(3):
        o1, g1, _ = user_model.sensitivities(t, P[i], rtol=1e-10, atol=1e-10)
        np.testing.assert_allclose(obs[i], o1, rtol=1e-12)
        np.testing.assert_allclose(grad[i], g1, rtol=1e-8, atol=1e-12 * np.abs(g1).max())
    clone = pickle.loads(pickle.dumps(user_model))
    np.testing.assert_allclose(clone.solve(t).observed["car_t"],
                               user_model.solve(t).observed["car_t"])
    stein_ode = pickle.loads(pickle.dumps(models.get("stein2019_ode")))
    o, g, s = stein_ode.sensitivities_batch([5.0, 20.0], np.tile(stein_ode.typical, (2, 1)))
    _, g_ref, _ = models.get("stein2019").sensitivities([5.0, 20.0])
    assert list(s) == [0, 0]
    scale = np.abs(g_ref).max(axis=0)
    np.testing.assert_allclose(g[1] / scale, g_ref / scale, atol=1e-6)


def test_from_file_names_file_and_line(tmp_path):
    good = tmp_path / "decay.txt"
    good.write_text("# one compartment\ndX/dt = -k*X\n")
    m = models.from_file(good, {"k": 0.2}, initial={"X": "1"})
    assert m.name == "decay"
    assert m.solve([1.0]).observed["total"][0] == pytest.approx(np.exp(-0.2), rel=1e-5)
    assert "dX/dt = -k*X" in m.info()["equations"]
    bad = tmp_path / "bad.txt"
    bad.write_text("dX/dt = -k*X\n\ndY/dt = X.__class__\n")
    with pytest.raises(CartKineticsError, match=r"bad.txt, line 3"):
        models.from_file(bad, {"k": 0.2})
    with pytest.raises(CartKineticsError, match="has no dose input"):
        models.get("stein2019_ode").solve([1.0], dose=1e8)
