"""A labelled STAND-IN for DeepConfuse: J. Feng, Q.-Z. Cai, Z.-H. Zhou, "Learning to Confuse:
Generating Training Time Adversarial Data with Auto-Encoder", NeurIPS 2019, a baseline of
Unlearnable Clusters (Zhang et al. 2023, notebook 13). It is not the authors' method; read its
numbers as "an auto-encoder noise trained against a clean-training trajectory", not as DeepConfuse.

The paper trains an auto-encoder g that maps each training image x to a bounded perturbation, so
that a classifier f trained on {(x + g(x), y)} does badly: g maximises the loss of the
classifiers trained on its outputs. The bilevel problem is approximated by alternating updates of
g and f along f's training trajectory (their Algorithm 1). This stand-in, for ``rounds`` rounds:

(a) trains the caller's classifier ``model`` (train mode) for ``classifier_steps`` SGD steps
    (lr ``classifier_lr``, momentum 0.9, weight decay 5e-4) on clean mini-batches: the
    trajectory f_1, f_2, ... of clean training;
(b) with f_t fixed (eval mode, parameters frozen), trains the generator g for ``generator_steps``
    Adam steps (lr ``generator_lr``) to maximise  CE(f_t(clip(x + g(x), 0, 1)), y)  on mini-batches;

and finally returns g(x) for every training image (no grad), clipped so that x + delta stays in
[0, 1], as a sample-wise artifact (``availability.noise_artifact``).

The generator (``PerturbationGenerator``) is a small convolutional auto-encoder: conv(C -> w,
stride 2) - ReLU - conv(w -> 2w, stride 2) - ReLU - convtranspose(2w -> w, x2) - ReLU -
convtranspose(w -> w, x2) - ReLU - conv(w -> C), cropped to the input's size; its output is
eps * tanh(raw), so ||g(x)||_inf <= eps by construction.

Departures from the paper (UNCONFIRMED details of the original, which this stand-in does not try
to match): the paper's generator is a larger encoder-decoder (U-Net style) whose bound is
enforced as the authors do, not necessarily by eps * tanh; the paper's objective is, as we read
it, the loss on clean data of a classifier after a pseudo-update on g's outputs (differentiated
through that update), whereas here g directly maximises the fixed f_t's loss on the perturbed
images (an error-maximising auto-encoder, closer to the adversarial poisons of Fowl et al. 2021);
the classifier here follows clean training, not training on g's outputs; the schedule (rounds,
steps, learning rates, optimisers) is this stand-in's own; the paper's budget was eps = 0.032
(about 8/255). The classifier and its device are the caller's: the generator runs where ``model``
is (as the crafting loop runs where its models are), and everything comes back on the CPU.
"""
from __future__ import annotations

import math
import numbers

import torch
import torch.nn.functional as F
from torch import nn

from .. import train as T
from ..registry import register_attack
from ..rng import seeded
from .availability import check_budget, check_training_set, noise_artifact
from .crafting import device_of

DEFAULTS = dict(rounds=40, classifier_steps=50, generator_steps=50)  # the stand-in's schedule, not the paper's


