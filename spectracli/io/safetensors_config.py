"""The ``config.json`` entries the safetensors reader looks up beside the weights."""

from __future__ import annotations

import json
from pathlib import Path


def config_block(config_dir: Path) -> tuple[int, int] | None:
    """``quantization_config.weight_block_size`` of ``config_dir/config.json`` as (b0, b1).

    Returns:
        The fp8 block size, or None when the file, the key or a usable value is missing.
    """
    try:
        with open(config_dir / "config.json", encoding="utf-8") as f:
            block = json.load(f)["quantization_config"]["weight_block_size"]
        return int(block[0]), int(block[1])
    except (OSError, ValueError, KeyError, TypeError, IndexError):
        return None
