"""docs/python.md runs: every ```python block, in order, in one namespace, as a notebook would."""

import re
from pathlib import Path

import matplotlib

ROOT = Path(__file__).resolve().parents[1]
DOC = ROOT / "docs" / "python.md"


def code_blocks(text: str) -> list[str]:
    return re.findall(r"^```python\n(.*?)^```", text, flags=re.S | re.M)


def test_every_python_snippet_of_the_walk_through_runs(one_thread, tmp_path, monkeypatch, capsys):
    matplotlib.use("Agg")
    blocks = code_blocks(DOC.read_text(encoding="utf-8"))
    assert len(blocks) >= 8
    # From the repository root as the page says, but files written land in a temporary dir.
    (tmp_path / "sample_models").symlink_to(ROOT / "sample_models")
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr("sys.path", list(__import__("sys").path))
    namespace: dict = {"__name__": "__docs__"}
    for i, block in enumerate(blocks):
        exec(compile(block, f"{DOC}:block{i}", "exec"), namespace)
    out = capsys.readouterr().out
    assert "fit must be one of 'ks', 'median', 'peak'; got 'KS'" in out
    assert (tmp_path / "alpha_by_depth.png").stat().st_size > 0
    assert namespace["curvature"].eigenvalues[0] > 0
    assert len(namespace["both"]) == 3  # three matrices compared, trained vs untrained
