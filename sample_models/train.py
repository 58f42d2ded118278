"""Train the shipped sample models deterministically on digits.npz (a few seconds on a CPU).

``python sample_models/train.py`` rewrites digits_mlp.safetensors and digits_cnn.safetensors
and prints train/test accuracy. Same seed, same thread count, same result.
"""

from __future__ import annotations

import sys
from pathlib import Path

import torch
from safetensors.torch import save_file

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from digits import build_cnn, build_mlp, load_digits  # noqa: E402


def train(model: torch.nn.Module, epochs: int, lr: float, seed: int = 0) -> torch.nn.Module:
    x, y = load_digits("train")
    gen = torch.Generator().manual_seed(seed)
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    loss_fn = torch.nn.CrossEntropyLoss()
    model.train()
    for _ in range(epochs):
        for idx in torch.randperm(len(y), generator=gen).split(64):
            opt.zero_grad()
            loss_fn(model(x[idx]), y[idx]).backward()
            opt.step()
    return model.eval()


@torch.no_grad()
def accuracy(model: torch.nn.Module, split: str) -> float:
    x, y = load_digits(split)
    return (model(x).argmax(1) == y).float().mean().item()


def main() -> None:
    torch.set_num_threads(1)
    torch.use_deterministic_algorithms(True)
    for name, build, epochs in (("digits_mlp", build_mlp, 30), ("digits_cnn", build_cnn, 20)):
        torch.manual_seed(0)
        model = train(build(), epochs=epochs, lr=1e-3)
        state = {k: v.detach().contiguous() for k, v in model.state_dict().items()}
        save_file(state, str(HERE / f"{name}.safetensors"), metadata={"format": "pt"})
        print(f"{name}: train acc {accuracy(model, 'train'):.3f}, "
              f"test acc {accuracy(model, 'test'):.3f}, "
              f"{sum(p.numel() for p in model.parameters())} parameters")


if __name__ == "__main__":
    main()
