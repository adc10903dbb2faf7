"""The benchmark record (issue #20): docs/benchmarks.md is the committed benchmarks/RESULTS.md
as ``python -m benchmarks`` renders it, and the record's header names the run. No benchmarking
here: these tests read files."""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from benchmarks import record  # noqa: E402


def _results() -> str:
    if not record.RESULTS_MD.is_file():
        pytest.fail("benchmarks/RESULTS.md is missing: run `python -m benchmarks`")
    return record.RESULTS_MD.read_text(encoding="utf-8")


def _assert_figures_exist(text: str) -> None:
    """Every figure a record links (relative to benchmarks/) is a file."""
    for link in re.findall(r"!\[[^\]]*\]\(([^)]+)\)", text):
        assert (record.HERE / link).resolve().is_file(), link


def test_docs_page_is_the_committed_results():
    page = record.DOCS_PAGE.read_text(encoding="utf-8")
    assert page == record.docs_page(_results(), record.read_cluster()), (
        "docs/benchmarks.md differs from the page generated from benchmarks/RESULTS.md and "
        "CLUSTER.md: run `python -m benchmarks` (do not edit these files by hand)")


def test_cluster_record_header_and_sizes():
    """The fits-at-scale record (issue #21): its own header, the sizes the issue names."""
    text = record.read_cluster()
    if text is None:
        pytest.skip("no cluster record committed")
    header = record.parse_header(text)
    missing = [f for f in record.HEADER_FIELDS if not header.get(f, "").strip()]
    assert not missing, f"CLUSTER.md header lacks {missing}"
    assert "uncommitted" not in header["commit"]
    doc = json.loads(record.CLUSTER_JSON.read_text(encoding="utf-8"))
    assert doc["header"]["commit"] == header["commit"]
    assert doc["fit"]["series"] >= 10_000 and doc["fit"]["workers"] == 2
    assert doc["fit"]["identical"] in ("bitwise", "to 1e-12")
    assert doc["sbc"]["replicates"] >= 200 and doc["sbc"]["workers"] == 2
    _assert_figures_exist(text)


def test_header_has_every_field():
    header = record.parse_header(_results())
    missing = [f for f in record.HEADER_FIELDS if not header.get(f, "").strip()]
    assert not missing, f"RESULTS.md header lacks {missing}"
    assert re.match(r"^[0-9a-f]{7,40}\b", header["commit"]), header["commit"]
    assert int(header["cores"]) >= 1
    for key in ("load average at start", "load average at end"):
        assert re.match(r"^\d+\.\d\d / \d+\.\d\d / \d+\.\d\d", header[key]), header[key]
    for name in ("cartkinetics", "numpy", "numba", "scipy", "numbalsoda", "diffrax"):
        assert f"{name} " in header["versions"], name
    assert re.search(r"\w", header["machine"])


def test_json_twin_and_figures():
    doc = json.loads(record.RESULTS_JSON.read_text(encoding="utf-8"))
    header = record.parse_header(_results())
    assert doc["header"]["commit"] == header["commit"]
    # every figure RESULTS.md links exists, and the docs page links the same files
    _assert_figures_exist(_results())


def test_full_record_has_what_the_issue_asks_for():
    text = _results()
    if not record.parse_header(text)["run"].startswith("full"):
        pytest.skip("the committed record is a quick run")
    assert "**Stiff target**" in text
    assert text.count("![work-precision") >= 2
    assert "## First demo on a fresh machine" in text


def test_docs_page_rendering():
    header = {"run": "full", "commit": "0123456789ab (x)", "date": "2026-01-01 00:00 UTC",
              "machine": "CPU, x86_64, Linux", "cores": 2, "load average at start": [1, 2, 3],
              "load average at end": [0.5, 0.25, 0.125], "python": "3.11.7",
              "versions": {"numpy": "2.4"}, "total time": 12.0}
    text = record.header_markdown(header) + "\n\n## Solvers\n\n![wp](../docs/figures/a.png)\n"
    parsed = record.parse_header(text)
    assert list(parsed) == list(record.HEADER_FIELDS)
    assert parsed["load average at end"].startswith("0.50 / 0.25 / 0.12")
    page = record.docs_page(text)
    assert page.startswith(record.DOCS_INTRO)
    assert "![wp](figures/a.png)" in page and "\n### Solvers\n" in page
    assert "\n## Benchmark results\n" in page
    # the introduction holds no measurement: no digits outside code, rtol values, headings
    prose = re.sub(r"```.*?```|`[^`]*`", "", record.DOCS_INTRO, flags=re.DOTALL)
    assert not re.findall(r"\d+(?:\.\d+)?\s*(?:s|us|ms|x)\b", prose)


def test_population_convergence_table_is_the_committed_records():
    """docs/population.md shows the convergence runs as the benchmark renders its records
    (``--markdown``), every record of the file, none edited by hand."""
    from benchmarks import bench_population_convergence as B

    path = ROOT / "benchmarks" / "results" / "population_convergence.jsonl"
    recs = B.read_records(path)
    page = (ROOT / "docs" / "population.md").read_text(encoding="utf-8")
    assert B.markdown_table(recs) in page, (
        "docs/population.md: paste the output of `PYTHONPATH=. python "
        "benchmarks/bench_population_convergence.py --markdown " + str(path.relative_to(ROOT))
        + "`")
    assert B.summarise(recs).splitlines()[0] in page
