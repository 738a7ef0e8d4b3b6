"""Unlearnable Clusters: J. Zhang, X. Ma, Q. Yi, J. Sang, Y.-G. Jiang, Y. Wang, C. Xu,
"Unlearnable Clusters: Towards Label-agnostic Unlearnable Examples", CVPR 2023 (Sec. 3, Fig. 3;
the authors' code jiamingzhang94/Unlearnable-Clusters).

Label-agnostic: the protector does not know the labels the data user (the "hacker") will train
with, so the noise may use no label. It is cluster-wise instead:

1. **K-means initial.** A surrogate f_s embeds the clean images, E = [e_1, ..., e_k]; K-means splits
   E into p clusters C = {C_1, ..., C_p} with centres mu_1, ..., mu_p (``kmeans_clusters``).
2. **Disrupting discrepancy and uniformity.** Each cluster C_i gets one perturbation
   delta_i = G(sigma; theta_i), the output of its own generator from a fixed noise input sigma,
   clipped to ||delta_i||_inf <= eps (16/255 in the authors' code), and

       theta_i = argmin_theta sum_{x in C_i} d( f_s(x + G(sigma; theta)), g(mu_i) ),

   the paper's L_DDU, with g(mu_i) = mu_{(i+1) mod p}: every cluster's images are pushed towards
   the next cluster's centre ("first gather, then rotate"), so that images of one cluster share a
   pattern (uniformity broken within) that points elsewhere (discrepancy broken between). d is, as
   the authors implement it, KL( softmax(g(mu_i)) || softmax(f_s(x + delta_i)) ) over the feature
   dimensions (``ddu_loss``), trained with Adam (lr 1e-4, 50 epochs in their scripts).

The generator (``ClusterGenerator``) is a small ResNet generator (conv, two stride-2 downsamplings,
residual blocks, two upsamplings, tanh) in the style of the authors' ``ResnetGenerator``. It uses
instance norm instead of batch norm: its only input is the fixed sigma, and instance norm computes
the same in training and evaluation, so the delta trained is the delta applied.

``craft_unlearnable_clusters`` returns the noise as an artifact (``availability.noise_artifact``:
p deltas and each sample's cluster in ``groups``), applied by ``availability.poison_training_set``.
It uses no label at all.
"""
from __future__ import annotations

import numbers

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from .. import train as T
from ..progress import bar as progress
from ..registry import register_attack
from ..rng import seeded
from .availability import check_budget, noise_artifact


def _positive_int(name: str, value) -> int:
    if not isinstance(value, numbers.Integral) or isinstance(value, bool) or value < 1:
        raise ValueError(f"{name}={value!r}: need an integer >= 1")
    return int(value)


def _images(x: torch.Tensor) -> torch.Tensor:
    x = T.as_nchw(x)
    if x.dtype != torch.uint8:
        raise ValueError(f"images of dtype {x.dtype}: unlearnable clusters take uint8 pixels")
    if x.ndim != 4 or len(x) == 0:
        raise ValueError(f"images of shape {tuple(x.shape)}: need a non-empty N x C x H x W batch")
    return x


@torch.no_grad()
def embed(features, x: torch.Tensor, batch_size: int = 500) -> torch.Tensor:
    """``features`` (images in [0, 1] -> [B, D]) of every uint8 image of ``x``, as float32 on the CPU."""
    out = []
    device = T.default_device()
    for i in range(0, len(x), batch_size):
        out.append(features(T.to_unit(x[i:i + batch_size]).to(device)).float().flatten(1).cpu())
    return torch.cat(out)


