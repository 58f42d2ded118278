"""A training run's checkpoints -> per-step results: weight spectra and (optionally) the Hessian.

``track_run`` finds the checkpoints of a run, orders them by training step, runs ``analyze`` on
each (cached by the checkpoint's content, so a growing run only analyses its new checkpoints) and,
when a model and data are given, the top-k Hessian eigenpairs, each Lanczos solve warm-started
from the previous checkpoint's Ritz vectors (Li et al., NeurIPS 2024, amortized
eigendecomposition: eigenvectors drift slowly during training).

Per step it adds, beside the analyze and Hessian numbers:

- ``overlap``: the singular values of ``V_t^T V_{t+1}`` for the orthonormal top-k Ritz vectors of
  consecutive checkpoints (the cosines of the principal angles between the two eigenspaces;
  all 1 when the eigenspace did not move; Gur-Ari et al. 2018 track the same subspace);
- ``gradient_fraction``: ``||V^T g|| / ||g||`` for the full-dataset gradient ``g`` (the cosine of
  the angle between g and the top-k eigenspace; its square is the share of ||g||^2 there;
  Gur-Ari et al. 2018, "Gradient descent happens in a tiny subspace").

Step numbers come from the names (see :func:`step_of`). The report is the versioned JSON of
``kind: "track"`` (schema in docs/tracking.md).

Example::

    from spectracli.track import TrackConfig, track_run
    report = track_run("runs/exp1", TrackConfig())
    for step in report.to_dict()["steps"]:
        print(step["step"], step["summary"]["mean_alpha"])
"""

from __future__ import annotations

import datetime as _dt
import hashlib
import json
import math
import re
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from fnmatch import fnmatch
from pathlib import Path
from typing import Any

from spectracli import __version__
from spectracli.errors import CheckpointError, SpectraError

# progress(stage, index, total, label); stage: "hash" | "analyze" | "hessian"
TrackProgress = Callable[[str, int, int, str], None]

CHECKPOINT_SUFFIXES = (".safetensors", ".pt", ".pth", ".bin", ".ckpt", ".npz")
CACHE_DIRNAME = ".spectracli-cache"
_CHUNK = 4 * 2**20  # bytes read at a time when hashing

# Explicit step markers first: Lightning ``epoch=E-step=S``, ``step_100``, DeepSpeed
# ``global_step100``; then Hugging Face ``checkpoint-<step>``; then the last number in the name.
_STEP_MARKER = re.compile(r"step[=_-]?(\d+)", re.IGNORECASE)
_HF_CHECKPOINT = re.compile(r"^checkpoint-(\d+)$")
_NUMBER = re.compile(r"(\d+)")


def _stem(name: str) -> str:
    lower = name.lower()
    for suffix in (".safetensors.index.json", *CHECKPOINT_SUFFIXES):
        if lower.endswith(suffix):
            return name[: -len(suffix)]
    return name


def step_of(name: str) -> int | None:
    """The training step in a checkpoint's file or folder name, or None when it has no number.

    In order: an explicit ``step`` marker (``epoch=2-step=300.ckpt`` -> 300, ``step_40.pt`` -> 40,
    ``global_step7`` -> 7), Hugging Face's ``checkpoint-500`` -> 500, else the last number of the
    name without its extension (``model_0005.safetensors`` -> 5, ``epoch=3.ckpt`` -> 3).

    Returns:
        The step, or None.
    """
    stem = _stem(name)
    marker = _STEP_MARKER.findall(stem)
    if marker:
        return int(marker[-1])
    hf = _HF_CHECKPOINT.match(stem)
    if hf:
        return int(hf.group(1))
    numbers = _NUMBER.findall(stem)
    return int(numbers[-1]) if numbers else None


@dataclass
class RunCheckpoint:
    """One checkpoint of a run: its training step and where it is."""

    step: int
    path: Path


def _looks_like_checkpoint(path: Path) -> bool:
    return path.is_dir() or path.name.lower().endswith(CHECKPOINT_SUFFIXES)


