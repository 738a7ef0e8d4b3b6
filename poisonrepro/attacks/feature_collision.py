"""Feature collision ("Poison Frogs"): Shafahi et al., "Poison Frogs! Targeted Clean-Label
Poisoning Attacks on Neural Networks", NeurIPS 2018, Eq. (1) and Algorithm 1.

    p = argmin_x ||f(x) - f(t)||^2 + beta ||x - b||^2                       (Eq. 1)

solved by forward-backward splitting (Algorithm 1):

    forward:  x^ = x - lambda * grad_x ||f(x) - f(t)||^2
    backward: x  = (x^ + lambda * beta * b) / (1 + lambda * beta)            (prox of beta||x-b||^2)

with images clipped to the valid pixel range after each step. The paper scales beta with
the dimensions of the feature and input spaces, beta = beta0 * 2048^2 / dim_b^2 (Sec. 4.1,
Eq. 2), and its end-to-end experiment (Sec. 4.2) gives a raw beta = 0.1 for the fixed-size
32x32 CIFAR images. The step size is halved, and the step thrown away, whenever the objective
rises above the mean of its last 40 values, and crafting stops early once the relative change
of the objective falls below 1e-10 (both from the authors' released code,
ashafahi/inceptionv3-transferLearn-poison).

Pixel scale. The paper's beta, and the authors' code, work on pixels in [0, 255]; this
project's images are in [0, 1]. The feature term does not depend on the pixel scale (the
network sees the same image either way), but for an image x' = 255 x the penalty is
beta ||x' - b'||^2 = (255^2 beta) ||x - b||^2. So the paper's beta is 255^2 times *larger*
on the [0, 1] scale: ``paper_beta`` and ``beta_01`` return it so (``PIXEL_SCALE``).

Watermarking (Sec. 4.2): for end-to-end training the base is first blended with the target,
b <- gamma * t + (1 - gamma) * b, at opacity gamma (``watermark``).

The L-inf variant (``eps``): the benchmark of Schwarzschild et al., "Just How Toxic is Data
Poisoning?", ICML 2021 (``craft_poisons_fc.py``), replaces the proximal step by the projection
onto the box ||x - b||_inf <= eps (and [0, 1]) around the *base*, and minimises the feature term
alone (the watermarked start lies outside the box; the benchmark accepts its first projected step
whatever its objective, here the start is the watermark's projection, and every step is judged
against it):

    forward:  x^ = x - lambda * grad_x ||f(x) - f(t)||^2
    backward: x  = clip_[0,1]( b + clip_[-eps,eps](x^ - b) )

(its defaults: 120 iterations, step 0.001 on [0, 1] pixels, watermark opacity 0.3, eps 8/255).
The benchmark multiplies the step by 0.2 whenever the objective rises; here the step-size rule
above is kept for both variants.

All pairs (base_i, target_i) of a batch are optimised at once, each with its own step size.
``Resized`` lets poisons live at a higher resolution than the network's input, as in the
authors' pipeline (raw ImageNet images, bilinearly resized to InceptionV3's 299x299).
"""
from __future__ import annotations

import torch

from ..registry import register_attack
from ..train import progress


PIXEL_SCALE = 255.0  # the paper's pixels are in [0, 255], ours in [0, 1]


def beta_01(beta_255: float) -> float:
    """A beta given on the paper's [0, 255] pixel scale, on this project's [0, 1] scale."""
    return beta_255 * PIXEL_SCALE ** 2


def paper_beta(beta0: float, feature_dim: int, input_dim: int) -> float:
    """Eq. 2, beta = beta0 * 2048^2 / dim_b^2 on the [0, 255] scale (2048 is InceptionV3's
    feature dimension, generalised to ``feature_dim``), returned on the [0, 1] scale."""
    return beta_01(beta0 * feature_dim ** 2 / input_dim ** 2)


class Resized(torch.nn.Module):
    """A network that sees its input bilinearly resized (with antialiasing) to ``size``:
    poisons crafted through it live at the input's own, higher resolution."""

    def __init__(self, model, size: int):
        super().__init__()
        self.model, self.size = model, size
        self.feature_dim = model.feature_dim

    def _resize(self, x):
        if x.shape[-1] == self.size:
            return x
        return torch.nn.functional.interpolate(x, size=(self.size, self.size), mode="bilinear",
                                               antialias=True, align_corners=False)

    def features(self, x):
        return self.model.features(self._resize(x))

    def forward(self, x):
        return self.model(self._resize(x))


def perturbation_size(poisons: torch.Tensor, bases: torch.Tensor) -> dict:
    """L2 and L-inf of poison - base per poison, on the paper's 0-255 pixel scale."""
    d = (poisons - bases).flatten(1) * PIXEL_SCALE
    return {"l2_255": d.norm(dim=1), "linf_255": d.abs().max(dim=1).values}


