"""A Lightning ``Callback`` that runs a :class:`SpectralMonitor` every N steps.

Example::

    from spectracli.monitor import SpectralLightningCallback
    trainer = L.Trainer(max_steps=1000, callbacks=[SpectralLightningCallback(every=100)])

Measures after the training batch whose optimizer step ``trainer.global_step`` is a multiple of
``every`` (on global rank 0 only; a step repeated by gradient accumulation is measured once),
and once more at the end of training. ``log_dir`` defaults to
``<trainer.default_root_dir>/spectracli``. Works with ``lightning`` and with the older
``pytorch_lightning`` package.
"""

from __future__ import annotations

from typing import Any

from spectracli.errors import SpectraError

try:
    from lightning.pytorch import Callback
except ImportError:  # pragma: no cover - exercised without lightning installed
    try:
        from pytorch_lightning import Callback
    except ImportError:
        raise SpectraError(
            "SpectralLightningCallback needs lightning: pip install 'spectracli[lightning]'"
        ) from None

from spectracli.monitor.core import SpectralMonitor


class SpectralLightningCallback(Callback):
    """``SpectralMonitor`` inside a Lightning ``Trainer``.

    Same keyword arguments, without ``model``: the LightningModule is measured.
    """

    def __init__(self, every: int = 100, *, log_dir: str | None = None, **options: Any) -> None:
        super().__init__()
        self.every = every
        self.log_dir = log_dir
        self.options = options
        self.monitor: SpectralMonitor | None = None

    def _monitor(self, trainer: Any) -> SpectralMonitor:
        if self.monitor is None:
            log_dir = self.log_dir or f"{trainer.default_root_dir}/spectracli"
            self.monitor = SpectralMonitor(every=self.every, log_dir=log_dir, **self.options)
        return self.monitor

    def on_train_start(self, trainer: Any, pl_module: Any) -> None:
        """Open the monitor on rank 0 (logs: log_dir, else default_root_dir/spectracli)."""
        if trainer.is_global_zero:
            self._monitor(trainer)

    def on_train_batch_end(self, trainer: Any, pl_module: Any, outputs: Any, batch: Any,
                           batch_idx: int) -> None:
        """Measure every ``every`` global steps (global rank 0 only)."""
        if trainer.is_global_zero and trainer.global_step > 0:
            self._monitor(trainer).step(trainer.global_step, model=pl_module)

    def on_train_end(self, trainer: Any, pl_module: Any) -> None:
        """Measure the last step if it was not measured, then close the TensorBoard writer."""
        if not trainer.is_global_zero:
            return
        monitor = self._monitor(trainer)
        if monitor.last_step != trainer.global_step:
            monitor.measure(trainer.global_step, model=pl_module)
        monitor.close()
