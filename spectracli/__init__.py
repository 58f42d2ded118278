"""spectracli: spectral diagnostics of neural networks.

Library entry points (the CLI is one client of these):

- ``spectracli.analyze.analyze_checkpoint``: checkpoint -> ``AnalysisReport`` of weight spectra.
- ``spectracli.spectral``: pure functions on tensors (ESD, FARMS, power-law fits, metrics).
- ``spectracli.hessian``: Hessian eigenpairs, trace and density of a model's loss.
"""

__version__ = "0.1.0"
