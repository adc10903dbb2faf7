"""HtmlReport, run_analysis step isolation and the ``cartkinetics report`` command."""

from __future__ import annotations

import re

import pandas as pd
import pytest

import cartkinetics.pipeline as pipeline_mod
import cartkinetics.report as report_mod
from cartkinetics import example
from cartkinetics.cli import main
from cartkinetics.pipeline import AnalysisOptions, run_analysis
from cartkinetics.report import SECTIONS, HtmlReport
from cartkinetics.testing.report_check import embedded_pngs, png_size

FAST = ("nca", "compare", "endpoints", "exposure")


def test_html_report_escapes_and_embeds(tmp_path):
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib.figure import Figure

    rep = HtmlReport("T <1>")
    rep.toc = [("a", "A")]
    rep.heading("Section & co", anchor="a")
    rep.table(pd.DataFrame({"x": ["<script>alert(1)</script>"], "y": [float("nan")]}))
    fig = Figure(figsize=(2, 1))
    fig.subplots().plot([0, 1], [1, 0])
    rep.figure(fig, "a line")
    html = rep.write(tmp_path / "r.html").read_text()
    assert "<script>" not in html and "&lt;script&gt;" in html
    assert '<h2 id="a">Section &amp; co</h2>' in html and 'href="#a"' in html
    assert "<title>T &lt;1&gt;</title>" in html
    (png,) = embedded_pngs(html)
    assert png_size(png)[0] > 50
    assert "http://" not in html and "https://" not in html  # nothing external


@pytest.fixture(scope="module")
def fast_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("fast") / "out"
    return run_analysis(example.kinetics_path(), patients=example.patients_path(),
                        cohort=example.patients_path(), out=out, log=None,
                        options=AnalysisOptions(only=FAST, synthetic=True))


def test_selected_steps_and_sections(fast_run):
    a = fast_run
    status = {s.key: s.status for s in a.steps}
    assert status == {"data": "ok", "nca": "ok", "compare": "ok", "fits": "skipped",
                      "population": "skipped", "endpoints": "ok", "exposure": "ok",
                      "simulation": "skipped",
                      "report": "ok"}
    html = a.report_path.read_text()
    for anchor in SECTIONS:
        assert f'id="{anchor}"' in html
    assert "SYNTHETIC" in html
    assert html.count("This step was skipped: not selected (--only)") == 3
    # the NCA comparison of the example (7 pairs) and the KM/swimmer figures
    assert a.compare["n_pairs"] == 7
    assert set(a.figures) == {"paired_plot.png", "endpoints/km_os.png", "endpoints/km_efs.png",
                              "endpoints/swimmer.png"}
    # the exposure-response section (cartkinetics.exposure.html_section) embeds its own
    er = re.search(r'<h3 id="exposure-response">.*?(?=<h2 )', html, re.S)
    assert er is not None and "Firth" in er.group(0)
    pngs = embedded_pngs(html.replace(er.group(0), ""))
    assert len(pngs) == 4
    # the embedded figures are the PNG files written next to the report
    assert sorted(pngs) == sorted((a.out / n).read_bytes() for n in a.figures)
    for name in ("observations.csv", "nca.csv", "compare_pairs.csv", "compare.json",
                 "endpoints/efficacy.csv", "endpoints/safety.csv"):
        assert (a.out / name).stat().st_size > 0


def test_nca_table_in_report_matches_csv(fast_run):
    nca = pd.read_csv(fast_run.out / "nca.csv")
    html = fast_run.report_path.read_text()
    p01 = nca[(nca["patient"] == "P01") & (nca["infusion"] == 2)].iloc[0]
    assert f'<td class="num">{report_mod._fmt(float(p01["cmax"]))}</td>' in html  # 3 digits
    assert f"{p01['cmax']:.3g}" == report_mod._fmt(float(p01["cmax"]))


