"""``SpectralMonitor``: the per-step results of ``spectracli track``, taken from a live model.

Every ``every`` optimizer steps the monitor analyses the model's weights as ``spectracli
analyze`` would analyse its saved checkpoint (optionally only some layers) and, when given data,
the top-k Hessian eigenpairs, each Lanczos solve warm-started from the previous measurement's
Ritz vectors. Each measurement is one step record of a track report and is logged:

- ``LOG_DIR/steps.jsonl``: one JSON object per measured step (always);
- ``LOG_DIR/metrics.csv``: long format ``step,layer,metric,value`` (always);
- ``LOG_DIR/track.json``: the whole track report so far, rewritten atomically after each
  measurement, so ``spectracli report LOG_DIR/track.json -f html`` renders the run;
- TensorBoard scalars ``spectracli/<layer>/<metric>`` in ``LOG_DIR/tensorboard`` when the
  ``tensorboard`` package is installed (``tensorboard=True`` requires it, ``False`` turns it off).

Example (a plain loop)::

    monitor = SpectralMonitor(model, every=100, log_dir="runs/spectra",
                              hessian=HessianConfig(k=3), data=(x_sample, y_sample))
    for step, (x, y) in enumerate(loader, 1):
        ...; optimizer.step()
        monitor.step(step)
    monitor.close()
"""

from __future__ import annotations

import csv
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from spectracli.errors import SpectraError

# Per-layer metrics written to TensorBoard (the CSV and JSONL carry every metric).
TENSORBOARD_METRICS = ("alpha", "farms.alpha", "sigma_max", "stable_rank", "condition_number")


def _tensorboard_available() -> bool:
    import importlib.util

    return importlib.util.find_spec("tensorboard") is not None


