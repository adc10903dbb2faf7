"""Docs that run: every ```python block of README.md and docs/**/*.md, and the README's
command-line examples, against the bundled example data.

The blocks of one page run in order in one namespace, in a temporary folder holding the
example files under the names the docs use (``kinetics.csv``, ``patients.csv``,
``cohort.csv``). A block is skipped only when marked as an illustration: an
``<!-- illustration -->`` comment on the line before its fence, or ``title="illustration"``
on the fence (```python title="illustration"``).
"""

from __future__ import annotations

import os
import re
import shlex
import shutil
from pathlib import Path

import pytest

from cartkinetics import example

ROOT = Path(__file__).resolve().parents[1]
DOCS = ROOT / "docs"

_FENCE = re.compile(r"^```python(?P<info>[^\n]*)\n(?P<code>.*?)^```\s*$", re.S | re.M)
_ILLUSTRATION = "<!-- illustration -->"

# pages whose examples wait for work not yet landed: they run, and a failure is expected
PENDING: dict[str, str] = {}
# pages whose examples take minutes (MCMC, a whole cohort in two processes) or compile numba
# models (10 s and more): run with -m slow
SLOW = {"docs/population.md", "docs/fitting.md", "docs/exposure-response.md", "docs/solvers.md",
        "docs/models/custom.md"}


def _pages() -> list[Path]:
    pages = [ROOT / "README.md"]
    pages += sorted(p for p in DOCS.rglob("*.md") if "dev" not in p.relative_to(DOCS).parts)
    return pages


def python_blocks(text: str) -> list[tuple[int, str, bool]]:
    """(line number, code, is illustration) of every ```python block of a markdown text."""
    blocks = []
    for m in _FENCE.finditer(text):
        line = text.count("\n", 0, m.start()) + 1
        before = text[: m.start()].rstrip("\n").rsplit("\n", 1)[-1].strip()
        info = m.group("info")
        illustration = before == _ILLUSTRATION or re.search(
            r"""title\s*=\s*["']illustration["']""", info) is not None
        blocks.append((line, m.group("code"), illustration))
    return blocks


def _page_params() -> list:
    params = []
    for page in _pages():
        rel = page.relative_to(ROOT).as_posix()
        if not any(not ill for _, _, ill in python_blocks(page.read_text(encoding="utf-8"))):
            continue
        marks = []
        if rel in PENDING:
            marks.append(pytest.mark.xfail(reason=PENDING[rel], strict=False))
        if rel in SLOW:
            marks.append(pytest.mark.slow)
        params.append(pytest.param(page, id=rel, marks=marks))
    return params


@pytest.fixture
def in_example_folder(tmp_path, monkeypatch):
    """A temporary working folder with the example files under the names the docs use."""
    shutil.copy(example.kinetics_path(), tmp_path / "kinetics.csv")
    shutil.copy(example.patients_path(), tmp_path / "patients.csv")
    shutil.copy(example.patients_path(), tmp_path / "cohort.csv")
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("MPLBACKEND", "Agg")
    import matplotlib

    matplotlib.use("Agg")
    yield tmp_path
    import matplotlib.pyplot as plt

    plt.close("all")


def test_collector_finds_and_skips_blocks():
    text = ("x\n```python\na = 1\n```\n<!-- illustration -->\n```python\nb = 2\n```\n"
            '```python title="illustration"\nc = 3\n```\n')
    blocks = python_blocks(text)
    assert [(code.strip(), ill) for _, code, ill in blocks] == [
        ("a = 1", False), ("b = 2", True), ("c = 3", True)]
    assert blocks[0][0] == 2


@pytest.fixture
def model_registry():
    """The docs register their own models (docs/models/custom.md): the session's registry is
    restored afterwards, as a reader's fresh session would have it."""
    from cartkinetics import models

    before = set(models.available())
    yield
    for name in set(models.available()) - before:
        models.unregister(name)


@pytest.mark.parametrize("page", _page_params())
def test_python_blocks_run(page: Path, in_example_folder: Path, model_registry):
    namespace: dict = {"__name__": "__docs__"}
    # the code is compiled against a real file so that numba's cache=True can locate it
    source = in_example_folder / f"docs_{page.stem}.py"
    for line, code, illustration in python_blocks(page.read_text(encoding="utf-8")):
        if illustration:
            continue
        source.write_text(code, encoding="utf-8")
        try:
            exec(compile(code, str(source), "exec"), namespace)  # noqa: S102 - the docs' own code
        except Exception as exc:
            raise AssertionError(
                f"{page.relative_to(ROOT)}, block at line {line} failed: "
                f"{type(exc).__name__}: {exc}") from exc


# ---------------------------------------------------------------- README commands
# extra options that keep a README command short in the test (the same code path)
SHORT = {
    "fit": ["--n-boot", "20"],
    "fit-population": ["--draws", "30", "--tune", "30", "--chains", "1", "--quiet"],
    "simulate": ["--n", "2000"],
    "report": ["--only", "nca,compare,endpoints"],
    "demo": ["--only", "nca,compare"],
}
FILES = {"KINETICS.csv": "kinetics.csv", "COHORT.csv": "cohort.csv",
         "PATIENTS.csv": "patients.csv"}


def readme_commands() -> list[str]:
    """The ``cartkinetics ...`` command lines of README.md's code (indented blocks and
    ```bash fences; comments removed)."""
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    out = []
    fenced = False
    for raw in text.splitlines():
        if raw.startswith("```"):
            fenced = raw.strip() in ("```bash", "```sh", "```console")
            continue
        if not (fenced or raw.startswith("    ")):
            continue
        line = raw.strip().removeprefix("$ ").removeprefix("pip install . && ")
        if line.startswith("cartkinetics"):
            out.append(line.split("#", 1)[0].strip())
    return out


def _cli_params() -> list:
    params = []
    for cmd in readme_commands():
        words = shlex.split(cmd)
        # the fits take 15-40 s on a busy 2-core machine: run with -m slow
        marks = [pytest.mark.slow] if len(words) > 1 and words[1] in ("fit", "fit-population") \
            else []
        params.append(pytest.param(cmd, id=" ".join(words[:2]), marks=marks))
    return params


def test_readme_has_command_examples():
    commands = readme_commands()
    assert len(commands) >= 5
    assert any(c.startswith("cartkinetics nca") for c in commands)


@pytest.mark.parametrize("command", _cli_params())
def test_readme_command_runs(command: str, in_example_folder: Path, capsys):
    from cartkinetics.cli import main

    words = [FILES.get(w, w) for w in shlex.split(command)[1:]]
    if words in (["--help"], []):
        with pytest.raises(SystemExit) as exc:
            main(["--help"])
        assert exc.value.code == 0
        return
    argv = list(words)
    if argv[0] in SHORT:
        short = SHORT[argv[0]]
        for opt in short[::2]:  # a README value replaced by the short one
            if opt in argv:
                i = argv.index(opt)
                del argv[i:i + 2]
        argv += short
    code = main(argv)
    assert code == 0, f"{command!r} exited {code}: {capsys.readouterr().err[-2000:]}"
    for w in argv:
        if w.endswith("/"):
            assert os.listdir(in_example_folder / w), f"{command!r} wrote nothing to {w}"