class PerturbationGenerator(nn.Module):
    """g: a small convolutional auto-encoder from [0, 1] images [B, C, H, W] to perturbations
    eps * tanh(raw) of the same shape (module docstring)."""

    def __init__(self, channels: int = 3, width: int = 16, eps: float = 8 / 255):
        super().__init__()
        self.eps = float(eps)
        self.encoder = nn.Sequential(nn.Conv2d(channels, width, 3, stride=2, padding=1), nn.ReLU(),
                                     nn.Conv2d(width, 2 * width, 3, stride=2, padding=1), nn.ReLU())
        self.decoder = nn.Sequential(nn.ConvTranspose2d(2 * width, width, 4, stride=2, padding=1), nn.ReLU(),
                                     nn.ConvTranspose2d(width, width, 4, stride=2, padding=1), nn.ReLU(),
                                     nn.Conv2d(width, channels, 3, padding=1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h, w = x.shape[-2:]
        raw = self.decoder(self.encoder(x))[..., :h, :w]  # 4 * ceil(ceil(H / 2) / 2) >= H rows: crop
        return self.eps * torch.tanh(raw)


class _Batches:
    """Mini-batch indices of a set of ``n``, a new seeded order every epoch."""

    def __init__(self, n: int, batch_size: int, generator: torch.Generator):
        self.n, self.batch_size, self.generator = n, min(batch_size, n), generator
        self.order, self.cursor = torch.randperm(n, generator=generator), 0

    def next(self) -> torch.Tensor:
        if self.cursor >= self.n:
            self.order, self.cursor = torch.randperm(self.n, generator=self.generator), 0
        idx = self.order[self.cursor:self.cursor + self.batch_size]
        self.cursor += self.batch_size
        return idx


def _integer(name: str, value, minimum: int) -> None:
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < minimum:
        raise ValueError(f"{name}={value!r}: need an integer >= {minimum}")


def _positive(name: str, value, hint: str) -> None:
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or not 0 < value < math.inf:
        raise ValueError(f"{name}={value!r}: need a finite learning rate > 0 ({hint})")


def _check(model, x, y, *, eps, rounds, classifier_steps, generator_steps, batch_size, classifier_lr,
           generator_lr, width, seed) -> torch.Tensor:
    if not isinstance(model, nn.Module):
        raise ValueError(f"model: need an nn.Module mapping [0, 1] images to logits, got {type(model).__name__}")
    check_budget(eps)
    y = check_training_set(x, y)
    _integer("rounds", rounds, 1)
    _integer("classifier_steps", classifier_steps, 0)
    _integer("generator_steps", generator_steps, 1)
    _integer("batch_size", batch_size, 1)
    _integer("width", width, 1)
    _positive("classifier_lr", classifier_lr, "SGD on the classifier, 0.05 by default")
    _positive("generator_lr", generator_lr, "Adam on the generator, 1e-3 by default")
    if isinstance(seed, bool) or not isinstance(seed, numbers.Integral):
        raise ValueError(f"seed={seed!r}: need an integer")
    return y


@register_attack("deepconfuse", paper="Feng et al. 2019 (stand-in; baseline of Zhang et al. 2023)",
                 notebook="13_unlearnable_clusters",
                 summary="STAND-IN for DeepConfuse: an auto-encoder trained to maximise the loss of a classifier "
                         "along its clean training trajectory; its outputs are sample-wise L-inf noise",
                 timing="poisoning", goal="untargeted", knowledge="gray-box", universality="individual",
                 influence="causative", violation="availability", specificity="indiscriminate")
def craft_deepconfuse(model: nn.Module, x: torch.Tensor, y: torch.Tensor, *, eps: float = 8 / 255,
                      rounds: int = DEFAULTS["rounds"], classifier_steps: int = DEFAULTS["classifier_steps"],
                      generator_steps: int = DEFAULTS["generator_steps"], batch_size: int = 256,
                      classifier_lr: float = 0.05, generator_lr: float = 1e-3, width: int = 16, seed: int = 0,
                      desc: str = "DeepConfuse (stand-in)") -> dict:
    """The stand-in's noise for the training set (``x`` uint8 or floats in [0, 1], ``y``) by the
    alternation of the module docstring. ``model`` (the classifier f, images in [0, 1] -> logits)
    is trained in place along clean training (``classifier_steps=0``: a fixed classifier); its
    train/eval mode and ``requires_grad`` flags are restored. Everything is seeded from ``seed``
    (the generator's initialisation, the mini-batches, any randomness of the model's forward).

    Returns ``availability.noise_artifact`` (sample-wise) with ``generator_loss`` [rounds] (the
    generator's mean objective, the classifier's CE on the perturbed batches, in each round),
    ``classifier_loss`` [rounds] (the mean clean CE of each round's classifier steps; NaN without
    them) and ``rounds``."""
    y = _check(model, x, y, eps=eps, rounds=rounds, classifier_steps=classifier_steps,
               generator_steps=generator_steps, batch_size=batch_size, classifier_lr=classifier_lr,
               generator_lr=generator_lr, width=width, seed=seed)
    device = device_of(model)
    n = len(x)
    params = list(model.parameters())
    requires = [p.requires_grad for p in params]
    was_training = model.training
    generator_loss, classifier_loss = [], []
    try:
        with seeded(seed):
            gen = PerturbationGenerator(x.shape[1], width, eps).to(device)
            gen_opt = torch.optim.Adam(gen.parameters(), lr=generator_lr)
            trainable = [p for p in params if p.requires_grad]
            clf_opt = (torch.optim.SGD(trainable, lr=classifier_lr, momentum=0.9, weight_decay=5e-4)
                       if classifier_steps > 0 and trainable else None)
            draws = torch.Generator().manual_seed(seed)
            clf_batches, gen_batches = _Batches(n, batch_size, draws), _Batches(n, batch_size, draws)

            def batch(idx):
                return T.to_unit(x[idx]).to(device), y[idx].to(device)

            for _ in T.progress(range(rounds), desc=desc, leave=False):
                # (a) the classifier's next steps along clean training
                losses = []
                if clf_opt is not None:
                    model.train()
                    for _ in range(classifier_steps):
                        xb, yb = batch(clf_batches.next())
                        loss = F.cross_entropy(model(xb), yb)
                        clf_opt.zero_grad(set_to_none=True)
                        loss.backward()
                        clf_opt.step()
                        losses.append(loss.item())
                classifier_loss.append(sum(losses) / len(losses) if losses else math.nan)
                # (b) the generator against the fixed f_t: ascend its loss on the perturbed batches
                model.eval()
                for p in params:
                    p.requires_grad_(False)
                losses = []
                for _ in range(generator_steps):
                    xb, yb = batch(gen_batches.next())
                    loss = F.cross_entropy(model((xb + gen(xb)).clamp(0, 1)), yb)
                    gen_opt.zero_grad(set_to_none=True)
                    (-loss).backward()
                    gen_opt.step()
                    losses.append(loss.item())
                for p, flag in zip(params, requires):
                    p.requires_grad_(flag)
                generator_loss.append(sum(losses) / len(losses))

            deltas = []
            with torch.no_grad():
                for start in range(0, n, batch_size):
                    xb = T.to_unit(x[start:start + batch_size]).to(device)
                    deltas.append(((xb + gen(xb)).clamp(0, 1) - xb).float().cpu())
    finally:
        for p, flag in zip(params, requires):
            p.requires_grad_(flag)
        model.train(was_training)
    return noise_artifact(torch.cat(deltas), eps=eps, by_class=False, groups=torch.arange(n),
                          generator_loss=torch.tensor(generator_loss), classifier_loss=torch.tensor(classifier_loss),
                          rounds=rounds)
