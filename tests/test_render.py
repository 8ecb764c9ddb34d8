"""The renderer (bayesmlm.report.render), the report's sections (bayesmlm.report.sections) and report.html (bayesmlm.report.html)."""

from __future__ import annotations

import base64
import re
from types import SimpleNamespace

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import pytest

import bayesmlm
from bayesmlm.report.html import report_html, write_report
from bayesmlm.report.render import (
    Math,
    Note,
    Section,
    Table,
    equation_html,
    format_table,
)
from bayesmlm.report.sections import (
    diagnostics_section,
    equations_section,
    figure_image,
    fixed_section,
    plots_section,
    priors_section,
    variance_section,
)
from bayesmlm.sample.nuts import Diagnostics, SamplerSettings


def test_format_table_digits():
    frame = pd.DataFrame({"mean": [10.46729, -0.0000123, 0.0], "ess_bulk": [812.6, 40.2, np.nan], "r_hat": [1.00312, 1.2, 1.0],
                          "ok": [True, False, True]}, index=pd.Index(["a", "b", "c"], name="term"))
    out = format_table(frame)
    assert list(out.columns) == ["term", "mean", "ess_bulk", "r_hat", "ok"]
    assert out.iloc[0].tolist() == ["a", "10.47", "813", "1.003", "yes"]
    assert out.iloc[1].tolist() == ["b", "-1.230e-05", "40", "1.200", "no"]
    assert out.iloc[2, 1:3].tolist() == ["0", ""]


def test_equation_html_subscripts():
    assert equation_html("log_radon_ij = β0_j + u0_j + e_ij") == \
        "log_radon<sub>ij</sub> = β<sub>0j</sub> + u<sub>0j</sub> + e<sub>ij</sub>"
    assert equation_html("(u0_j) ~ N(0, [τ00])") == "(u<sub>0j</sub>) ~ N(0, [τ<sub>00</sub>])"
    assert equation_html("a < b") == "a &lt; b"


def test_section_three_ways():
    fig, ax = plt.subplots(figsize=(2, 2))
    ax.plot([0, 1], [0, 1])
    image = figure_image(fig, "plots/line.png", "A line", svg=True)
    s = Section("Demo", (Note("Read | this.", "warn"), Math(r"\beta_{0j}", "β0_j"),
                         Table(pd.DataFrame({"mean": [1.5]}, index=pd.Index(["x"], name="term")), "Cap", name="t"),
                         image), key="demo")
    md = s.to_markdown()
    assert md.splitlines()[0] == "## Demo" and "⚠ Read | this." in md and "$$\\beta_{0j}$$" in md
    assert "| term | mean |" in md and "| x | 1.5 |" in md and "![A line](plots/line.png)" in md
    page = s.to_html()
    assert page.startswith('<section id="demo"><h2>Demo</h2>') and '<p class="note warn">' in page
    assert "β<sub>0j</sub>" in page and '<td class="num">1.5</td>' in page
    png = base64.b64decode(re.search(r'src="data:image/png;base64,([^"]+)"', page).group(1))
    assert png == image.png and png[:8] == b"\x89PNG\r\n\x1a\n"
    assert image.svg.lstrip().startswith("<?xml") and "<svg" in image.svg
    text = s.to_text()
    assert "[warning] Read | this." in text and "  β0_j" in text and "[figure: A line -> plots/line.png]" in text
    assert s._repr_html_() == page and s.images() == [image] and [t.name for t in s.tables()] == ["t"]
    with pytest.raises(ValueError, match="Valid kinds: plain, ok, warn, bad"):
        Note("x", "error")


def test_report_html_is_self_contained(tmp_path):
    doc = report_html([Section("One", (Note("a"),), key="one"), Section("Two", (Note("b"),), key="two")], "T <1>", "y ~ x")
    assert doc.startswith("<!DOCTYPE html>") and "<title>T &lt;1&gt;</title>" in doc
    assert '<a href="#one">One</a> <a href="#two">Two</a>' in doc
    assert not re.search(r'(src|href)="(https?:)?//', doc) and "<script" not in doc


@pytest.fixture(scope="module")
def sleep(sleep_fit):
    return sleep_fit


def test_fixed_section_is_the_fixef_table(sleep):
    sec = fixed_section(sleep)
    table = sec.tables()[0].frame
    pd.testing.assert_frame_equal(table.drop(columns="interval"), sleep.fixef(), check_names=False)
    assert table.loc["Days", "interval"] == "above zero"  # lme4: 10.47 (SE 1.55)
    assert any(isinstance(b, Note) and b.text.startswith("Days: 10.") for b in sec.blocks)