def watermark(base: torch.Tensor, target: torch.Tensor, opacity: float) -> torch.Tensor:
    """b <- gamma * t + (1 - gamma) * b (Sec. 4.2)."""
    if not 0 <= opacity <= 1:
        raise ValueError(f"opacity={opacity}: must lie in [0, 1]")
    return opacity * target + (1 - opacity) * base


def collision_objective(model, x, target_features, base, beta) -> torch.Tensor:
    """Per-pair value of Eq. (1)."""
    feat = model.features(x)
    return ((feat - target_features) ** 2).flatten(1).sum(1) + beta * ((x - base) ** 2).flatten(1).sum(1)


@register_attack("feature_collision", paper="Shafahi et al. 2018 (Poison Frogs)",
                 notebook="01_poison_frogs",
                 summary="clean-label poison colliding with the target in feature space",
                 timing="poisoning", goal="targeted", knowledge="white-box", universality="individual",
                 influence="causative", violation="integrity", specificity="targeted")
def craft_poisons(model, base: torch.Tensor, target: torch.Tensor, *, beta: float, iters: int,
                  lr: float, opacity: float = 0.0, decay_window: int = 40, tol: float = 1e-10,
                  eps: float | None = None, desc: str = "crafting poisons") -> tuple[torch.Tensor, torch.Tensor]:
    """Poisons for each (base_i, target_i) pair; ``target`` may be one image for all bases.
    ``eps`` (on the [0, 1] scale): the benchmark's L-inf variant (projection instead of the
    proximal step; ``beta`` must then be 0).

    Returns ``(poisons, history)``: poisons in [0, 1] with the base's label unchanged, and the
    objective of Eq. (1) per pair and iteration, shape [<= iters + 1, P]
    (shorter when every pair stopped early). The crafting runs where ``model`` is (a GPU, say); both
    come back where ``base`` is.
    """
    if beta < 0 or lr <= 0 or iters < 0:
        raise ValueError(f"need beta >= 0, lr > 0, iters >= 0 (got beta={beta}, lr={lr}, iters={iters})")
    if eps is not None and not 0 < eps <= 1:
        raise ValueError(f"eps={eps!r}: an L-inf budget on the [0, 1] pixel scale lies in (0, 1] (did you mean "
                         f"{eps}/255?)")
    if eps is not None and beta != 0:
        raise ValueError("eps and beta: the L-inf variant projects onto the budget and has no penalty; pass beta=0")
    home = base.device
    device = next(model.parameters(), base).device
    base, target = base.to(device), target.to(device)
    if target.shape[0] == 1:
        target = target.expand_as(base)
    model.eval()
    trainable = [p.requires_grad for p in model.parameters()]
    for p in model.parameters():  # gradients w.r.t. the image only
        p.requires_grad_(False)
    with torch.no_grad():
        target_features = model.features(target)
    anchor = watermark(base, target, opacity) if opacity > 0 else base
    x = anchor.clone()
    if eps is not None:  # start inside the budget: the watermarked start projected onto it, scored there
        x = (base + (x - base).clamp(-eps, eps)).clamp(0, 1)
    step = torch.full((len(base),), float(lr), device=device)
    active = torch.ones(len(base), dtype=torch.bool, device=device)
    with torch.no_grad():
        history = [collision_objective(model, x, target_features, anchor, beta)]
    bar = progress(range(iters), desc=desc, leave=False)
    for _ in bar:
        x.requires_grad_(True)
        feat_loss = ((model.features(x) - target_features) ** 2).flatten(1).sum(1)
        (grad,) = torch.autograd.grad(feat_loss.sum(), x)
        with torch.no_grad():
            lam = (step * active)[:, None, None, None]
            x_hat = x - lam * grad                                   # forward step
            if eps is None:
                cand = ((x_hat + lam * beta * anchor) / (1 + lam * beta)).clamp(0, 1)  # backward (prox) step
            else:  # the benchmark's projection onto the budget around the base
                cand = (base + (x_hat - base).clamp(-eps, eps)).clamp(0, 1)
            obj = collision_objective(model, cand, target_features, anchor, beta)
            rel = (history[-1] - obj).abs() / history[-1].clamp_min(1e-12)
            # as in the authors' code: an objective above the mean of the last values means the
            # step is too large; halve it and throw the candidate away
            worse = obj > torch.stack(history[-decay_window:]).mean(0)
            step = torch.where(worse, step * 0.5, step)
            x = torch.where(worse[:, None, None, None], x.detach(), cand)
            obj = torch.where(worse, history[-1], obj)
            active &= rel >= tol
            history.append(obj)
        if not active.any():
            break
    for p, flag in zip(model.parameters(), trainable):
        p.requires_grad_(flag)
    return x.detach().to(home), torch.stack(history).to(home)
