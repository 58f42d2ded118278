"""What every rule may consult: all tensors by name, the parsed config.json, the options."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from spectracli.layers.plan import LayerOptions, TensorInfo

# Sub-configs that describe the language model of a composite (multimodal) config.
_TEXT_SUBCONFIGS = ("text_config", "llm_config", "language_config", "thinker_config")
_VISION_SUBCONFIGS = ("vision_config", "visual", "vision_tower_config")
_VISION_NAME = ("vision", "visual", "image_encoder", "vit.")


def split_name(name: str) -> tuple[str, str]:
    """``a.b.c`` -> (``a.b``, ``c``); a name without a dot has the prefix ``""``."""
    prefix, _, leaf = name.rpartition(".")
    return prefix, leaf


def join(prefix: str, leaf: str) -> str:
    """``prefix.leaf``, or ``leaf`` alone when ``prefix`` is empty."""
    return f"{prefix}.{leaf}" if prefix else leaf


@dataclass
class Context:
    """The whole checkpoint as the rules see it (names, shapes, dtypes, meta, config.json).

    ``base``: names -> shapes of a base checkpoint when one is given (``W - W_base`` is analysed,
    an adapter is merged into it). ``adapter_config``: the PEFT ``adapter_config.json``.
    """

    tensors: Mapping[str, TensorInfo]
    config: Mapping[str, Any] = field(default_factory=dict)
    options: LayerOptions = field(default_factory=LayerOptions)
    adapter_config: Mapping[str, Any] | None = None
    base: Mapping[str, tuple[int, ...]] | None = None
    memo: dict[str, Any] = field(default_factory=dict)  # checkpoint-wide facts, computed once

    def sibling(self, name: str, leaf: str) -> TensorInfo | None:
        """The tensor ``leaf`` in the same module as ``name`` (``fc.weight`` -> ``fc.bias``)."""
        return self.tensors.get(join(split_name(name)[0], leaf))

    def config_value(self, name: str, *keys: str) -> Any:
        """The first of ``keys`` found in the config that describes tensor ``name``.

        Looks in the top level, then the language sub-configs (``text_config``...), or for a
        tensor of a vision tower (name with ``vision``/``visual``) in ``vision_config`` first.

        Returns:
            The value of the first key found, or None.
        """
        configs: list[Mapping[str, Any]] = []
        subs = list(_TEXT_SUBCONFIGS)
        lowered = name.lower()
        if any(v in lowered for v in _VISION_NAME):
            configs += [self.config[s] for s in _VISION_SUBCONFIGS
                        if isinstance(self.config.get(s), Mapping)]
        configs.append(self.config)
        configs += [self.config[s] for s in subs if isinstance(self.config.get(s), Mapping)]
        for cfg in configs:
            for key in keys:
                value = cfg.get(key)
                if value is not None:
                    return value
        return None

    def config_lacks(self, what: str) -> str:
        """Why ``what`` (e.g. ``head counts``) is unknown, in words true of this source.

        Returns:
            ``config.json gives no <what>`` when a config came with the weights, else that none
            came (a file without config.json beside it, a state dict, a model without
            ``.config``) and where one would come from.
        """
        if self.config:
            return f"config.json gives no {what}"
        return (f"no config came with the weights to give {what} (a config.json beside them, "
                "or a model object's .config)")

    def config_int(self, name: str, *keys: str) -> int | None:
        """The first of ``keys`` found in the config (see ``config_value``) when it is an int."""
        value = self.config_value(name, *keys)
        return value if isinstance(value, int) and not isinstance(value, bool) else None

    @property
    def model_type(self) -> str:
        """The config's ``model_type`` (``"llama"``, ``"gpt2"``...), or ``""`` when absent."""
        value = self.config.get("model_type")
        return value if isinstance(value, str) else ""

    # Field names of the Hugging Face configs, per quantity.
    def hidden_size(self, name: str) -> int | None:
        """The model width (``hidden_size`` or its other spellings) for tensor ``name``, or None."""
        return self.config_int(name, "hidden_size", "n_embd", "d_model", "dim", "model_dim")

    def head_counts(self, name: str) -> tuple[int, int, int] | None:
        """(query heads, key/value heads, head dim) from the config, or None when unknown."""
        heads = self.config_int(name, "num_attention_heads", "n_head", "num_heads", "n_heads")
        if not heads:
            return None
        kv = self.config_int(name, "num_key_value_heads", "n_head_kv", "num_kv_heads",
                             "n_kv_heads", "multi_query_group_num")
        attn_config = self.config.get("attn_config")  # MPT
        if kv is None and isinstance(attn_config, Mapping):
            kv = attn_config.get("kv_n_heads") if isinstance(
                attn_config.get("kv_n_heads"), int) else None
        if kv is None:
            multi_query = self.config_value(name, "multi_query")
            kv = 1 if multi_query is True else heads
        head_dim = self.config_int(name, "head_dim", "kv_channels")
        if head_dim is None:
            hidden = self.hidden_size(name)
            if hidden is None or hidden % heads:
                return None
            head_dim = hidden // heads
        return heads, kv, head_dim