class SpectralMonitor:
    """Weight spectra (and optionally the Hessian) of a model during training, every N steps.

    Args:
        model: the ``nn.Module`` being trained (or None, and pass it to :meth:`step`).
        every: measure when ``step % every == 0`` (steps counted from 1 when :meth:`step` is
            called without one).
        log_dir: where the logs go (created; a new monitor starts new files).
        analyze: an ``AnalyzeConfig`` (default: its defaults without stored eigenvalues).
        include, exclude: layer-name globs, the cheap way to choose the cost (added to
            ``analyze``'s).
        hessian: a ``HessianConfig`` (its ``k``, ``max_samples``, ``dtype`` set the cost), or None
            for no Hessian. Needs ``data``.
        data: ``(x, y)`` tensors, batches or a DataLoader for the Hessian (a fixed sample: the
            Hessian of the mean loss over it).
        loss: ``"cross_entropy"``, ``"mse"`` or a callable ``loss(outputs, targets)``.
        warm_start: start each Lanczos solve from the previous measurement's Ritz vectors.
        gradient: also report the gradient's fraction in the top-k eigenspace.
        tensorboard: True (required), False (off) or None (when installed).
        on_measure: called with each step record after it is logged.

    Raises:
        SpectraError: ``every < 1``, a Hessian without data, ``tensorboard=True`` without the
            package.
    """

    def __init__(
        self,
        model: Any = None,
        every: int = 100,
        *,
        log_dir: str | Path = "spectracli-monitor",
        analyze: Any = None,
        include: Sequence[str] = (),
        exclude: Sequence[str] = (),
        hessian: Any = None,
        data: Any = None,
        loss: Any = "cross_entropy",
        warm_start: bool = True,
        gradient: bool = False,
        tensorboard: bool | None = None,
        on_measure: Callable[[dict[str, Any]], None] | None = None,
    ) -> None:
        from spectracli.analyze import AnalyzeConfig

        if not isinstance(every, int) or every < 1:
            raise SpectraError(f"every must be a positive integer, got {every!r}")
        if hessian is not None and data is None:
            raise SpectraError("the Hessian needs data: pass data=(x, y) or a DataLoader")
        if tensorboard and not _tensorboard_available():
            raise SpectraError("tensorboard=True needs the tensorboard package: "
                               "pip install tensorboard")
        self.model = model
        self.every = every
        self.log_dir = Path(log_dir)
        config = analyze or AnalyzeConfig(store_esd=False)
        config.include = (*config.include, *include)
        config.exclude = (*config.exclude, *exclude)
        config.validate()
        self.analyze_config = config
        self.records: list[dict[str, Any]] = []
        self._count = 0
        self.last_step: int | None = None
        self._files_started = False
        self._tb_wanted = _tensorboard_available() if tensorboard is None else tensorboard
        self._writer: Any = None
        self.on_measure = on_measure
        self.tracker = None
        if hessian is not None:
            from spectracli.track import HessianTracker, TrackConfig

            hessian.validate()
            self.tracker = HessianTracker(TrackConfig(
                hessian=hessian, data=data, loss=loss, warm_start=warm_start, gradient=gradient,
            ))

    # -- the loop side --------------------------------------------------------------------------

    def step(self, step: int | None = None, model: Any = None) -> dict[str, Any] | None:
        """Call once per optimizer step; measures (and returns the record) every ``every`` steps.

        A step already measured is not measured again (gradient accumulation repeats steps).

        Args:
            step: the optimizer step (None: count calls, 1, 2, ...).
            model: the module to measure (default: the one given at construction).

        Returns:
            The step's record when it was measured, else None.
        """
        if step is None:
            self._count += 1
            step = self._count
        if step % self.every != 0 or step == self.last_step:
            return None
        return self.measure(step, model)

    def measure(self, step: int, model: Any = None) -> dict[str, Any]:
        """Analyse the model now and log the record of ``step``.

        Returns:
            The record as written to ``steps.jsonl``: the step, the analyze report's source,
            layers, skipped tensors and summary, and the Hessian report when the monitor has
            one (else None).

        Raises:
            SpectraError: no model was given, here or at construction.
        """
        model = model if model is not None else self.model
        if model is None:
            raise SpectraError("no model: pass one to SpectralMonitor(...) or to step()/measure()")
        report = analyze_module(model, self.analyze_config)
        record: dict[str, Any] = {
            "step": int(step),
            "source": dict(report["source"]),
            "layers": report["layers"],
            "skipped": report["skipped"],
            "summary": report["summary"],
            "hessian": None,
        }
        if self.tracker is not None:
            self._sync_device(model)
            was_training = getattr(model, "training", False)
            try:
                record["hessian"] = self.tracker.measure(model, source={"step": int(step)})
            finally:
                model.train(was_training)
        self.last_step = int(step)
        self.records.append(record)
        self._log(record)
        if self.on_measure is not None:
            self.on_measure(record)
        return record

    def _sync_device(self, model: Any) -> None:
        """The Hessian runs where the model lives."""
        try:
            device = str(next(model.parameters()).device)
        except StopIteration:
            return
        if self.tracker is not None:
            self.tracker.config.hessian.device = device

    # -- the report -----------------------------------------------------------------------------

    def report(self) -> dict[str, Any]:
        """The measurements so far as a track report dict (``kind: "track"``)."""
        from spectracli.device import resolve_device
        from spectracli.track import TrackReport, _timestamp

        settings = {
            "analyze": self.analyze_config.settings(
                str(resolve_device(self.analyze_config.device))),
            "glob": None,
            "hessian": self.tracker.settings() if self.tracker is not None else None,
            "monitor": {"every": self.every},
        }
        return TrackReport(
            source={"run": str(self.log_dir), "n_checkpoints": len(self.records),
                    "cache": {"dir": None, "hits": 0, "misses": None, "errors": []},
                    "live": True},
            settings=settings,
            steps=list(self.records),
            ignored=[],
            timing={"total_s": 0.0},
            created=_timestamp(),
        ).to_dict()

    # -- logging --------------------------------------------------------------------------------

    def _log(self, record: dict[str, Any]) -> None:
        from spectracli.fileio import write_text_atomic
        from spectracli.report.track import long_rows
        from spectracli.results import dumps_report

        try:
            self.log_dir.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise SpectraError(f"cannot create log_dir {self.log_dir}: {exc.strerror}") from None
        mode = "a" if self._files_started else "w"
        rows = long_rows({"steps": [record]})
        with open(self.log_dir / "steps.jsonl", mode, encoding="utf-8") as fh:
            fh.write(dumps_report(record, indent=None) + "\n")
        with open(self.log_dir / "metrics.csv", mode, encoding="utf-8", newline="") as fh:
            writer = csv.writer(fh, lineterminator="\n")
            if mode == "w":
                writer.writerow(["step", "layer", "metric", "value"])
            writer.writerows(rows)
        self._files_started = True
        write_text_atomic(self.log_dir / "track.json", dumps_report(self.report()))
        if self._tb_wanted:
            self._log_tensorboard(record["step"], rows)

    def _log_tensorboard(self, step: int, rows: list[tuple[int, str, str, Any]]) -> None:
        import math

        if self._writer is None:
            from torch.utils.tensorboard import SummaryWriter

            self._writer = SummaryWriter(log_dir=str(self.log_dir / "tensorboard"))
        for _, layer, metric, value in rows:
            if layer not in ("summary", "hessian") and metric not in TENSORBOARD_METRICS:
                continue
            if isinstance(value, bool) or not isinstance(value, (int, float)):
                continue
            if math.isfinite(value):
                self._writer.add_scalar(f"spectracli/{layer}/{metric}", value, step)
        self._writer.flush()

    def close(self) -> None:
        """Flush and close the TensorBoard writer (the other files are closed after each write)."""
        if self._writer is not None:
            self._writer.close()
            self._writer = None


def analyze_module(model: Any, config: Any) -> dict[str, Any]:
    """The analyze report dict of a live module's weights.

    The same as ``analyze`` gives for its saved state dict
    (:func:`spectracli.io.memory.memory_checkpoint`: nothing is copied or written).

    Returns:
        The report dict (``kind: "analyze"``).
    """
    from spectracli.analyze import analyze_checkpoint
    from spectracli.io.memory import memory_checkpoint

    return analyze_checkpoint(memory_checkpoint(model), config).to_dict()
