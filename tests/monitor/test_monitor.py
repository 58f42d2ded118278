"""SpectralMonitor in a plain loop, a real Hugging Face Trainer and a real Lightning Trainer.

Truths: each record equals ``analyze_checkpoint`` of the model's state saved at that step; the
warm-started Hessian equals a cold solve of the same weights to 1e-8; the logs hold the records.
"""

from __future__ import annotations

import csv
import json
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file

from spectracli.analyze import AnalyzeConfig, analyze_checkpoint
from spectracli.errors import SpectraError
from spectracli.hessian import HessianConfig
from spectracli.monitor import SpectralMonitor
from spectracli.results import load_report

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "sample_models"))
from digits import build_mlp, load_digits  # noqa: E402

FAST = {"fit": "median", "farms": False, "store_esd": False}
HESSIAN = {"k": 2, "dtype": "float64", "tol": 1e-10, "max_samples": 128}


def _saver(model, folder: Path, saved: dict):
    def on_measure(record):
        path = folder / f"step{record['step']}.safetensors"
        save_file({k: v.detach().clone().contiguous() for k, v in model.state_dict().items()},
                  str(path))
        saved[record["step"]] = path
    return on_measure


@pytest.fixture(scope="module")
def plain_loop(tmp_path_factory, one_thread):
    tmp = tmp_path_factory.mktemp("loop")
    torch.manual_seed(0)
    model = build_mlp()
    x, y = load_digits("train")
    saved: dict[int, Path] = {}
    monitor = SpectralMonitor(
        model, every=10, log_dir=tmp / "logs", analyze=AnalyzeConfig(**FAST),
        exclude=["head.*"], hessian=HessianConfig(**HESSIAN), data=(x, y), gradient=True,
        on_measure=_saver(model, tmp, saved),
    )
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    gen = torch.Generator().manual_seed(0)
    modes = []
    for _ in range(30):
        idx = torch.randint(0, len(y), (64,), generator=gen)
        opt.zero_grad()
        torch.nn.functional.cross_entropy(model(x[idx]), y[idx]).backward()
        opt.step()
        monitor.step()
        modes.append(model.training)
    monitor.close()
    return monitor, saved, tmp, modes


def test_plain_loop_records_equal_analysing_the_saved_weights(plain_loop):
    monitor, saved, _, modes = plain_loop
    assert [r["step"] for r in monitor.records] == [10, 20, 30]
    assert all(modes)  # the Hessian's eval mode did not leak into training
    for record in monitor.records:
        alone = analyze_checkpoint(saved[record["step"]], AnalyzeConfig(
            **FAST, exclude=("head.*",))).to_dict()
        assert record["layers"] == alone["layers"]
        assert record["summary"] == alone["summary"]
        assert [layer["name"] for layer in record["layers"]] == ["fc1.weight", "fc2.weight"]


def test_plain_loop_hessian_is_warm_started_and_equals_a_cold_solve(plain_loop):
    from spectracli.hessian import analyze
    from spectracli.hessian.loading import apply_state_dict
    from spectracli.io import load_state_dict

    monitor, saved, _, _ = plain_loop
    hs = [r["hessian"] for r in monitor.records]
    assert [h["warm_started"] for h in hs] == [False, True, True]
    assert hs[0]["overlap"] is None and len(hs[2]["overlap"]) == 2
    assert all(0.0 <= h["gradient_fraction"] <= 1.0 for h in hs)
    x, y = load_digits("train")
    for record in monitor.records[1:]:
        model = build_mlp()
        apply_state_dict(model, load_state_dict(saved[record["step"]]), "test")
        cold = analyze(model, (x, y), "cross_entropy", HessianConfig(**HESSIAN))
        assert record["hessian"]["eigenvalues"] == pytest.approx(cold.eigenvalues, rel=1e-8)


def test_plain_loop_logs(plain_loop):
    monitor, _, tmp, _ = plain_loop
    logs = tmp / "logs"
    lines = (logs / "steps.jsonl").read_text().splitlines()
    assert [json.loads(line)["step"] for line in lines] == [10, 20, 30]
    rows = list(csv.DictReader((logs / "metrics.csv").open()))
    alpha = {(int(r["step"]), r["layer"]): float(r["value"]) for r in rows
             if r["metric"] == "alpha"}
    assert alpha[(20, "fc2.weight")] == monitor.records[1]["layers"][1]["alpha"]
    lam = {int(r["step"]): float(r["value"]) for r in rows
           if (r["layer"], r["metric"]) == ("hessian", "lambda_max")}
    assert lam == {r["step"]: r["hessian"]["lambda_max"] for r in monitor.records}
    report = load_report(logs / "track.json")
    assert report["kind"] == "track" and [s["step"] for s in report["steps"]] == [10, 20, 30]
    events = list((logs / "tensorboard").glob("events.out.tfevents.*"))
    assert events, "tensorboard is installed by the dev extra: its event file must exist"
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    acc = EventAccumulator(str(logs / "tensorboard"))
    acc.Reload()
    scalars = acc.Scalars("spectracli/fc1.weight/alpha")
    assert [s.step for s in scalars] == [10, 20, 30]
    assert [s.value for s in scalars] == pytest.approx(
        [r["layers"][0]["alpha"] for r in monitor.records], rel=1e-6)  # stored as float32


def test_monitor_bad_arguments(tmp_path):
    with pytest.raises(SpectraError, match="every must be a positive integer"):
        SpectralMonitor(build_mlp(), every=0)
    with pytest.raises(SpectraError, match="the Hessian needs data"):
        SpectralMonitor(build_mlp(), hessian=HessianConfig())
    with pytest.raises(SpectraError, match="no model"):
        SpectralMonitor(every=1, log_dir=tmp_path).step(1)


