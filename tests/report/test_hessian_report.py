"""Hessian reports say the same thing everywhere: which end, the condition number only from
converged extreme pairs (else its reason), and one SLQ outlier count at both ends."""

from __future__ import annotations

import copy
import re

import pytest
import torch
from dense_truths import linear_mse_hessian, symmetric_with_eigenvalues

from spectracli.hessian.linop import DenseOperator
from spectracli.hessian.slq import slq_density
from spectracli.report.hessian import condition_text, eigen_title, outlier_count, outlier_text
from spectracli.report.html import render_html
from spectracli.report.markdown import render_markdown
from spectracli.report.plots import hessian_density_figure, hessian_eigenvalues_figure

pytestmark = pytest.mark.usefixtures("one_thread")


def test_slq_finds_outliers_at_both_ends_with_one_count():
    # Bulk of 200 in [-1, 1], two outliers above (30, 20) and two below (-10, -15). Extreme
    # isolated eigenvalues are Ritz values to ~1e-6 after 40 steps, so every probe has them.
    gen = torch.Generator().manual_seed(7)
    bulk = torch.rand(200, generator=gen, dtype=torch.float64) * 2 - 1
    ends = torch.tensor([30.0, 20.0, -10.0, -15.0], dtype=torch.float64)
    a = symmetric_with_eigenvalues(torch.cat([ends, bulk]))
    d = slq_density(DenseOperator(a), n_probes=10, n_steps=40, seed=1)
    assert d.n_outliers == len(d.outliers) + len(d.outliers_below)
    assert sorted(set(round(v, 3) for v in d.outliers), reverse=True) == [30.0, 20.0]
    assert sorted(set(round(v, 3) for v in d.outliers_below)) == [-15.0, -10.0]
    assert d.outliers == sorted(d.outliers, reverse=True)
    assert d.outliers_below == sorted(d.outliers_below)
    assert 1.0 - 2 * d.sigma <= d.bulk_edge <= 1.0 + 2 * d.sigma
    assert -1.0 - 2 * d.sigma <= d.bulk_edge_low <= -1.0 + 2 * d.sigma


def _density(hessian_report: dict) -> dict:
    report = copy.deepcopy(hessian_report)
    report["density"].update(outliers=[50.0, 20.0, 20.0, 9.0], outliers_below=[-3.0],
                             bulk_edge_low=-0.05, n_outliers=5, n_probes=5, n_steps=24)
    return report


def test_one_outlier_count_in_markdown_html_terminal_and_plot(hessian_report, capsys):
    from spectracli.cli.hessian import _print_summary

    report = _density(hessian_report)
    density = report["density"]
    assert outlier_count(density) == density["n_outliers"] == 5
    text = outlier_text(density)
    assert text.startswith("5 outliers: 4 above the bulk edge 0.5 (50, 20, 20, 9), 1 below")
    md = render_markdown(report)
    assert text in md and "| density outliers | 5 |" in md
    assert text in render_html(report, image_format="svg")
    report["settings"].update(which="largest", loss="cross_entropy", device="cpu")
    _print_summary(report)
    assert text in capsys.readouterr().out
    assert hessian_density_figure(report).axes[0].get_title("left").endswith("5 outliers")
    counts = {int(m) for m in re.findall(r"(\d+) outliers", md + text)}
    assert counts == {5}


@pytest.mark.parametrize(
    "which, n, title",
    [("largest", 5, "Top eigenvalues (5)"), ("smallest", 5, "Smallest eigenvalues (5)"),
     ("both", 6, "Top (3) and smallest (3) eigenvalues")],
)
def test_titles_say_which_end(hessian_report, which, n, title):
    report = copy.deepcopy(hessian_report)
    report["settings"]["which"] = which
    report["eigenvalues"] = report["eigenvalues"][:n] + [0.0] * (n - len(report["eigenvalues"]))
    report["residuals"] = [1e-9] * n
    report["converged"] = [True] * n
    assert eigen_title(report) == title
    assert f"## {title}" in render_markdown(report)
    assert f"<h2>{title}</h2>" in render_html(report, image_format="svg")
    assert hessian_eigenvalues_figure(report).axes[0].get_title("left").startswith(title)


def test_condition_number_is_a_number_or_its_reason(hessian_report):
    report = copy.deepcopy(hessian_report)
    report["condition_number"] = None
    report["condition_number_reason"] = "the extreme eigenpairs did not converge"
    assert condition_text(report) == "n/a: the extreme eigenpairs did not converge"
    assert "| condition number | n/a: the extreme eigenpairs did not converge |" in (
        render_markdown(report))
    report["condition_number"] = 123.5
    assert condition_text(report) == "123.5"


def test_condition_number_only_from_converged_extreme_pairs():
    from torch import nn

    from spectracli.hessian import eigenpairs

    gen = torch.Generator().manual_seed(0)
    x = torch.randn(40, 6, generator=gen, dtype=torch.float64)
    y = torch.randn(40, generator=gen, dtype=torch.float64)
    model = nn.Linear(6, 1, bias=False).double()  # H = X^T X / 40, positive definite
    cut = eigenpairs(model, (x, y), "mse", k=2, which="both", dtype="float64", max_hvps=3)
    assert not all(cut.converged) and cut.condition_number is None
    assert cut.condition_number_reason == "the extreme eigenpairs did not converge"
    full = eigenpairs(model, (x, y), "mse", k=2, which="both", dtype="float64")
    ev = torch.linalg.eigvalsh(linear_mse_hessian(x))
    assert full.condition_number == pytest.approx(float(ev[-1] / ev[0]), rel=1e-6)
    assert full.condition_number_reason is None
    top = eigenpairs(model, (x, y), "mse", k=2, dtype="float64")
    assert top.condition_number is None and "which=both" in top.condition_number_reason


def test_terminal_says_when_only_the_multiplicity_check_is_missing(hessian_report, capsys):
    from spectracli.cli.hessian import _print_summary

    report = copy.deepcopy(hessian_report)
    report["settings"].update(which="largest", loss="cross_entropy", device="cpu")
    report["density"] = None
    report["converged"] = [False] * len(report["eigenvalues"])
    report["multiplicity_verified"] = False
    _print_summary(report)
    assert "multiplicity check (deflated restarts) did not finish" in capsys.readouterr().out
    report["residuals"][0] = 1.0  # above tol: an ordinary convergence failure
    _print_summary(report)
    assert "not all eigenpairs converged" in capsys.readouterr().out
