"""A Hugging Face ``TrainerCallback`` that runs a :class:`SpectralMonitor` every N steps.

Example::

    from spectracli.monitor import SpectralTrainerCallback
    trainer = Trainer(model=model, args=args, train_dataset=ds,
                      callbacks=[SpectralTrainerCallback(every=100, include=["*attn*"])])

Measures after the optimizer step whose ``state.global_step`` is a multiple of ``every`` (on the
main process only), and once more at the end of training. ``log_dir`` defaults to
``<output_dir>/spectracli``.
"""

from __future__ import annotations

from typing import Any

from spectracli.errors import SpectraError

try:
    from transformers import TrainerCallback
except ImportError:  # pragma: no cover - exercised without transformers installed
    raise SpectraError(
        "SpectralTrainerCallback needs transformers: pip install 'spectracli[hf]'"
    ) from None

from spectracli.monitor.core import SpectralMonitor


class SpectralTrainerCallback(TrainerCallback):
    """``SpectralMonitor`` inside ``transformers.Trainer``.

    Same keyword arguments, without ``model``: the Trainer's model is measured.
    """

    def __init__(self, every: int = 100, *, log_dir: str | None = None, **options: Any) -> None:
        self.every = every
        self.log_dir = log_dir
        self.options = options
        self.monitor: SpectralMonitor | None = None

    def _monitor(self, args: Any) -> SpectralMonitor:
        if self.monitor is None:
            log_dir = self.log_dir or f"{args.output_dir}/spectracli"
            self.monitor = SpectralMonitor(every=self.every, log_dir=log_dir, **self.options)
        return self.monitor

    def on_train_begin(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        """Open the monitor on the main process (logs: log_dir, else output_dir/spectracli)."""
        if state.is_world_process_zero:
            self._monitor(args)

    def on_step_end(self, args: Any, state: Any, control: Any, model: Any = None,
                    **kwargs: Any) -> None:
        """Measure every ``every`` global steps (main process only)."""
        if state.is_world_process_zero and model is not None:
            self._monitor(args).step(state.global_step, model=_unwrap(model))

    def on_train_end(self, args: Any, state: Any, control: Any, model: Any = None,
                     **kwargs: Any) -> None:
        """Measure the last step if it was not measured, then close the TensorBoard writer."""
        if not state.is_world_process_zero or model is None:
            return
        monitor = self._monitor(args)
        if monitor.last_step != state.global_step:
            monitor.measure(state.global_step, model=_unwrap(model))
        monitor.close()


def _unwrap(model: Any) -> Any:
    """The module itself under DataParallel/DistributedDataParallel wrappers."""
    while hasattr(model, "module") and hasattr(model.module, "state_dict"):
        model = model.module
    return model