def find_checkpoints(
    run: str | Path | Sequence[str | Path], glob: str | None = None
) -> tuple[list[RunCheckpoint], list[dict[str, str]]]:
    """The checkpoints of a run ordered by step, and the entries passed over (with why).

    ``run`` is a directory or a list of paths. In a directory, the entries (files with a
    checkpoint suffix, or folders) whose name matches ``glob`` (default: all; hidden names never)
    and carries a step number (:func:`step_of`) are the checkpoints. A list of paths is taken as
    given; when one of its names has no step number, the steps are the positions 0, 1, ... in
    the given order.

    Returns:
        ``(checkpoints, ignored)``: the checkpoints by ascending step, and ``{"path", "reason"}``
        for each entry passed over that a user may have meant as a checkpoint.

    Raises:
        SpectraError: ``run`` does not exist, holds no checkpoint, or two checkpoints share a
            step.
    """
    ignored: list[dict[str, str]] = []
    if isinstance(run, (str, Path)):
        root = Path(run)
        if not root.exists():
            raise SpectraError(f"run {root} does not exist")
        if root.is_dir():
            return _ordered(_scan_run_dir(root, glob, ignored)), ignored
        paths: list[Path] = [root]
    else:
        paths = [Path(p) for p in run]
    if not paths:
        raise SpectraError("no checkpoints given")
    for p in paths:
        if not p.exists():
            raise SpectraError(f"checkpoint {p} does not exist")
    steps = [step_of(p.name) for p in paths]
    if any(s is None for s in steps):
        return [RunCheckpoint(i, p) for i, p in enumerate(paths)], ignored
    return _ordered([RunCheckpoint(s, p) for s, p in zip(steps, paths, strict=True)]), ignored


def _scan_run_dir(root: Path, glob: str | None,
                  ignored: list[dict[str, str]]) -> list[RunCheckpoint]:
    """The checkpoints in a run directory (module doc of :func:`find_checkpoints`).

    Entries passed over that the user may have meant are appended to ``ignored``.

    Returns:
        The checkpoints in name order.

    Raises:
        SpectraError: no entry is a checkpoint with a step number.
    """
    found: list[RunCheckpoint] = []
    for entry in sorted(root.iterdir()):
        if entry.name.startswith(".") or (glob is not None and not fnmatch(entry.name, glob)):
            continue
        why = _passed_over(entry, glob)
        if why is not None:
            if why:
                ignored.append({"path": str(entry), "reason": why})
            continue
        found.append(RunCheckpoint(step_of(entry.name), entry))
    if not found:
        what = f"matching {glob!r} " if glob else ""
        raise SpectraError(
            f"run directory {root} holds no checkpoint {what}with a step number in its "
            "name (e.g. checkpoint-500/, epoch=1-step=300.ckpt, model_0005.safetensors)"
        )
    return found


def _passed_over(entry: Path, glob: str | None) -> str | None:
    """Why a run directory's entry is not a checkpoint.

    Returns:
        None for a checkpoint with a step number; else the reason, or ``""`` for an entry not
        worth mentioning (any non-checkpoint when no glob was given).
    """
    if entry.name.startswith("tmp-checkpoint-"):
        return "still being written (the Trainer renames tmp-checkpoint-<step> when done)"
    if not _looks_like_checkpoint(entry):
        return "not a checkpoint file" if glob is not None else ""
    if step_of(entry.name) is None:
        return "no step number in the name" if glob is not None or entry.is_file() else ""
    return None


def _ordered(found: list[RunCheckpoint]) -> list[RunCheckpoint]:
    found.sort(key=lambda c: c.step)
    for a, b in zip(found, found[1:], strict=False):
        if a.step == b.step:
            raise SpectraError(
                f"{a.path} and {b.path} both have step {a.step}; choose one with a glob "
                "or pass the checkpoints explicitly"
            )
    return found


def weight_files(path: str | Path) -> list[Path]:
    """The files a checkpoint's weights are read from, as the checkpoint readers choose them.

    Returns:
        A sharded index's shards; the one weights file of a directory; the file itself.
    """
    from spectracli.io._common import read_weight_map
    from spectracli.io.detect import detect

    fmt, file = detect(Path(path))
    if fmt not in ("safetensors-sharded", "pytorch-sharded"):
        return [file]
    try:  # the reader's own validation: no shard outside the index's directory is read
        shards = sorted(set(read_weight_map(file).values()))
    except ValueError:
        return [file]  # the reader reports what is wrong with it
    return [file, *(file.parent / s for s in shards)]


