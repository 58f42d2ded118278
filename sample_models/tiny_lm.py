"""A tiny causal transformer LM and a Hugging Face-shaped one, with token data, for
``spectracli hessian`` on the models people train (README, docs/hessian.md).

    spectracli hessian --model sample_models/tiny_lm.py:build \
        --data sample_models/tiny_lm.py:pairs --loss token_cross_entropy --top-k 3
    spectracli hessian --model sample_models/tiny_lm.py:build_hf \
        --data sample_models/tiny_lm.py:rows --loss model --blocks module

Randomly initialised (seeded): the point is the input plumbing, not a trained model.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

VOCAB, T, D = 16, 12, 16


class TinyCausalLM(nn.Module):
    """2-layer ``nn.TransformerEncoder`` (default fused CPU attention, dropout) with a causal
    mask: ids (B, t) -> logits (B, t, vocab). The sizes default to this sample's; the Hessian
    tests build a smaller one (tests/hessian_models.py)."""

    def __init__(self, vocab: int = VOCAB, t: int = T, d: int = D, ff: int = 32,
                 pos_scale: float = 0.1, seed: int = 0) -> None:
        super().__init__()
        torch.manual_seed(seed)
        self.emb = nn.Embedding(vocab, d)
        self.pos = nn.Parameter(pos_scale * torch.randn(t, d))
        layer = nn.TransformerEncoderLayer(d, nhead=2, dim_feedforward=ff, batch_first=True)
        self.enc = nn.TransformerEncoder(layer, 2, enable_nested_tensor=False)
        self.head = nn.Linear(d, vocab)

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        t = ids.shape[1]
        h = self.emb(ids) + self.pos[:t]
        mask = nn.Transformer.generate_square_subsequent_mask(t, dtype=h.dtype)
        return self.head(self.enc(h, mask=mask, is_causal=True))


@dataclass
class Output:
    loss: torch.Tensor | None
    logits: torch.Tensor


class HFShapedLM(nn.Module):
    """Keyword forward ``(input_ids, attention_mask=None, labels=None)`` returning an object with
    ``.loss`` (labels shifted inside, -100 ignored) and ``.logits``, as Hugging Face models do."""

    def __init__(self) -> None:
        super().__init__()
        self.lm = TinyCausalLM()

    def forward(self, input_ids, attention_mask=None, labels=None):
        logits = self.lm(input_ids)
        loss = None
        if labels is not None:
            loss = F.cross_entropy(logits[:, :-1].reshape(-1, VOCAB),
                                   labels[:, 1:].reshape(-1), ignore_index=-100)
        return Output(loss, logits)


def build() -> nn.Module:
    return TinyCausalLM()


def build_hf() -> nn.Module:
    return HFShapedLM()


def _tokens(n: int = 96) -> tuple[torch.Tensor, torch.Tensor]:
    """Next-token data: targets are the ids shifted left, right-padded with -100."""
    gen = torch.Generator().manual_seed(1)
    ids = torch.randint(0, VOCAB, (n, T), generator=gen)
    lengths = torch.randint(3, T + 1, (n,), generator=gen)
    targets = torch.full_like(ids, -100)
    for i, n_tok in enumerate(lengths.tolist()):
        targets[i, : n_tok - 1] = ids[i, 1:n_tok]
    return ids, targets


def pairs() -> tuple[torch.Tensor, torch.Tensor]:
    """(ids, next-token targets) for --loss token_cross_entropy."""
    return _tokens()


class Rows(torch.utils.data.Dataset):
    """A Dataset of dicts (input_ids, attention_mask, labels) as a tokenizer would give."""

    def __init__(self) -> None:
        self.ids, targets = _tokens()
        self.mask = (torch.cat([torch.ones_like(targets[:, :1]), targets[:, :-1]], 1)
                     != -100).long()
        self.labels = torch.where(self.mask.bool(), self.ids, torch.full_like(self.ids, -100))

    def __len__(self) -> int:
        return len(self.ids)

    def __getitem__(self, i: int) -> dict[str, torch.Tensor]:
        return {"input_ids": self.ids[i], "attention_mask": self.mask[i],
                "labels": self.labels[i]}


def rows() -> Rows:
    return Rows()
