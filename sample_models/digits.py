"""Model code for the shipped sample checkpoints, trained on the UCI handwritten digits.

``digits.npz`` holds 8x8 grey-level digit images flattened to 64 features in [0, 1]:
``x``/``y`` (1,500 training samples) and ``x_test``/``y_test`` (297 held out).

Factories (usable as ``--model sample_models/digits.py:build_mlp``):
- ``build_mlp``: 64 -> 256 -> 128 -> 10 with ReLU (50k parameters).
- ``build_cnn``: two 3x3 conv layers with BatchNorm, max-pooling and two linear layers
  (reads the 64 features as a 1x8x8 image).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from torch import nn

HERE = Path(__file__).resolve().parent


class DigitsMLP(nn.Module):
    def __init__(self, hidden: tuple[int, int] = (256, 128)) -> None:
        super().__init__()
        self.fc1 = nn.Linear(64, hidden[0])
        self.fc2 = nn.Linear(hidden[0], hidden[1])
        self.head = nn.Linear(hidden[1], 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = torch.relu(self.fc1(x))
        x = torch.relu(self.fc2(x))
        return self.head(x)


class DigitsCNN(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(1, 32, kernel_size=3, padding=1)
        self.bn1 = nn.BatchNorm2d(32)
        self.conv2 = nn.Conv2d(32, 64, kernel_size=3, padding=1)
        self.bn2 = nn.BatchNorm2d(64)
        self.fc1 = nn.Linear(64 * 2 * 2, 128)
        self.head = nn.Linear(128, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x.reshape(-1, 1, 8, 8)
        x = torch.max_pool2d(torch.relu(self.bn1(self.conv1(x))), 2)  # 4x4
        x = torch.max_pool2d(torch.relu(self.bn2(self.conv2(x))), 2)  # 2x2
        x = torch.relu(self.fc1(x.flatten(1)))
        return self.head(x)


def build_mlp() -> nn.Module:
    return DigitsMLP()


def build_cnn() -> nn.Module:
    return DigitsCNN()


def load_digits(split: str = "train") -> tuple[torch.Tensor, torch.Tensor]:
    """The shipped digits as tensors: ``split`` is ``train`` or ``test``."""
    data = np.load(HERE / "digits.npz", allow_pickle=False)
    if split == "train":
        return torch.from_numpy(data["x"]), torch.from_numpy(data["y"])
    return torch.from_numpy(data["x_test"]), torch.from_numpy(data["y_test"])