def content_hash(path: str | Path) -> str:
    """BLAKE2b (256-bit, hex) of a checkpoint's weight bytes, streamed in 4 MiB chunks.

    The key is the content, not the name or the modification time: a copied or renamed
    checkpoint hits the cache, a rewritten one misses it. For several files (shards), each
    file's name and size are hashed before its bytes.

    Returns:
        The 64-character hex digest.

    Raises:
        SpectraError: a file cannot be read.
    """
    digest = hashlib.blake2b(digest_size=32)
    files = weight_files(path)
    for f in files:
        try:
            with open(f, "rb") as fh:
                if len(files) > 1:
                    digest.update(f"{f.name}\0{f.stat().st_size}\0".encode())
                while chunk := fh.read(_CHUNK):
                    digest.update(chunk)
        except OSError as exc:
            raise SpectraError(f"cannot read {f}: {exc.strerror or exc}") from None
    return digest.hexdigest()


@dataclass
class TrackConfig:
    """What ``track_run`` computes per checkpoint.

    ``analyze``: the weight analysis (every option of ``spectracli analyze``). ``cache``: the
    cache directory (None: ``RUN/.spectracli-cache`` for a run directory, else beside the first
    checkpoint), ``False`` for no cache. ``hessian``: a ``HessianConfig`` to also compute the
    Hessian (then ``model`` and ``data`` are required). ``warm_start``: start each Lanczos solve
    from the previous step's Ritz vectors. ``gradient``: also report ``gradient_fraction``.
    ``hooks``: ``batch_fn`` / ``output_fn`` as :func:`spectracli.hessian.analyze` takes them.
    """

    glob: str | None = None
    analyze: Any = None  # AnalyzeConfig; None: its defaults
    cache: str | Path | bool | None = None
    hessian: Any = None  # HessianConfig | None
    model: Callable[[], Any] | None = None  # () -> nn.Module with the run's architecture
    data: Any = None  # (x, y), batches or a DataLoader (as spectracli.hessian.analyze takes)
    loss: Any = "cross_entropy"
    warm_start: bool = True
    gradient: bool = False
    trust_pickle: bool = False
    source: dict[str, Any] = field(default_factory=dict)  # how model/data/loss were named
    # batch_fn / output_fn hooks of spectracli.hessian.analyze (batches and outputs of other
    # shapes); None entries are left out
    hooks: dict[str, Any] = field(default_factory=dict)


@dataclass
class TrackReport:
    """The result of :func:`track_run`; ``to_dict()`` is the ``kind: "track"`` JSON report."""

    source: dict[str, Any]
    settings: dict[str, Any]
    steps: list[dict[str, Any]]
    ignored: list[dict[str, str]]
    timing: dict[str, float]
    created: str = ""
    tool_version: str = __version__

    def to_dict(self) -> dict[str, Any]:
        """The versioned JSON track report (docs/tracking.md)."""
        from spectracli.results import SCHEMA_VERSION

        return {
            "schema_version": SCHEMA_VERSION,
            "kind": "track",
            "tool_version": self.tool_version,
            "created": self.created,
            "source": self.source,
            "settings": self.settings,
            "steps": self.steps,
            "ignored": self.ignored,
            "timing": self.timing,
        }


def _cache_dir(run: Any, checkpoints: list[RunCheckpoint], cache: Any) -> Path | None:
    if cache is False:
        return None
    if cache is not None and cache is not True:
        return Path(cache)
    if isinstance(run, (str, Path)) and Path(run).is_dir():
        return Path(run) / CACHE_DIRNAME
    return checkpoints[0].path.parent / CACHE_DIRNAME


def _settings_key(settings: dict[str, Any], extra: dict[str, Any]) -> str:
    from spectracli.results import SCHEMA_VERSION

    keyed = {k: v for k, v in settings.items() if k not in ("threads",)}
    text = json.dumps(
        {"settings": keyed, "extra": extra, "tool": __version__, "schema": SCHEMA_VERSION},
        sort_keys=True, default=str,
    )
    return hashlib.blake2b(text.encode(), digest_size=16).hexdigest()


