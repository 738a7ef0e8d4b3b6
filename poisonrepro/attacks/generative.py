"""Autoencoder-based generative poisoning: C. Yang, Q. Wu, H. Li, Y. Chen, "Generative Poisoning
Attack Method Against Neural Networks" (2017, arXiv:1703.01340), the three panels the lecture
deck "Data Poisoning: Attacks and Defenses" (Xingjun Ma, Fudan University) shows (slide
"Autoencoder-based Generative Attack"):

(a) the *direct gradient* method started from real data: each poison's pixels follow the
    gradient of the attacker's objective (the victim's validation loss after training on the
    poisoned set) with respect to the poison;
(b) the same method started from uniform noise;
(c) the *generative* method: an autoencoder G, first trained to reconstruct digits, is
    updated so that its outputs G(x) for real digits x are poisons: the gradient of the
    objective with respect to each output is pushed back into G's weights, with a
    reconstruction term keeping G(x) close to x. Once trained, G makes any number of poisons
    in one forward pass (the paper's argument: generation is much faster than per-point
    gradient ascent).

The gradient of the objective with respect to a poison is the back-gradient of
``attacks.back_gradient`` (Algorithm 2 of Munoz-Gonzalez et al. 2017) rather than the
paper's own approximation; the victim is a (softmax) logistic regression trained by gradient
descent.
"""
from __future__ import annotations

import time

import torch
from torch import nn

from ..registry import register_attack
from .back_gradient import DTYPE, Learner, back_gradient, train_gd


class Autoencoder(nn.Module):
    """784 -> ``code`` -> 784, sigmoid output in [0, 1]."""

    def __init__(self, n_features: int, code: int, hidden: int = 256):
        super().__init__()
        self.encode = nn.Sequential(nn.Linear(n_features, hidden), nn.ReLU(), nn.Linear(hidden, code), nn.ReLU())
        self.decode = nn.Sequential(nn.Linear(code, hidden), nn.ReLU(), nn.Linear(hidden, n_features), nn.Sigmoid())

    def forward(self, x):
        return self.decode(self.encode(x))


def pretrain_autoencoder(X: torch.Tensor, *, code: int, steps: int, lr: float, batch: int, seed: int) -> Autoencoder:
    """Reconstruction training (mean squared error, Adam) on genuine digits."""
    torch.manual_seed(seed)
    ae = Autoencoder(X.shape[1], code).double().to(X.device)  # drawn on the CPU, trained where the digits are
    opt = torch.optim.Adam(ae.parameters(), lr=lr)
    g = torch.Generator().manual_seed(seed)
    for _ in range(steps):
        xb = X[torch.randint(len(X), (batch,), generator=g)]
        loss = ((ae(xb) - xb) ** 2).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
    return ae


@register_attack("generative_autoencoder", paper="Yang et al. 2017", notebook="07_pgan",
                 summary="train an autoencoder whose outputs for real digits are poisons (gradient from the "
                         "victim's validation loss)",
                 timing="poisoning", goal="untargeted", knowledge="white-box", universality="universal",
                 influence="causative", violation="availability", specificity="indiscriminate")
def train_generative_poisoner(ae: Autoencoder, learner: Learner, X_tr, y_tr, X_src, y_src, objective, *,
                              steps: int, lr: float, recon_weight: float, train_steps: int, train_lr: float,
                              inner_steps: int, inner_lr: float, batch: int, seed: int, bar=None):
    """Update G so that G(x) for source digits x (labels ``y_src``) raise ``objective``.
    Returns (G, objective after each step, seconds spent)."""
    opt = torch.optim.Adam(ae.parameters(), lr=lr)
    g = torch.Generator().manual_seed(seed)
    start, values = synchronized_clock(X_src.device), []
    with torch.no_grad():
        w = train_gd(learner, torch.cat([X_tr, ae(X_src[:batch])]), torch.cat([y_tr, y_src[:batch]]),
                     steps=train_steps, lr=train_lr)
    for _ in range(steps):
        idx = torch.randint(len(X_src), (batch,), generator=g)
        x, yc = X_src[idx], y_src[idx]
        xp = ae(x)
        with torch.no_grad():  # the learner follows the current poisons (warm start, T steps)
            w = train_gd(learner, torch.cat([X_tr, xp]), torch.cat([y_tr, yc]), steps=inner_steps, lr=inner_lr,
                         w0=w)
            values.append(objective(w).item())
        dx = back_gradient(learner, w, X_tr, y_tr, xp.detach(), yc, objective, steps=inner_steps, lr=inner_lr)
        # ascend the objective through G along each poison's normalised gradient (as the direct
        # method steps), while a reconstruction term keeps G(x) close to x
        direction = dx / dx.norm(dim=1, keepdim=True).clamp_min(1e-12)
        loss = -(direction * xp).sum(1).mean() + recon_weight * ((xp - x) ** 2).sum(1).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
        if bar is not None:
            bar.update(1)
    return ae, values, synchronized_clock(X_src.device) - start


def synchronized_clock(device: torch.device) -> float:
    """The wall clock once the work queued on ``device`` is done (CUDA runs asynchronously)."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    return time.perf_counter()


def uniform_noise(n: int, d: int, seed: int) -> torch.Tensor:
    return torch.rand(n, d, generator=torch.Generator().manual_seed(seed), dtype=DTYPE)
