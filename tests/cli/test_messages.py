"""Fresh users' findings on wording: every CLI message names the flag a user types (not the
library's parameter), a hint names a flag or command that exists, and aliases users try work."""

from __future__ import annotations

from pathlib import Path

from typer.testing import CliRunner

from spectracli.cli.app import app

ROOT = Path(__file__).resolve().parents[2]
MODEL = f"{ROOT / 'sample_models' / 'digits.py'}:build_mlp"
DATA = str(ROOT / "sample_models" / "digits.npz")
runner = CliRunner()


def _error(args: list[str]) -> str:
    res = runner.invoke(app, args)
    assert res.exit_code == 2, res.output
    assert "Traceback" not in res.output
    return res.stderr.strip()


def test_hook_errors_name_the_flags(tmp_path):
    hook = tmp_path / "hooks.py"
    hook.write_text("def f(out):\n    return out\n")
    line = _error(["hessian", "--model", MODEL, "--data", DATA, "--output-fn", f"{hook}:g"])
    assert line == f"spectracli: error: --output-fn {hook} has no attribute 'g'"
    line = _error(["hessian", "--model", MODEL, "--data", DATA, "--batch-fn", "nope.py:g"])
    assert line == "spectracli: error: --batch-fn file nope.py does not exist"


def test_a_cuda_device_without_a_gpu_says_so_once(monkeypatch):
    import torch

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    line = _error(["analyze", str(ROOT / "sample_models" / "digits_mlp.safetensors"),
                   "--device", "cuda"])
    assert line == ("spectracli: error: --device 'cuda' was asked for but torch sees no GPU "
                    "(a CPU-only torch build, or no NVIDIA driver)")


def test_numpys_allow_pickle_is_not_taken_for_a_flag(tmp_path):
    """Only keywords that are options of a command become flags: a hint naming numpy's
    allow_pickle=False became a nonexistent --allow-pickle (the flag is --trust-pickle)."""
    import numpy as np

    from spectracli.cli.common import in_cli_words
    from spectracli.errors import SpectraError

    path = tmp_path / "data.npz"
    np.savez(path, x=np.array([np.zeros(2), np.zeros(3)], dtype=object), y=np.zeros(2))
    line = _error(["hessian", "--model", MODEL, "--data", str(path)])
    assert "allow_pickle=False" in line and "--allow-pickle" not in line
    assert in_cli_words(SpectraError("x.pt runs code; pass trust_pickle=True only if")) == (
        "x.pt runs code; pass --trust-pickle only if")


def test_revision_messages_name_the_flag(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    sample = str(ROOT / "sample_models" / "digits_mlp.safetensors")
    line = _error(["analyze", sample, "--revision", "main"])
    assert line == (f"spectracli: error: --revision 'main' applies to Hugging Face ids, but "
                    f"{sample} is a local path")
    line = _error(["analyze", "org/name@v1", "--revision", "main"])
    assert line == ("spectracli: error: org/name@v1 carries @v1 but --revision 'main' was also "
                    "given: give one")


def test_report_on_a_checkpoint_quotes_each_command_whole():
    sample = "sample_models/digits_mlp.safetensors"
    line = _error(["report", sample])
    assert line == (f"spectracli: error: {sample} is a checkpoint; 'spectracli report' reads a "
                    f"saved JSON report. Run 'spectracli analyze {sample}' instead (or save a "
                    f"report first: 'spectracli analyze {sample} -f json -o report.json')")
    assert "'spectracli analyze sample_models/digits_mlp.safetensors --plots plots/' instead" in (
        _error(["plot", sample]))


def test_report_compare_takes_a_saved_reports_path_and_says_what_to_pass(tmp_path):
    import pytest

    import spectracli
    from spectracli.errors import SpectraError

    sample = ROOT / "sample_models" / "digits_mlp.safetensors"
    report = spectracli.analyze(sample, farms=False, fit="median")
    saved = tmp_path / "r.json"
    saved.write_text(report.to_json())
    by_path = report.compare(str(saved)).to_dict()
    assert by_path == report.compare(report).to_dict() and by_path["n_common"] == 3
    with pytest.raises(SpectraError) as info:
        report.compare(str(sample))
    assert "not a saved JSON report; pass an AnalysisReport" in str(info.value)
    assert f"spectracli.analyze({str(sample)!r})" in str(info.value)
    with pytest.raises(SpectraError, match="B is an int: pass an AnalysisReport"):
        report.compare(3)


def test_a_csv_baseline_suggests_a_command_that_works(tmp_path):
    sample = "sample_models/digits_mlp.safetensors"
    csv = tmp_path / "r.csv"
    csv.write_text("layer,metric,value\n")
    line = _error(["gate", sample, "--baseline", str(csv)])
    assert f"'spectracli baseline {csv}" not in line
    assert "write one from the checkpoint with 'spectracli baseline CHECKPOINT --output " in line
    line = _error(["gate", sample, "--baseline", sample])
    assert f"write one with 'spectracli baseline {sample} --output baseline.json'" in line


def test_md_is_markdown_for_every_format_option(tmp_path):
    sample = "sample_models/digits_mlp.safetensors"
    for spelling in (["-f", "md"], ["--format", "MD"], ["--format=md"], ["-fmd"]):
        res = runner.invoke(app, ["analyze", sample, "--no-farms", "--fit", "median",
                                  *spelling])
        assert res.exit_code == 0, res.output
        assert res.stdout.startswith("# spectracli weight spectra")
    saved = tmp_path / "r.json"
    runner.invoke(app, ["analyze", sample, "--no-farms", "-f", "json", "-o", str(saved)])
    res = runner.invoke(app, ["report", str(saved), "-f", "md"])
    assert res.exit_code == 0 and res.stdout.startswith("# spectracli weight spectra")
    res = runner.invoke(app, ["gate", str(saved), "--max", "sigma_max=1e9", "-f", "md"])
    assert res.exit_code == 0 and "spectracli gate passed" in res.stdout


def test_the_hessian_summary_names_which_as_the_flag():
    res = runner.invoke(app, ["hessian", "--model", MODEL, "--data", DATA, "-k", "1",
                              "--max-samples", "64", "--dtype", "float64"])
    assert res.exit_code == 0, res.output
    assert ("condition number lambda_max/lambda_min n/a: needs both ends of the spectrum: "
            "--which both, got largest") in res.stdout
