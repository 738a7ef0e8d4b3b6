"""Training: from scratch, fine-tuning, last-layer (transfer) retraining, and many small
models at once.

- ``train_classifier`` trains one model (all of it, or only what ``requires_grad``);
- ``freeze_for_transfer`` / ``reset_head`` set up last-layer retraining from a cold start;
- ``train_many`` trains K copies of one architecture at once with ``torch.func``
  (``stack_module_state`` + ``vmap(functional_call)``), each on its own index set into a
  shared pool of examples: ensembles, one victim per poisoned target, DPA partitions.
  Because Adam and SGD act element-wise, one optimizer over the stacked parameters is
  exactly K independent optimizers.

Everything is deterministic on the CPU for a given seed. Progress bars are tqdm's, off in
batch runs so that they never land in a committed notebook.
"""
from __future__ import annotations

import copy
import math
import os
import random

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F
from torch.func import functional_call, stack_module_state


def seed_everything(seed: int) -> torch.Generator:
    random.seed(seed)
    np.random.seed(seed % (2 ** 32))
    torch.manual_seed(seed)
    return torch.Generator().manual_seed(seed)


def progress(iterable=None, **kwargs):
    """tqdm for interactive use. Kept out of notebook outputs: in batch runs
    (``POISONREPRO_BATCH=1``, set by ``make reproduce``; papermill then shows per-cell
    progress in the terminal) and with ``POISONREPRO_PROGRESS=0`` the bars are off."""
    if os.environ.get("POISONREPRO_PROGRESS", "1") == "0" or os.environ.get("POISONREPRO_BATCH"):
        kwargs["disable"] = True
    from tqdm.auto import tqdm
    return tqdm(iterable, **kwargs)


def augment_batch(x: torch.Tensor, generator: torch.Generator, pad: int = 4) -> torch.Tensor:
    """Random crop with zero padding and random horizontal flip, one draw per image
    (the standard CIFAR augmentation), drawn from ``generator`` for determinism."""
    n, _, h, w = x.shape
    xp = F.pad(x, (pad, pad, pad, pad))
    dy = torch.randint(0, 2 * pad + 1, (n,), generator=generator)
    dx = torch.randint(0, 2 * pad + 1, (n,), generator=generator)
    rows = (dy[:, None] + torch.arange(h))[:, None, :, None].expand(n, x.shape[1], h, w + 2 * pad)
    out = xp.gather(2, rows)
    cols = (dx[:, None] + torch.arange(w))[:, None, None, :].expand(n, x.shape[1], h, w)
    out = out.gather(3, cols)
    flip = torch.rand(n, generator=generator) < 0.5
    return torch.where(flip[:, None, None, None], out.flip(3), out)


def _loss(model, logits, y):
    if getattr(model, "loss", "ce") == "mse":  # ADALINE: squared error to +-1 targets
        return F.mse_loss(logits.squeeze(-1), y.float() * 2 - 1)
    return F.cross_entropy(logits, y)


def make_optimizer(params, name: str, lr: float, weight_decay: float = 0.0, momentum: float = 0.9):
    if name == "adam":
        return torch.optim.Adam(params, lr=lr, weight_decay=weight_decay)
    if name == "sgd":
        return torch.optim.SGD(params, lr=lr, momentum=momentum, weight_decay=weight_decay, nesterov=momentum > 0)
    raise ValueError(f"unknown optimizer {name!r}; allowed: 'adam', 'sgd'")


def train_classifier(model: nn.Module, x: torch.Tensor, y: torch.Tensor, *, epochs: int, lr: float,
                     optimizer: str = "adam", batch_size: int = 128, weight_decay: float = 0.0,
                     augment: bool = False, seed: int = 0, desc: str = "train") -> nn.Module:
    """Train the parameters of ``model`` that require grad (all of them unless frozen)."""
    gen = seed_everything(seed)
    params = [p for p in model.parameters() if p.requires_grad]
    opt = make_optimizer(params, optimizer, lr, weight_decay)
    model.train()
    n = len(y)
    for _ in progress(range(epochs), desc=desc, leave=False):
        perm = torch.randperm(n, generator=gen)
        for i in range(0, n, batch_size):
            idx = perm[i:i + batch_size]
            xb = x[idx]
            if augment:
                xb = augment_batch(xb, gen)
            opt.zero_grad(set_to_none=True)
            _loss(model, model(xb), y[idx]).backward()
            opt.step()
    model.eval()
    return model


def freeze_for_transfer(model: nn.Module) -> nn.Module:
    """Transfer learning: every layer frozen but the last (``head``)."""
    for p in model.parameters():
        p.requires_grad_(False)
    for p in model.head.parameters():
        p.requires_grad_(True)
    return model


