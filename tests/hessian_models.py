"""Small models people train, for the Hessian-input tests: a causal transformer LM on
``nn.TransformerEncoder`` (default fused CPU attention, dropout) and a Hugging Face-shaped model
(keyword forward, dict batches, an output object with ``.loss`` and ``.logits``, labels shifted
inside the model), plus the dense float64 truths they are checked against."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn
from torch.func import functional_call

from sample_models.tiny_lm import Output
from sample_models.tiny_lm import TinyCausalLM as SampleCausalLM
from spectracli.hessian.state import math_attention

VOCAB, T = 5, 6


class TinyCausalLM(SampleCausalLM):
    """The sample's 2-layer causal transformer LM, smaller: ids (B, T) -> logits (B, T, V);
    413 parameters."""

    def __init__(self, seed: int = 0, d: int = 4) -> None:
        super().__init__(vocab=VOCAB, t=T, d=d, ff=8, pos_scale=0.3, seed=seed)


class HFShapedLM(nn.Module):
    """Keyword forward ``(input_ids, attention_mask=None, labels=None)`` -> ``Output`` with the
    causal-LM loss (labels shifted by one inside, -100 ignored, mean over counted tokens)."""

    def __init__(self, seed: int = 0, d: int = 4) -> None:
        super().__init__()
        torch.manual_seed(seed)
        self.emb = nn.Embedding(VOCAB, d)
        self.mix = nn.Linear(d, d)
        self.head = nn.Linear(d, VOCAB)

    def forward(self, input_ids, attention_mask=None, labels=None):
        h = torch.tanh(self.mix(self.emb(input_ids)))
        if attention_mask is not None:
            h = h * attention_mask[..., None].to(h.dtype)
        h = torch.cumsum(h, dim=1)  # causal mixing
        logits = self.head(h)
        loss = None
        if labels is not None:
            loss = F.cross_entropy(logits[:, :-1].reshape(-1, VOCAB), labels[:, 1:].reshape(-1),
                                   ignore_index=-100)
        return Output(loss=loss, logits=logits)


def token_data(n: int = 64, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """ids (n, T) and labels (n, T) with right padding (-100) of random length; rows 0-2 are all
    padding (a batch of 3 with nothing to count)."""
    gen = torch.Generator().manual_seed(seed)
    ids = torch.randint(0, VOCAB, (n, T), generator=gen)
    labels = ids.clone()
    lengths = torch.randint(1, T + 1, (n,), generator=gen)
    lengths[:3] = 0
    for i in range(n):
        labels[i, lengths[i]:] = -100
    return ids, labels


def flat_fn(model: nn.Module, loss_of_model):
    """``f(flat params) -> loss`` through functional_call in float64, and the flat params."""
    names = [k for k, _ in model.named_parameters()]
    params = [p.detach().double() for _, p in model.named_parameters()]
    shapes, sizes = [p.shape for p in params], [p.numel() for p in params]
    buffers = {k: b.double() if b.is_floating_point() else b for k, b in model.named_buffers()}

    def f(flat):
        parts = {k: c.view(s) for k, c, s in zip(names, torch.split(flat, sizes), shapes,
                                                 strict=True)}
        return loss_of_model(lambda *a, **kw: functional_call(model, (parts, buffers), a, kw))

    return f, torch.cat([p.reshape(-1) for p in params])


def dense_hessian(model: nn.Module, loss_of_model) -> torch.Tensor:
    """Truth: the loss over all the data at once (one call: no batching or weighting code of
    spectracli), float64, eval mode, math attention; every column of the Hessian by autograd
    double backward (batched over the identity). Not torch.func.hessian: in torch 2.13 its
    vmapped jacfwd-over-jacrev Hessian of this transformer is wrong in the LayerNorm-weight rows
    (asymmetric, 0.17 off), while unbatched jvp-of-grad products, double backward and finite
    differences of gradients agree."""
    was = model.training
    model.eval()
    try:
        f, flat = flat_fn(model, loss_of_model)
        with math_attention():
            x = flat.clone().requires_grad_(True)
            g = torch.autograd.grad(f(x), x, create_graph=True)[0]
            eye = torch.eye(x.numel(), dtype=torch.float64)
            return torch.autograd.grad(g, x, eye, is_grads_batched=True)[0]
    finally:
        model.train(was)


def token_loss_all(ids: torch.Tensor, labels: torch.Tensor):
    """The per-token mean over every counted token of the dataset, as a function of the model."""

    def loss(call):
        logits = call(ids)
        return F.cross_entropy(logits.reshape(-1, VOCAB), labels.reshape(-1), ignore_index=-100)

    return loss