def _read_cached(path: Path) -> dict[str, Any] | None:
    from spectracli.results import parse_report

    if not path.is_file():
        return None
    try:
        data = parse_report(path.read_text(encoding="utf-8"), str(path))
    except (OSError, UnicodeDecodeError, SpectraError):
        return None  # a damaged entry is recomputed and overwritten
    return data if data.get("kind") == "analyze" else None


def _write_cached(path: Path, report: dict[str, Any]) -> str | None:
    """Write one cache entry atomically.

    Returns:
        None, or the error text instead of raising (a read-only run directory still tracks, it
        only cannot cache).
    """
    from spectracli.fileio import write_text_atomic
    from spectracli.results import dumps_report

    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        write_text_atomic(path, dumps_report(report, indent=None))
    except (OSError, SpectraError) as exc:
        return f"cannot write the cache entry {path}: {exc}"
    return None


def analyze_step(
    path: Path, analyze_config: Any, cache_dir: Path | None, digest: str
) -> tuple[dict[str, Any], bool, str | None]:
    """The analyze report of one checkpoint: from the cache, else computed (and cached).

    The cache entry is used when the checkpoint's content and the settings match.

    Returns:
        ``(report dict, from_cache, cache error or None)``.
    """
    from spectracli.analyze import analyze_checkpoint
    from spectracli.device import resolve_device

    settings = analyze_config.settings(str(resolve_device(analyze_config.device)))
    extra: dict[str, Any] = {"content": digest}
    if analyze_config.base is not None:
        extra["base"] = content_hash(analyze_config.base)
    entry = None
    if cache_dir is not None:
        entry = cache_dir / f"analyze-{_settings_key(settings, extra)}.json"
        cached = _read_cached(entry)
        if cached is not None:
            cached["source"]["path"] = str(path)
            return cached, True, None
    report = analyze_checkpoint(path, analyze_config).to_dict()
    error = _write_cached(entry, report) if entry is not None else None
    return report, False, error


def _timestamp() -> str:
    return _dt.datetime.now(_dt.timezone.utc).replace(microsecond=0).isoformat()


def _track_step(
    ckpt: RunCheckpoint, position: tuple[int, int], analyze_config: Any,
    cache_dir: Path | None, tracker: HessianTracker | None, progress: TrackProgress | None,
) -> tuple[dict[str, Any], str | None]:
    """One checkpoint's step of a track report (analysis, cached, and the Hessian).

    Returns:
        The step dict and the cache error (None when the cache was written or off).

    Raises:
        CheckpointError: the checkpoint cannot be read.
    """
    i, n = position
    label = f"step {ckpt.step}: {ckpt.path.name}"
    if progress:
        progress("analyze", i, n, label)
    digest = content_hash(ckpt.path)
    report, cached, error = analyze_step(ckpt.path, analyze_config, cache_dir, digest)
    hess = None
    if tracker is not None:
        if progress:
            progress("hessian", i, n, label)
        hess = tracker.step(ckpt.path)
    source = dict(report["source"])
    source.update(content_hash=digest, cached=cached)
    return {
        "step": ckpt.step,
        "source": source,
        "layers": report["layers"],
        "skipped": report["skipped"],
        "summary": report["summary"],
        "hessian": hess,
    }, error


