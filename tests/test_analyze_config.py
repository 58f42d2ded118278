"""AnalyzeConfig is the one definition of the analyze settings: the library's validate() and the
config-file validation (gate/rules.validate_analyze) read the same fields, so they agree on
every key, every choice and every limit; and the settings module imports neither torch nor numpy.
"""

from __future__ import annotations

import dataclasses
import subprocess
import sys
from pathlib import Path

import pytest

from spectracli.analyze_config import AnalyzeConfig, Setting, file_settings
from spectracli.errors import SpectraError
from spectracli.gate.rules import ConfigError, validate_analyze

DOCS = Path(__file__).resolve().parents[1] / "docs"


def test_settings_module_imports_neither_torch_nor_numpy():
    code = ("import sys, spectracli.analyze_config; "
            "print(sorted(m for m in ('torch', 'numpy') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_analyze_re_exports_the_one_dataclass():
    import spectracli.analyze

    assert spectracli.analyze.AnalyzeConfig is AnalyzeConfig


def test_every_field_carries_a_setting_and_files_leave_out_the_command_line_ones():
    specs = {f.name: f.metadata["setting"] for f in dataclasses.fields(AnalyzeConfig)}
    assert all(isinstance(s, Setting) for s in specs.values())
    assert set(specs) - set(file_settings()) == {"trust_pickle", "store_esd"}


def test_choice_settings_take_their_values_from_the_options_enums():
    choices = {k: s.choice for k, s in file_settings().items() if s.choice is not None}
    assert set(choices) == {"fit", "farms_grid", "farms_precision", "dtype", "conv_view"}
    for key, choice in choices.items():
        for value in choice.values():
            # Files accept any case and store the library's spelling, which validate() takes.
            assert validate_analyze({key: value.upper()}, "f") == {key: value}
            AnalyzeConfig(**{key: value}).validate()
        with pytest.raises(ConfigError, match=f"key '{key}': expected \"{choice.values()[0]}\""):
            validate_analyze({key: "nope"}, "f")
        with pytest.raises(SpectraError, match=f"^{key} must be one of"):
            AnalyzeConfig(**{key: "nope"}).validate()


# Values just inside and just outside each limit: the library and a file agree on every one.
LIMITS = {
    "min_tail": ([2, 10], [1, 0]),
    "farms_budget": ([0.5, 2, 1e300], [0, -1.0, float("inf"), float("nan")]),
    "min_size": ([1, 3], [0, -2]),
    "threads": ([1, 4], [0]),
    "ci_level": ([0.5, 0.99], [0, 1, 1.5]),
    "ci_resamples": ([0, 10, 200], [1, 9]),
    "farms_window": ([2, 64], [0, 1]),
    "farms_steps": ([1, 5], [0]),
    "farms_ratio": ([0.5, 1], [0, -1, float("inf"), float("nan")]),
}


@pytest.mark.parametrize("key", sorted(LIMITS))
def test_library_and_config_files_agree_on_every_limit(key):
    good, bad = LIMITS[key]
    for value in good:
        AnalyzeConfig(**{key: value}).validate()
        assert validate_analyze({key: value}, "f") == {key: value}
    for value in bad:
        with pytest.raises(SpectraError) as lib:
            AnalyzeConfig(**{key: value}).validate()
        with pytest.raises(ConfigError, match="^f") as cfg:
            validate_analyze({key: value}, "f")
        assert key in str(lib.value) and key in str(cfg.value)


def test_a_file_is_refused_by_the_library_rule_when_it_is_read():
    # farms_window = 1 is a positive integer but FARMS needs a 2-wide window: the file is
    # refused on reading with the library's words, not later when analyze runs.
    with pytest.raises(ConfigError, match=r"^cfg.toml: FARMS needs farms_window >= 2"):
        validate_analyze({"farms_window": 1}, "cfg.toml")
    with pytest.raises(ConfigError, match="key 'farms': expected true or false, got 1"):
        validate_analyze({"farms": 1}, "f")
    with pytest.raises(ConfigError, match="key 'min_tail': expected an integer >= 2, got True"):
        validate_analyze({"min_tail": True}, "f")


def test_every_file_setting_is_documented_in_the_ci_reference():
    text = (DOCS / "ci.md").read_text()
    section = text[text.index("### `[analyze]` settings"):]
    section = section[: section.index("\n## ")]
    missing = [key for key in file_settings() if f"`{key}`" not in section]
    assert not missing, missing
