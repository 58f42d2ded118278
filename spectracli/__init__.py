"""spectracli: spectral diagnostics of neural networks.

Python entry points (the CLI is one client of these; walk-through in docs/python.md):

- ``spectracli.analyze(obj, **options)``: weight spectra of a model object, a state dict, a
  checkpoint path or a Hugging Face id -> ``AnalysisReport`` (``to_pandas()``, ``plot()``...).
- ``spectracli.hessian(model, data, loss, **options)``: Hessian eigenpairs, trace and density of
  a model's loss -> ``HessianResult``.
- ``spectracli.spectral``: pure functions on tensors (ESD, FARMS, power-law fits, metrics).

``spectracli.analyze`` and ``spectracli.hessian`` are also the modules of those names, made
callable (see ``spectracli/api.py`` for why); ``spectracli.api.analyze`` and
``spectracli.api.hessian`` are the same entry points as plain functions.
"""

import importlib
from typing import Any

__version__ = "0.1.0"
__all__ = ["__version__", "analyze", "hessian"]


def __getattr__(name: str) -> Any:
    # Imported on first use, so that `import spectracli` (and the CLI's start) stays cheap.
    if name in ("analyze", "hessian"):
        return importlib.import_module(f"spectracli.{name}")
    raise AttributeError(f"module 'spectracli' has no attribute {name!r}")
