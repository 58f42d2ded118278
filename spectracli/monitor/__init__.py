"""Training callbacks: the per-step results of ``spectracli track`` from a live run.

- :class:`SpectralMonitor` for plain training loops (no extra dependency);
- ``SpectralTrainerCallback``: a Hugging Face ``transformers.TrainerCallback`` (needs
  ``transformers``; imported only when asked for);
- ``SpectralLightningCallback``: a Lightning ``Callback`` (needs ``lightning`` or
  ``pytorch_lightning``; imported only when asked for).

All three log to ``steps.jsonl``, ``metrics.csv`` and ``track.json`` in their ``log_dir``, and to
TensorBoard when it is installed; see docs/tracking.md.
"""

from __future__ import annotations

from typing import Any

from spectracli.monitor.core import SpectralMonitor, analyze_module

__all__ = [
    "SpectralLightningCallback",
    "SpectralMonitor",
    "SpectralTrainerCallback",
    "analyze_module",
]


def __getattr__(name: str) -> Any:
    if name == "SpectralTrainerCallback":
        from spectracli.monitor.hf import SpectralTrainerCallback

        return SpectralTrainerCallback
    if name == "SpectralLightningCallback":
        from spectracli.monitor.lightning import SpectralLightningCallback

        return SpectralLightningCallback
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
