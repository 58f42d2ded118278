"""Library errors are standard exception types in library words; the CLI says them as flags."""

import pytest
from typer.testing import CliRunner

from spectracli.analyze import AnalyzeConfig, analyze_checkpoint
from spectracli.cli.app import app
from spectracli.cli.common import flag_for, in_cli_words
from spectracli.errors import CheckpointError, SpectraError

SAMPLE = "sample_models/digits_mlp.safetensors"


def test_library_errors_are_value_errors_naming_the_parameter():
    with pytest.raises(ValueError, match=r"^fit must be one of 'ks', 'median', 'peak'; got 'KS'$"):
        AnalyzeConfig(fit="KS").validate()
    with pytest.raises(ValueError, match=r"^min_size must be at least 1, got 0$"):
        AnalyzeConfig(min_size=0).validate()


def test_a_missing_checkpoint_is_a_file_not_found_error(tmp_path):
    with pytest.raises(FileNotFoundError) as info:
        analyze_checkpoint(tmp_path / "nope.safetensors")
    assert isinstance(info.value, CheckpointError) and isinstance(info.value, ValueError)
    assert "nope.safetensors does not exist" in str(info.value)


def test_the_cli_writes_the_named_parameters_as_its_flags():
    assert in_cli_words(SpectraError("k must be >= 1, got 0")) == "--top-k must be >= 1, got 0"
    exc = SpectraError("FARMS needs farms_window >= 2 (farms=False skips it); trust_pickle=True",
                       params=("farms_window", "farms", "trust_pickle"))
    assert in_cli_words(exc) == (
        "FARMS needs --farms-window >= 2 (--no-farms skips it); --trust-pickle")
    # only the declared parameters, as whole words: other text is left alone
    exc = SpectraError("the loss is not deterministic; fit failed", params=("fit",))
    assert in_cli_words(exc) == "the loss is not deterministic; --fit failed"
    assert in_cli_words(SpectraError("the model must be an nn.Module")) == (
        "the model must be an nn.Module")
    assert flag_for("store_esd", False) == "--no-esd" and flag_for("min_tail") == "--min-tail"
    assert in_cli_words(CheckpointError("x.pt runs code; pass trust_pickle=True only if")) == (
        "x.pt runs code; pass --trust-pickle only if")


@pytest.mark.parametrize(
    "args, line",
    [
        (["--fit", "best"],  # (choices are case-insensitive on the command line: KS is ks)
         "spectracli: error: analyze: --fit must be one of 'ks', 'median', 'peak'; got 'best' "
         "(see 'spectracli analyze --help')"),
        (["--min-tail", "1"], "spectracli: error: --min-tail must be at least 2, got 1"),
        (["--farms-steps", "0"], "spectracli: error: FARMS needs --farms-window >= 2, "
                                 "--farms-steps >= 1 and a finite --farms-ratio > 0, "
                                 "got 2000, 0, 1.0"),
    ],
)
def test_cli_error_lines_name_flags(args, line):
    res = CliRunner().invoke(app, ["analyze", SAMPLE, *args])
    assert res.exit_code == 2
    assert res.stderr.strip() == line