def unfreeze(model: nn.Module) -> nn.Module:
    """End-to-end training: every layer trainable."""
    for p in model.parameters():
        p.requires_grad_(True)
    return model


def reset_head(model: nn.Module, seed: int) -> nn.Module:
    """Cold start for last-layer retraining: re-draw the head's weights from ``seed``."""
    torch.manual_seed(seed)
    model.head.reset_parameters()
    return model


@torch.no_grad()
def predict_logits(model: nn.Module, x: torch.Tensor, batch_size: int = 500) -> torch.Tensor:
    model.eval()
    return torch.cat([model(x[i:i + batch_size]) for i in range(0, len(x), batch_size)])


@torch.no_grad()
def extract_features(model: nn.Module, x: torch.Tensor, batch_size: int = 500) -> torch.Tensor:
    model.eval()
    return torch.cat([model.features(x[i:i + batch_size]) for i in range(0, len(x), batch_size)])


def accuracy(logits: torch.Tensor, y: torch.Tensor) -> float:
    return (logits.argmax(-1) == y).float().mean().item()


def evaluate(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> float:
    return accuracy(predict_logits(model, x), y)


# --------------------------------------------------------------------------- many at once
class ModelStack:
    """K models of one architecture as stacked parameters, evaluated with ``vmap``."""

    def __init__(self, models: list[nn.Module]):
        self.base = copy.deepcopy(models[0]).to("meta")
        self.loss = getattr(models[0], "loss", "ce")
        params, buffers = stack_module_state(models)
        self.params = {k: v.detach().clone().requires_grad_(True) for k, v in params.items()}
        self.buffers = buffers
        self.k = len(models)

    def forward(self, x: torch.Tensor, shared_input: bool = False) -> torch.Tensor:
        """Logits [K, B, C]; ``x`` is [K, B, ...], or [B, ...] with ``shared_input``."""
        f = lambda p, b, xx: functional_call(self.base, (p, b), (xx,))  # noqa: E731
        in_dims = (0, 0, None if shared_input else 0)
        return torch.vmap(f, in_dims=in_dims)(self.params, self.buffers, x)

    @torch.no_grad()
    def predict(self, x: torch.Tensor, batch_size: int = 500) -> torch.Tensor:
        """Logits [K, N, C] of every model on the same inputs ``x`` [N, ...]."""
        return torch.cat([self.forward(x[i:i + batch_size], shared_input=True)
                          for i in range(0, len(x), batch_size)], dim=1)


def train_many(models: list[nn.Module], pool_x: torch.Tensor, pool_y: torch.Tensor,
               index_sets: list[torch.Tensor] | torch.Tensor, *, epochs: int, lr: float,
               optimizer: str = "adam", batch_size: int = 128, weight_decay: float = 0.0,
               augment: bool = False, seed: int = 0, desc: str = "train many") -> ModelStack:
    """Train model k on ``pool_x[index_sets[k]]`` for every k at once.

    One epoch is ``ceil(max_k |set_k| / batch_size)`` steps; each model walks its own random
    permutation of its set and wraps around if its set is smaller than the largest one.
    """
    stack = ModelStack(models)
    k = stack.k
    sizes = torch.tensor([len(s) for s in index_sets])
    longest = int(sizes.max())
    padded = torch.stack([torch.as_tensor(s)[torch.arange(longest) % len(s)] for s in index_sets]) \
        if not isinstance(index_sets, torch.Tensor) else index_sets
    gen = seed_everything(seed)
    opt = make_optimizer(list(stack.params.values()), optimizer, lr, weight_decay)
    steps = math.ceil(longest / batch_size)

    def loss_fn(logits, y):  # the sum over models of each model's mean loss
        if stack.loss == "mse":
            return F.mse_loss(logits.squeeze(-1), y.float() * 2 - 1) * k
        return F.cross_entropy(logits.reshape(-1, logits.shape[-1]), y.reshape(-1)) * k
    for _ in progress(range(epochs), desc=desc, leave=False):
        # a per-model permutation of positions, then mapped to pool indices
        order = torch.argsort(torch.rand(k, longest, generator=gen), dim=1)
        for s in range(steps):
            pos = order[:, s * batch_size:(s + 1) * batch_size]
            pos = pos % sizes[:, None]  # wrap around for smaller sets
            idx = padded.gather(1, pos)
            xb = pool_x[idx.reshape(-1)]
            if augment:
                xb = augment_batch(xb, gen)
            xb = xb.reshape(k, -1, *pool_x.shape[1:])
            opt.zero_grad(set_to_none=True)
            # summed over models, so each model's gradient is its own
            loss_fn(stack.forward(xb), pool_y[idx]).backward()
            opt.step()
    return stack