# -- Hugging Face Trainer ------------------------------------------------------------------------


class _HFModel(torch.nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.fc1 = torch.nn.Linear(64, 32)
        self.fc2 = torch.nn.Linear(32, 10)

    def forward(self, x, labels=None):
        logits = self.fc2(torch.relu(self.fc1(x)))
        out = {"logits": logits}
        if labels is not None:
            out["loss"] = torch.nn.functional.cross_entropy(logits, labels)
        return out


def test_hugging_face_trainer_callback(tmp_path):
    pytest.importorskip("transformers")
    pytest.importorskip("accelerate")
    from transformers import Trainer, TrainingArguments

    from spectracli.monitor import SpectralTrainerCallback

    x, y = load_digits("train")
    ds = [{"x": x[i], "labels": int(y[i])} for i in range(128)]
    torch.manual_seed(0)
    model = _HFModel()
    saved: dict[int, Path] = {}
    callback = SpectralTrainerCallback(every=2, analyze=AnalyzeConfig(**FAST),
                                       on_measure=_saver(model, tmp_path, saved))
    args = TrainingArguments(output_dir=str(tmp_path / "out"), max_steps=5,
                             per_device_train_batch_size=16, report_to=[], save_strategy="steps",
                             save_steps=2, use_cpu=True, logging_strategy="no",
                             disable_tqdm=True, seed=0)
    Trainer(model=model, args=args, train_dataset=ds, callbacks=[callback]).train()
    records = callback.monitor.records
    assert [r["step"] for r in records] == [2, 4, 5]  # every 2 steps, and the end of training
    for record in records:
        alone = analyze_checkpoint(saved[record["step"]], AnalyzeConfig(**FAST)).to_dict()
        assert record["layers"] == alone["layers"]
    assert records[0]["layers"][0]["sigma_max"] != records[-1]["layers"][0]["sigma_max"]
    steps = (tmp_path / "out" / "spectracli" / "steps.jsonl").read_text().splitlines()
    assert len(steps) == 3
    # the Trainer's own checkpoint-<step>/ folders, tracked afterwards, give the same records
    from spectracli.track import TrackConfig, track_run

    tracked = track_run(tmp_path / "out", TrackConfig(analyze=AnalyzeConfig(**FAST),
                                                      cache=False)).to_dict()
    assert [s["step"] for s in tracked["steps"]] == [2, 4, 5]
    for step, record in zip(tracked["steps"], records, strict=True):
        assert step["layers"] == record["layers"]


# -- Lightning ------------------------------------------------------------------------------------


def test_lightning_trainer_callback(tmp_path):
    L = pytest.importorskip("lightning")
    from spectracli.monitor import SpectralLightningCallback

    class Module(L.LightningModule):
        def __init__(self) -> None:
            super().__init__()
            self.fc1 = torch.nn.Linear(64, 32)
            self.fc2 = torch.nn.Linear(32, 10)

        def forward(self, x):
            return self.fc2(torch.relu(self.fc1(x)))

        def training_step(self, batch, batch_idx):
            xb, yb = batch
            return torch.nn.functional.cross_entropy(self(xb), yb)

        def configure_optimizers(self):
            return torch.optim.SGD(self.parameters(), lr=0.1)

    x, y = load_digits("train")
    loader = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(x[:256], y[:256]),
                                         batch_size=16)
    torch.manual_seed(0)
    module = Module()
    saved: dict[int, Path] = {}
    callback = SpectralLightningCallback(
        every=2, analyze=AnalyzeConfig(**FAST), hessian=HessianConfig(**HESSIAN),
        data=(x[:128], y[:128]), on_measure=_saver(module, tmp_path, saved),
    )
    every_2 = L.pytorch.callbacks.ModelCheckpoint(
        dirpath=tmp_path / "ckpts", every_n_train_steps=2, save_top_k=-1)
    trainer = L.Trainer(max_steps=4, accumulate_grad_batches=2, callbacks=[callback, every_2],
                        default_root_dir=str(tmp_path), logger=False,
                        enable_progress_bar=False, enable_model_summary=False,
                        accelerator="cpu", devices=1)
    trainer.fit(module, loader)
    records = callback.monitor.records
    # 8 batches, 4 optimizer steps: each measured step once despite the accumulation
    assert [r["step"] for r in records] == [2, 4]
    for record in records:
        alone = analyze_checkpoint(saved[record["step"]], AnalyzeConfig(**FAST)).to_dict()
        assert record["layers"] == alone["layers"]
    assert [r["hessian"]["warm_started"] for r in records] == [False, True]
    assert module.training or not trainer.training
    assert load_report(tmp_path / "spectracli" / "track.json")["kind"] == "track"
    # Lightning's own epoch=E-step=S.ckpt files, tracked afterwards, give the same records
    from spectracli.track import TrackConfig, track_run

    names = sorted(p.name for p in (tmp_path / "ckpts").iterdir())
    assert names == ["epoch=0-step=2.ckpt", "epoch=0-step=4.ckpt"]
    tracked = track_run(tmp_path / "ckpts", TrackConfig(analyze=AnalyzeConfig(**FAST),
                                                        cache=False)).to_dict()
    assert [s["step"] for s in tracked["steps"]] == [2, 4]
    for step, record in zip(tracked["steps"], records, strict=True):
        assert step["layers"] == record["layers"]