def _diagnosed(diagnostics):
    settings = SamplerSettings(draws=500, tune=500, chains=4, seed=1, target_accept=0.9)
    return SimpleNamespace(diagnostics=diagnostics, record=SimpleNamespace(settings=settings))


def test_diagnostics_verdicts_for_a_converged_fit():
    sec = diagnostics_section(_diagnosed(Diagnostics(1.004, 1510.4, 1320.0, 0, ())))
    assert [(b.kind, b.text) for b in sec.blocks if isinstance(b, Note)] == [
        ("ok", "The sampler converged: every check below passes, so the posterior summaries can be read."),
        ("ok", "The 4 chains agree with one another (max R-hat 1.004)."),
        ("ok", "There are enough effectively independent draws for stable means and intervals (min ESS 1320)."),
        ("ok", "No divergent transitions: the sampler explored the posterior without trouble.")]
    table = sec.tables()[0].frame
    assert table.values.tolist() == [["max R-hat", "1.004", "<= 1.01", True], ["min bulk ESS", "1510", ">= 400", True],
                                     ["min tail ESS", "1320", ">= 400", True], ["divergences", "0", "0", True]]


def test_diagnostics_verdicts_for_a_fit_that_did_not_converge():
    sec = diagnostics_section(_diagnosed(Diagnostics(1.2, 50.0, 40.0, 3, ("sd_g[(Intercept)]",))))
    assert [(b.kind, b.text) for b in sec.blocks if isinstance(b, Note)] == [
        ("bad", "The sampler did not converge: treat these numbers as provisional and do not report them yet."),
        ("bad", "The chains disagree (max R-hat 1.200 > 1.01): they have not found the same posterior; draw longer chains."),
        ("warn", "Too few effectively independent draws (min ESS 40 < 400): intervals are noisy; draw more than 500 per "
                 "chain."),
        ("bad", "3 divergent transitions: the sampler struggled in part of the posterior, so it may be missed; raise "
                "target_accept (now 0.9) toward 0.99."),
        ("plain", "Worst parameters: sd_g[(Intercept)].")]
    assert sec.tables()[0].frame["passed"].tolist() == [False, False, False, False]


def test_variance_section_and_icc(sleep):
    sec = variance_section(sleep)
    vc = sec.tables()[0].frame
    assert list(vc["group"]) == ["Subject", "Subject", "Subject", "Residual"]
    assert abs(vc.iloc[3]["mean"] - 25.59) < 2.0  # lme4: residual SD 25.59
    assert any("ICC: not reported" in b.text for b in sec.blocks if isinstance(b, Note))


def test_equations_and_priors_sections(sleep):
    eq = equations_section(sleep)
    maths = [b for b in eq.blocks if isinstance(b, Math)]
    assert maths[0].text == "Reaction_ij = β0_j + β1_j·Days_ij + e_ij" and len(maths) == 5
    pri = priors_section(sleep).tables()[0].frame
    assert pri.loc["cor(Subject)", "prior"] == "lkj(eta=1)"


def test_plots_section_draws_and_explains(sleep):
    sec = plots_section(sleep, ["bar", "forest"], "Days")
    assert [im.filename for im in sec.images()] == ["plots/bar.png", "plots/forest.png"]
    assert all(im.png[:4] == b"\x89PNG" and len(im.png) > 10_000 for im in sec.images())
    assert "Days" in sec.images()[0].caption


def test_write_report(sleep, tmp_path):
    path = write_report(sleep, tmp_path / "r" / "report.html", which=["forest"], compare=False)
    doc = path.read_text()
    for key in ("overview", "diagnostics", "equations", "priors", "fixed", "variance", "plots"):
        assert f'<section id="{key}">' in doc
    assert doc.count("<img ") == 1 and 'id="frequentist"' not in doc


def test_icc_sentence_for_the_empty_model():
    rng = np.random.default_rng(0)
    df = pd.DataFrame({"y": np.repeat(rng.normal(0, 1, 8), 10) + rng.normal(0, 1, 80), "g": np.repeat(list("abcdefgh"), 10)})
    fit = bayesmlm.MLM("y ~ 1 + (1 | g)", df).fit(draws=150, tune=150, chains=2, seed=1, progressbar=False)
    sec = variance_section(fit)
    icc = fit.icc().loc["g"]
    assert [t.name for t in sec.tables()] == ["varcorr", "icc"]
    note = [b.text for b in sec.blocks if isinstance(b, Note)][-1]
    assert note.startswith(f"About {100 * icc['mean']:.1f}%") and "between groups of g" in note
