"""Eigenvalues shown by the asked end of the spectrum: ``--which smallest`` numbers from the
smallest (1 = most negative), ``--which both`` gives each end its own rows, and the blocks table
its own columns per end. Truth: the dense Hessian of a linear least-squares model, X^T X / N."""

from __future__ import annotations

import json

import pytest
import torch
from dense_truths import linear_mse_hessian
from typer.testing import CliRunner

from spectracli.cli.app import app
from spectracli.report.hessian import by_end, eigen_rows, end_order
from spectracli.report.markdown import render_hessian_markdown

pytestmark = pytest.mark.usefixtures("one_thread")
runner = CliRunner()
X = torch.tensor([[1.0, 0.0, 0.0, 0.5], [0.0, 2.0, 0.0, 0.0], [0.0, 0.0, 3.0, 0.0],
                  [0.5, 0.0, 0.0, 4.0], [1.0, 1.0, 1.0, 1.0]])


def test_end_order_numbers_from_the_asked_end():
    values = [3.0, 1.0, -1.0, -2.0]  # descending, as the JSON keeps them
    assert by_end(values, "largest") == ([3.0, 1.0, -1.0, -2.0], [])
    assert by_end(values, "smallest") == ([], [-2.0, -1.0, 1.0, 3.0])
    assert by_end(values, "both") == ([3.0, 1.0], [-2.0, -1.0])
    assert [(e, r) for e, r, _ in end_order(4, "both")] == [
        ("largest", 1), ("largest", 2), ("smallest", 1), ("smallest", 2)]
    report = {"eigenvalues": [-1.0, -2.0], "residuals": [1e-9, 2e-9], "converged": [True, False],
              "settings": {"which": "smallest"}}
    assert eigen_rows(report) == [("1", -2.0, 2e-9, False), ("2", -1.0, 1e-9, True)]
    md = render_hessian_markdown({**report, "kind": "hessian", "source": {}})
    assert md.index("| 1 | -2 |") < md.index("| 2 | -1 |")
    assert "**Not converged**: eigenpairs 1 " in md


@pytest.fixture()
def model_file(tmp_path):
    mod = tmp_path / "ls.py"
    rows = X.tolist()
    mod.write_text(
        "import torch\n"
        "def model():\n    torch.manual_seed(0)\n    return torch.nn.Linear(4, 1)\n"
        f"X = torch.tensor({rows})\n"
        "def data():\n    return X, torch.zeros(len(X))\n"
    )
    return mod


def _dense_weight_block() -> torch.Tensor:
    return torch.linalg.eigvalsh(linear_mse_hessian(X))  # ascending


def test_which_smallest_rows_start_at_the_smallest(model_file):
    args = ["hessian", "--model", f"{model_file}:model", "--data", f"{model_file}:data",
            "--loss", "mse", "--dtype", "float64", "--params", "weight", "-k", "2"]
    res = runner.invoke(app, [*args, "--which", "smallest", "-f", "markdown"])
    assert res.exit_code == 0, res.output
    ev = _dense_weight_block()
    lines = [line for line in res.stdout.splitlines() if line.startswith("| 1 |")
             or line.startswith("| 2 |")]
    first, second = (float(line.split("|")[2]) for line in lines[-2:])
    # markdown prints 6 significant digits: rel 1e-5
    assert first == pytest.approx(float(ev[0]), rel=1e-5) and first < second
    assert second == pytest.approx(float(ev[1]), rel=1e-5)


def test_blocks_with_which_both_give_each_end_its_columns(model_file):
    args = ["hessian", "--model", f"{model_file}:model", "--data", f"{model_file}:data",
            "--loss", "mse", "--dtype", "float64", "-k", "2", "--which", "both",
            "--blocks", "parameter"]
    res = runner.invoke(app, args, env={"COLUMNS": "200", "NO_COLOR": "1"})
    assert res.exit_code == 0, res.output
    header = next(line for line in res.stdout.splitlines() if "| block" in line)
    cells = [c.strip() for c in header.strip("|").split("|")]
    assert cells == ["block", "params", "lambda_max", "next largest", "lambda_min",
                     "next smallest", "trace", "+-"]
    row = next(line for line in res.stdout.splitlines() if line.startswith("| weight"))
    values = [c.strip() for c in row.strip("|").split("|")]
    ev = _dense_weight_block()
    assert float(values[2]) == pytest.approx(float(ev[-1]), rel=1e-5)
    assert float(values[3]) == pytest.approx(float(ev[-2]), rel=1e-3)
    assert float(values[4]) == pytest.approx(float(ev[0]), rel=1e-5)
    assert float(values[5]) == pytest.approx(float(ev[1]), rel=1e-3)
    res = runner.invoke(app, [*args, "-f", "json"])
    block = json.loads(res.stdout)["blocks"][0]
    assert block["name"] == "weight" and len(block["eigenvalues"]) == 4


def test_the_advice_names_the_cap_that_stopped_the_solve():
    from spectracli.report.hessian import convergence_advice

    base = {"converged": [False, True], "residuals": [3e-6, 5e-8], "hvp_count": 300,
            "n_params": 50826, "multiplicity_verified": False}
    restarted = {**base, "settings": {"tol": 1e-6, "n_restarts": 14, "max_basis": 40}}
    assert "restarted 14 times at its cap of 40 vectors; raise --max-basis" in (
        convergence_advice(restarted))
    budget = {**base, "settings": {"tol": 1e-6, "n_restarts": 0, "max_basis": 300}}
    assert convergence_advice(budget) == (
        "not all eigenpairs converged within 300 HVPs: raise --max-hvps, or loosen --tol")
    checking = {**base, "residuals": [1e-7, 1e-8], "settings": {"tol": 1e-6}}
    assert "multiplicity check" in convergence_advice(checking)
    assert convergence_advice({**base, "converged": [True, True]}) is None


def test_the_default_basis_does_not_restart_at_the_smallest_end():
    """A GGN's smallest end is its null space: restarts there stall (docs/hessian.md), so while
    the vectors fit SMALL_BASIS_BYTES the basis holds the default HVP budget (300)."""
    from spectracli.hessian.api import basis_cap

    memory = 64 * 2**30
    assert basis_cap(50826, 2, "largest", memory) == 40
    assert basis_cap(50826, 2, "smallest", memory) == 300
    assert basis_cap(50826, 2, "both", memory) == 300
    assert basis_cap(10**8, 2, "smallest", memory) == 14  # large models: 2w + 10, unchanged
    assert basis_cap(200, 2, "smallest", memory) == 200  # never more than n
