"""Deterministic Hessian benchmark workloads shared by every comparison script.

``mlp_270k_workload`` is the MLP 784-256-256-10 (269,322 parameters) of the figures in
REFERENCES.md; ``shrunken_mlp_workload`` is the same recipe small enough that
``torch.func.hessian`` gives a dense float64 truth in a second. Both return ``(model, x, y)``
for the mean cross-entropy loss, in eval mode, on the CPU, in float32.

Everything is seeded through private generators (the global RNG is left untouched), so the same
``seed`` gives bit-identical weights and data for a given torch version. The data are Gaussian
inputs labelled by a fixed random teacher network (``argmax`` of its logits): synthetic, but
learnable by the student, so the Hessian has the class-outlier structure of real training.

Example::

    from benchmarks.workloads import mlp_270k_workload
    model, x, y = mlp_270k_workload(seed=0, n_samples=2048)
    loss = torch.nn.functional.cross_entropy(model(x), y)
"""

from __future__ import annotations

import torch
from torch import nn


def _mlp(dims: tuple[int, ...]) -> nn.Sequential:
    layers: list[nn.Module] = []
    for i in range(len(dims) - 1):
        layers.append(nn.Linear(dims[i], dims[i + 1]))
        if i < len(dims) - 2:
            layers.append(nn.ReLU())
    return nn.Sequential(*layers)


def _init_(model: nn.Module, generator: torch.Generator) -> None:
    """PyTorch's default Linear init (uniform +-1/sqrt(fan_in)), drawn from ``generator``."""
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, nn.Linear):
                bound = module.in_features**-0.5
                module.weight.uniform_(-bound, bound, generator=generator)
                module.bias.uniform_(-bound, bound, generator=generator)


def _workload(
    dims: tuple[int, ...], seed: int, n_samples: int, teacher_hidden: int
) -> tuple[nn.Module, torch.Tensor, torch.Tensor]:
    if n_samples < 1:
        raise ValueError(f"n_samples must be >= 1, got {n_samples}")
    gen = torch.Generator().manual_seed(seed)
    model = _mlp(dims)
    _init_(model, gen)
    model.eval()

    teacher = _mlp((dims[0], teacher_hidden, dims[-1]))
    _init_(teacher, gen)
    x = torch.randn(n_samples, dims[0], generator=gen)
    with torch.no_grad():
        # Standardise each class's logit over the data so that no class is starved of labels.
        logits = teacher(x)
        y = ((logits - logits.mean(0)) / logits.std(0)).argmax(dim=1)
    return model, x, y


def mlp_270k_workload(
    seed: int = 0, n_samples: int = 2048
) -> tuple[torch.nn.Module, torch.Tensor, torch.Tensor]:
    """MLP 784-256-256-10 (269,322 params) at its seeded init, with ``n_samples`` teacher-labelled
    Gaussian inputs: ``(model, x float32 (n, 784), y int64 (n,))``."""
    return _workload((784, 256, 256, 10), seed, n_samples, teacher_hidden=64)


def shrunken_mlp_workload(
    seed: int = 0, n_samples: int = 256
) -> tuple[torch.nn.Module, torch.Tensor, torch.Tensor]:
    """The same recipe shrunk to 24-16-16-4 (740 params): a dense float64 Hessian
    (``torch.func.hessian`` + ``eigvalsh``) takes about a second, so it is the accuracy truth."""
    return _workload((24, 16, 16, 4), seed, n_samples, teacher_hidden=16)


def n_params(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


if __name__ == "__main__":
    for name, fn in (("mlp_270k", mlp_270k_workload), ("shrunken_mlp", shrunken_mlp_workload)):
        m, xs, ys = fn()
        counts = torch.bincount(ys, minlength=int(ys.max()) + 1).tolist()
        print(f"{name}: {n_params(m)} params, x {tuple(xs.shape)}, label counts {counts}")