def test_failing_step_is_isolated(tmp_path, monkeypatch, capsys):
    def boom(a, cohort):
        raise RuntimeError("synthetic failure in endpoints")

    monkeypatch.setattr(pipeline_mod, "_step_endpoints", boom)
    code = main(["demo", "--out", str(tmp_path / "d"), "--only", "nca,compare,endpoints"])
    assert code == 1
    text = capsys.readouterr().out
    assert "FAILED   cohort endpoints: RuntimeError: synthetic failure in endpoints" in text
    assert "[9/9] HTML report ... " in text and "report: " in text
    html = (tmp_path / "d" / "report.html").read_text()
    assert "This step failed: RuntimeError: synthetic failure in endpoints" in html
    assert (tmp_path / "d" / "paired_plot.png").is_file()  # the other steps still ran


def test_report_command_on_user_files(tmp_path, capsys):
    kin = tmp_path / "my_kinetics.csv"
    kin.write_text(example.kinetics_path().read_text())
    cov = pd.read_csv(example.patients_path())[["patient", "age", "sex", "weight_kg"]]
    cov.to_csv(tmp_path / "covariates.csv", index=False)
    out = tmp_path / "rep"
    code = main(["report", "--kinetics", str(kin), "--patients", str(tmp_path / "covariates.csv"),
                 "--out", str(out), "--only", "nca,compare,endpoints", "--title", "My study"])
    assert code == 0
    html = (out / "report.html").read_text()
    assert "<title>My study</title>" in html and "SYNTHETIC" not in html
    # covariates without outcome columns: no endpoints, and the report says why
    assert "This step was skipped: no cohort table" in html
    nca = pd.read_csv(out / "nca.csv")
    assert {"age", "sex"} <= set(nca.columns) and len(nca) == 14
    # with a cohort table the endpoints run
    code = main(["report", "--kinetics", str(kin), "--cohort", str(example.patients_path()),
                 "--out", str(out), "--only", "endpoints"])
    assert code == 0
    assert 'id="endpoints"' in (out / "report.html").read_text()
    assert (out / "endpoints" / "km_os.png").is_file()


def test_report_command_bad_input(tmp_path, capsys):
    bad = tmp_path / "bad.csv"
    bad.write_text("patient,day,value,assay\nP1,1,100,qpcr\nP1,-4,200,qpcr\n")
    out = tmp_path / "rep"
    assert main(["report", "--kinetics", str(bad), "--out", str(out)]) == 2
    text = capsys.readouterr().out
    assert "FAILED   read the kinetics" in text and "row 2" in text
    html = (out / "report.html").read_text()
    assert "This step failed" in html and "column &#x27;day&#x27;" in html
    assert main(["report", "--kinetics", str(tmp_path / "missing.csv")]) == 2
    assert "no such file" in capsys.readouterr().err


def test_unknown_step_is_an_input_error(tmp_path, capsys):
    assert main(["demo", "--out", str(tmp_path), "--only", "nca,fitz"]) == 2
    assert "unknown step(s) fitz" in capsys.readouterr().err


def test_run_analysis_takes_data_read_with_options(tmp_path):
    # a file read with a filter (the CLI's reading options): the pipeline uses the data as
    # read, its row accounting included, and picks the assay from the rows kept (the
    # filtered-out rows have no assay)
    from cartkinetics.data import read_kinetics

    rows = ["patient,infusion,day,value,assay,unit,lloq"]
    rows += [f"P1,{inf},{d},{v * inf},flow,cells/uL,1" for inf in (1, 2)
             for d, v in ((1, 5), (7, 50), (14, 20))]
    rows += ["P2,1,1,5,qpcr,copies/ug,1", "P2,1,7,50,qpcr,copies/ug,1"]
    path = tmp_path / "k.csv"
    path.write_text("\n".join(rows) + "\n")
    data = read_kinetics(path, filter={"assay": "flow"})
    a = run_analysis(data, out=tmp_path / "out", log=None,
                     options=AnalysisOptions(only=("nca", "compare")))
    assert [a.step(k).status for k in ("data", "nca", "compare")] == ["ok", "ok", "ok"]
    assert a.data is data and a.unit == "cells/uL" and a.compare.n_pairs == 1
    assert a.compare["cmax"]["ratio_gm"] == pytest.approx(2.0)
