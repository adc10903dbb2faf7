"""docs/cli.md is generated from the parser (scripts/gen_cli_docs.py) and matches ``--help``."""

from __future__ import annotations

import importlib.util
import re
from pathlib import Path

import pytest

from cartkinetics.cli import COMMANDS, main

ROOT = Path(__file__).resolve().parents[1]
PAGE = ROOT / "docs" / "cli.md"


def _generator():
    spec = importlib.util.spec_from_file_location("gen_cli_docs", ROOT / "scripts" /
                                                  "gen_cli_docs.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _sections() -> dict[str, str]:
    text = PAGE.read_text(encoding="utf-8")
    parts = re.split(r"^## ", text, flags=re.MULTILINE)[1:]
    return {p.split("\n", 1)[0].strip(): p for p in parts}


def test_cli_page_is_the_generated_one(monkeypatch):
    monkeypatch.setenv("COLUMNS", "100")
    assert PAGE.read_text(encoding="utf-8") == _generator().render(), (
        "docs/cli.md is out of date: run python scripts/gen_cli_docs.py"
    )


def _nested(name: str) -> list[str]:
    """Names of the nested subcommands of ``name`` (``validate``: its studies)."""
    import argparse

    from cartkinetics.cli import build_parser

    parser = build_parser()
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    return [n for a in sub.choices[name]._actions if isinstance(a, argparse._SubParsersAction)
            for n in a.choices]


@pytest.mark.parametrize("name", list(COMMANDS))
def test_every_option_of_help_is_on_the_page(name, capsys, monkeypatch):
    monkeypatch.setenv("COLUMNS", "100")
    with pytest.raises(SystemExit) as exc:
        main([name, "--help"])
    assert exc.value.code == 0
    helptext = capsys.readouterr().out
    section = _sections().get(name)
    assert section is not None, f"no section for {name} in docs/cli.md"
    options = set(re.findall(r"(?<![\w-])--[a-z][\w-]*", helptext)) - {"--help"}
    subcommands = _nested(name)
    assert options or subcommands, name
    for sub in subcommands:  # e.g. validate fit-coverage: its options on the page too
        with pytest.raises(SystemExit):
            main([name, sub, "--help"])
        options |= set(re.findall(r"(?<![\w-])--[a-z][\w-]*", capsys.readouterr().out))
    options -= {"--help"}
    missing = sorted(o for o in options if f"`{o}" not in section and f", {o}" not in section)
    assert not missing, f"{name}: options in --help but not in docs/cli.md: {missing}"
    usage = helptext.split("\n\n", 1)[0].strip()
    assert usage in section  # the usage block is the parser's own