def track_run(
    run: str | Path | Sequence[str | Path],
    config: TrackConfig | None = None,
    progress: TrackProgress | None = None,
) -> TrackReport:
    """Weight analysis (and optionally the Hessian) of every checkpoint of a run, by step.

    Args:
        run: a run directory or a list of checkpoint paths (see :func:`find_checkpoints`).
        config: what to compute (:class:`TrackConfig`).
        progress: ``progress(stage, index, total, label)`` before each checkpoint's stage.

    Returns:
        A :class:`TrackReport`; ``steps[i]`` holds ``step``, ``source`` (path, format, size,
        ``content_hash``, ``cached``), ``layers``/``skipped``/``summary`` exactly as in an
        analyze report of that checkpoint alone, and ``hessian`` (a Hessian report plus
        ``warm_started``, ``overlap``, ``gradient_fraction``) or None.

    Raises:
        SpectraError: no checkpoints, no readable checkpoint (a checkpoint that cannot be read
            is passed over: listed in ``ignored`` with its reason), invalid settings, or a
            Hessian requested without ``model``/``data``.
    """
    from spectracli.analyze import AnalyzeConfig

    config = config or TrackConfig()
    analyze_config = config.analyze or AnalyzeConfig()
    analyze_config.validate()
    if config.hessian is not None:
        config.hessian.validate()
        if config.model is None or config.data is None:
            raise SpectraError("the Hessian of a run needs model and data")
    started = time.perf_counter()
    checkpoints, ignored = find_checkpoints(run, config.glob)
    cache_dir = _cache_dir(run, checkpoints, config.cache)
    tracker = HessianTracker(config) if config.hessian is not None else None
    steps: list[dict[str, Any]] = []
    hits = 0
    cache_errors: list[str] = []
    n = len(checkpoints)
    unreadable: list[CheckpointError] = []
    for i, ckpt in enumerate(checkpoints):
        try:  # an unreadable checkpoint (an empty checkpoint-N/ a Trainer died writing) is
            # passed over with its reason; the run's other steps are still tracked
            step, error = _track_step(ckpt, (i, n), analyze_config, cache_dir, tracker, progress)
        except CheckpointError as exc:
            unreadable.append(exc)
            ignored.append({"path": str(ckpt.path), "reason": f"not read: {exc}"})
            continue
        hits += step["source"]["cached"]
        if error:
            cache_errors.append(error)
        steps.append(step)
    if progress:
        progress("done", n, n, "")
    if not steps and unreadable:
        raise unreadable[0]
    first_settings = None
    if steps:
        from spectracli.device import resolve_device

        first_settings = analyze_config.settings(str(resolve_device(analyze_config.device)))
    settings: dict[str, Any] = {
        "analyze": first_settings,
        "glob": config.glob,
        "hessian": tracker.settings() if tracker else None,
    }
    source = {
        "run": str(run) if isinstance(run, (str, Path)) else [str(p) for p in run],
        "n_checkpoints": n,
        "cache": {
            "dir": str(cache_dir) if cache_dir is not None else None,
            "hits": hits,
            "misses": len(steps) - hits if cache_dir is not None else None,
            "errors": cache_errors[:5],
        },
    }
    return TrackReport(
        source=source,
        settings=settings,
        steps=steps,
        ignored=ignored,
        timing={"total_s": round(time.perf_counter() - started, 4)},
        created=_timestamp(),
    )


def unprefixed(state: dict[str, Any], wanted: set[str]) -> dict[str, Any]:
    """``state`` as the model names it (``wanted``: the model's keys).

    Returns:
        When the model's keys are in ``state`` under one common first component (a
        LightningModule's ``self.model`` saves ``model.fc1.weight``), the entries under that
        prefix with it removed, the others (loss modules, EMA copies...) left out; otherwise
        ``state`` itself.
    """
    if wanted <= set(state):
        return state
    for prefix in sorted({k.split(".", 1)[0] + "." for k in state if "." in k}):
        stripped = {k[len(prefix):]: v for k, v in state.items() if k.startswith(prefix)}
        if wanted <= set(stripped):
            return {k: v for k, v in stripped.items() if k in wanted}
    return state


def warm_start_vector(ritz: Any) -> Any:
    """One Lanczos starting vector from earlier Ritz vectors ``ritz`` (k, n): their sum.

    The sum gives the Krylov space an equal component along each previous eigendirection (the
    top eigenvalue's convergence rate depends on the start's component along it: the
    Kaniel-Paige-Saad bounds, Saad 2011, Numerical Methods for Large Eigenvalue Problems, ch. 6).

    Returns:
        The unit sum, shape (n,), float64; the first vector when the sum is zero or not finite.
    """
    import torch

    v = ritz.to(torch.float64).sum(0)
    norm = float(v.norm())
    if norm == 0.0 or not math.isfinite(norm):
        return ritz.to(torch.float64)[0]
    return v / norm