def kmeans_clusters(embeddings: torch.Tensor, p: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """K-means (scikit-learn, k-means++ with 3 restarts) of the [N, D] ``embeddings`` into ``p``
    clusters: each sample's cluster [N] and the centres [p, D]."""
    from sklearn.cluster import KMeans
    p = _positive_int("clusters", p)
    if p > len(embeddings):
        raise ValueError(f"clusters={p}: at most the {len(embeddings)} samples")
    km = KMeans(n_clusters=p, n_init=3, random_state=seed % 2 ** 32).fit(embeddings.numpy().astype(np.float64))
    return torch.as_tensor(km.labels_, dtype=torch.long), torch.as_tensor(km.cluster_centers_, dtype=torch.float32)


def ddu_loss(feats: torch.Tensor, target_centre: torch.Tensor) -> torch.Tensor:
    """d(f_s(x + delta), g(mu)): KL(softmax(target) || softmax(feats)), the mean over the batch."""
    target = F.softmax(target_centre.float(), dim=-1).expand_as(feats)
    return F.kl_div(F.log_softmax(feats.float(), dim=-1), target, reduction="batchmean")


class _Residual(nn.Module):
    def __init__(self, width: int):
        super().__init__()
        self.block = nn.Sequential(nn.Conv2d(width, width, 3, padding=1), nn.InstanceNorm2d(width, affine=True),
                                   nn.ReLU(), nn.Conv2d(width, width, 3, padding=1),
                                   nn.InstanceNorm2d(width, affine=True))

    def forward(self, x):
        return x + self.block(x)


class ClusterGenerator(nn.Module):
    """G(sigma; theta): a ResNet generator of ``width`` channels and ``blocks`` residual blocks whose
    output, eps * tanh(.), is one cluster's perturbation (module docstring)."""

    def __init__(self, channels: int = 3, width: int = 16, blocks: int = 2):
        super().__init__()
        w = _positive_int("width", width)
        norm = lambda c: nn.InstanceNorm2d(c, affine=True)  # noqa: E731
        self.net = nn.Sequential(
            nn.Conv2d(channels, w, 7, padding=3), norm(w), nn.ReLU(),
            nn.Conv2d(w, 2 * w, 3, stride=2, padding=1), norm(2 * w), nn.ReLU(),
            nn.Conv2d(2 * w, 4 * w, 3, stride=2, padding=1), norm(4 * w), nn.ReLU(),
            *[_Residual(4 * w) for _ in range(_positive_int("blocks", blocks))],
            nn.ConvTranspose2d(4 * w, 2 * w, 3, stride=2, padding=1, output_padding=1), norm(2 * w), nn.ReLU(),
            nn.ConvTranspose2d(2 * w, w, 3, stride=2, padding=1, output_padding=1), norm(w), nn.ReLU(),
            nn.Conv2d(w, channels, 7, padding=3), nn.Tanh())

    def forward(self, sigma: torch.Tensor, eps: float) -> torch.Tensor:
        return eps * self.net(sigma)


def train_cluster_generator(features, images: torch.Tensor, target_centre: torch.Tensor, *, eps: float,
                            epochs: float, batch_size: int, lr: float, width: int, blocks: int, seed: int,
                            desc: str = "cluster") -> tuple[torch.Tensor, list[float]]:
    """theta_i of the module docstring for one cluster's uint8 ``images``: its delta [C, H, W] (on
    the CPU) and the mean loss of each epoch."""
    device = T.default_device()
    n, c, h, w = images.shape
    with seeded(seed):
        gen = ClusterGenerator(c, width, blocks).to(device)
        sigma = torch.rand(1, c, h, w).to(device)  # the fixed noise input
    draw = torch.Generator().manual_seed(seed)
    opt = torch.optim.Adam(gen.parameters(), lr=lr)
    target = target_centre.to(device)
    batch = min(batch_size, n)
    per_epoch = -(-n // batch)
    total = max(1, round(epochs * per_epoch))
    history, running, seen = [], 0.0, 0
    with progress(total=total, desc=f"unlearnable clusters: {desc}", leave=False) as pbar:
        for step in range(total):
            if step % per_epoch == 0:
                order = torch.randperm(n, generator=draw)
            idx = order[(step % per_epoch) * batch:(step % per_epoch + 1) * batch]
            xb = T.to_unit(images[idx]).to(device)
            delta = gen(sigma, eps)
            loss = ddu_loss(features((xb + delta).clamp(0, 1)), target)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            running, seen = running + loss.item() * len(idx), seen + len(idx)
            if (step + 1) % per_epoch == 0 or step + 1 == total:
                history.append(running / seen)
                running, seen = 0.0, 0
            pbar.update(1)
    with torch.no_grad():
        delta = gen(sigma, eps)[0].float().cpu()
    return delta, history


@register_attack("unlearnable_clusters", paper="Zhang et al. 2023", notebook="13_unlearnable_clusters",
                 summary="label-agnostic cluster-wise noise: K-means on surrogate features, one generator per cluster "
                         "pushing its images towards the next cluster's centre",
                 timing="poisoning", goal="untargeted", knowledge="black-box", universality="universal",
                 influence="causative", violation="availability", specificity="indiscriminate")
def craft_unlearnable_clusters(features, x: torch.Tensor, *, clusters: int = 10, eps: float = 16 / 255,
                               epochs: float = 50, batch_size: int = 64, lr: float = 1e-4, width: int = 16,
                               blocks: int = 2, seed: int = 0) -> dict:
    """The cluster-wise noise of the uint8 images ``x`` (no labels): ``features`` is the surrogate
    f_s (a callable, images in [0, 1] -> [B, D] features, differentiable; its parameters are not
    trained). Returns ``availability.noise_artifact`` with ``groups`` (each sample's cluster),
    ``centres`` [p, D], ``cluster_sizes`` [p] and ``loss_history`` [p, epochs]."""
    x = _images(x)
    check_budget(eps)
    clusters = _positive_int("clusters", clusters)
    if clusters < 2:
        raise ValueError(f"clusters={clusters}: need at least 2 (each cluster is pushed to the next one's centre)")
    for name, value in (("epochs", epochs), ("lr", lr)):
        if not (isinstance(value, numbers.Real) and value > 0):
            raise ValueError(f"{name}={value!r}: must be positive")
    _positive_int("batch_size", batch_size)
    groups, centres = kmeans_clusters(embed(features, x), clusters, seed)
    deltas, histories, sizes = [], [], []
    for i in range(clusters):
        members = torch.nonzero(groups == i).flatten()
        sizes.append(len(members))
        if len(members) == 0:  # K-means leaves no cluster empty, but a delta must exist for every index
            deltas.append(torch.zeros(x.shape[1:]))
            histories.append([float("nan")] * max(1, round(epochs)))
            continue
        delta, history = train_cluster_generator(features, x[members], centres[(i + 1) % clusters], eps=eps,
                                                 epochs=epochs, batch_size=batch_size, lr=lr, width=width,
                                                 blocks=blocks, seed=seed + 1 + i, desc=f"cluster {i + 1}/{clusters}")
        deltas.append(delta)
        histories.append(history)
    width_h = max(len(h) for h in histories)
    loss = torch.tensor([h + [float("nan")] * (width_h - len(h)) for h in histories])
    return noise_artifact(torch.stack(deltas), eps=eps, by_class=False, groups=groups, centres=centres,
                          cluster_sizes=torch.tensor(sizes), loss_history=loss)