def subspace_overlap(prev: Any, cur: Any) -> list[float]:
    """The cosines of the principal angles between the spans of ``prev`` and ``cur``.

    Björck & Golub (1973): the singular values of ``prev @ cur.T`` for row-orthonormal ``prev``
    (k1, n) and ``cur`` (k2, n). Rows are re-orthonormalised (QR) first, so Ritz vectors that are
    orthonormal only to the solver's tolerance give cosines that never exceed 1.

    Returns:
        ``min(k1, k2)`` cosines, descending, in [0, 1].
    """
    import torch

    a = torch.linalg.qr(prev.to(torch.float64).T).Q  # (n, k1)
    b = torch.linalg.qr(cur.to(torch.float64).T).Q
    s = torch.linalg.svdvals(a.T @ b.to(a.device))
    return [float(min(1.0, x)) for x in s]


def gradient_fraction(vectors: Any, grad: Any) -> float | None:
    """The share of the gradient in the top eigenspace: ``||P g|| / ||g||``.

    ``P`` is the orthogonal projector onto the span of the rows of ``vectors`` (k, n).

    Returns:
        The fraction in [0, 1]; None for a zero or non-finite gradient.
    """
    import torch

    g = grad.to(torch.float64).reshape(-1)
    norm = float(g.norm())
    if norm == 0.0 or not math.isfinite(norm):
        return None
    q = torch.linalg.qr(vectors.to(torch.float64).T).Q
    return float(min(1.0, float((q.T @ g.to(q.device)).norm()) / norm))


@dataclass
class HessianTracker:
    """The Hessian of consecutive checkpoints (or of a live model), warm-started.

    Each solve starts from the previous one's Ritz vectors (Li et al. 2024, amortized
    eigendecomposition); the vectors are kept between calls.
    """

    config: TrackConfig
    previous: Any = None  # (k, n) float64 Ritz vectors of the last solve
    total_hvps: int = 0
    n_solves: int = 0
    _model: Any = field(default=None, repr=False)

    def settings(self) -> dict[str, Any]:
        """The Hessian settings of the track report, with the warm-start and gradient choices."""
        from dataclasses import asdict

        out = asdict(self.config.hessian)
        out.update(warm_start=self.config.warm_start, gradient=self.config.gradient,
                   warm_start_vector="sum of the previous solve's Ritz vectors"
                   if self.config.warm_start else None)
        return out

    def step(self, path: Path) -> dict[str, Any]:
        """The Hessian report of the checkpoint at ``path`` (weights loaded into a fresh model)."""
        from spectracli.hessian.loading import apply_state_dict
        from spectracli.io import load_state_dict

        model = self.config.model()
        state = load_state_dict(path, trust_pickle=self.config.trust_pickle)
        apply_state_dict(model, unprefixed(state, set(model.state_dict())), str(path))
        return self.measure(model, source={**self.config.source, "weights": str(path)})

    def measure(self, model: Any, source: dict[str, Any] | None = None) -> dict[str, Any]:
        """The Hessian report of ``model`` as it is now, warm-started when possible."""
        from spectracli.hessian.api import analyze, build_operator

        cfg = self.config.hessian
        init = self.previous if self.config.warm_start else None
        hooks = {k: v for k, v in self.config.hooks.items() if v is not None}
        kwargs: dict[str, Any] = dict(hooks)
        if init is not None:
            kwargs["v0"] = warm_start_vector(init)
        result = analyze(
            model, self.config.data, self.config.loss, cfg, return_vectors=True,
            source=source or {}, **kwargs,
        )
        out = result.to_dict()
        out["warm_started"] = init is not None
        vectors = result.eigenvectors
        out["overlap"] = (
            subspace_overlap(self.previous, vectors)
            if self.previous is not None and vectors is not None
            and self.previous.shape[1] == vectors.shape[1] else None
        )
        out["gradient_fraction"] = None
        if self.config.gradient and vectors is not None:
            op, _ = build_operator(model, self.config.data, self.config.loss, cfg, **hooks)
            _, g = op.loss_and_grad()
            out["gradient_fraction"] = gradient_fraction(vectors, g)
        self.previous = vectors.detach().cpu() if vectors is not None else None
        self.total_hvps += int(out["hvp_count"])
        self.n_solves += 1
        return out
