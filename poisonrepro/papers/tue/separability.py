"""The linear-separability test of availability-attack perturbations (artifact TUE-LS).

Yu, Zhang, Chen, Liu and Yin 2022 (KDD), "Availability Attacks Create Shortcuts" (code
dayu11/Availability-Attacks-Create-Shortcuts), measure how separable a set of perturbations is
by fitting a simple model to the perturbations *alone*, each with the label of the image it was
added to, and reporting the model's **training** accuracy: near 100% means the perturbations are
a shortcut the victim can learn instead of the images. Ren et al. 2023 (ICLR), "Transferable
Unlearnable Examples" (code renjie3/TUE), motivate their class-wise separability discriminant
with this test; the lecture deck "Data Poisoning: Attacks and Defenses" (X. Ma) shows its table
(linear model / two-layer NN: clean data 49.9 / 70.1, DeepConfuse, NTGA and error-minimizing
noise 100 / 100, error-maximizing noise 91.5 / 99.9; ``reference/tue.csv``, keys ``ls.*``).

The procedure, as ``separability`` runs it (written from the description, not copied):

1. the perturbations (perturbed image minus clean image) are min-max scaled to [0, 1] with one
   minimum and one maximum over the whole tensor (a constant tensor becomes all zeros), and
   flattened to one feature vector per sample;
2. the model is a linear layer (``model="linear"``) or one hidden layer of ``hidden`` (30) tanh
   units and a linear output layer (``model="two_layer"``), with torch's default initialisation
   drawn under ``poisonrepro.rng.seeded(seed)``; the number of classes is ``labels.max() + 1``;
3. full-batch cross-entropy minimised with ``torch.optim.LBFGS`` (learning rate 0.5, torch's
   default 20 inner iterations per step, no line search) for ``steps`` (50) optimiser steps;
4. the result is the share of the training samples the trained model classifies correctly.

Where the fixed-step fit diverges (non-finite weights or loss; seen with the two-layer network on
error-minimising noise at 10,000 samples), the fit is redone from the same initialisation with
L-BFGS's strong-Wolfe line search (step 1), a departure from Yu et al.'s code that only replaces a
diverged fit.

UNCONFIRMED (not checked against the text of either paper): the global (rather than per-sample)
min-max scaling, the learning rate 0.5 and the 20 inner iterations per step (all from the
public code of Yu et al., where 50 is the number of ``optimizer.step`` calls); what Yu et al.
fit for the "clean data" row (the clean images themselves, presumably); and whether Ren et al.
reran the test or quote Yu et al.'s numbers. Yu et al.'s code fixes 10 classes (CIFAR-10); here
the labels give the number.
"""
from __future__ import annotations

import numbers

import torch
from torch import nn

from poisonrepro.rng import seeded

#: the models the test may fit, and what they are
MODELS = {"linear": "one linear layer", "two_layer": "one hidden layer of tanh units, then a linear layer"}
#: L-BFGS settings of Yu et al.'s code (UNCONFIRMED against the paper's text)
LR = 0.5
MAX_ITER = 20


def _validate(perturbations, labels, model, hidden, steps, seed) -> None:
    if not isinstance(perturbations, torch.Tensor):
        raise ValueError(f"perturbations: expected a torch.Tensor [N, C, H, W] of floats, got {type(perturbations).__name__}")
    if not perturbations.is_floating_point():
        raise ValueError(f"perturbations: expected a floating-point tensor, got dtype {perturbations.dtype}")
    if perturbations.dim() != 4:
        raise ValueError(f"perturbations: expected 4 dimensions [N, C, H, W], got shape {tuple(perturbations.shape)}")
    if perturbations.shape[0] < 1 or perturbations[0].numel() < 1:
        raise ValueError(f"perturbations: expected at least one sample and one feature, got shape "
                         f"{tuple(perturbations.shape)}")
    if not bool(torch.isfinite(perturbations).all()):
        raise ValueError("perturbations: contains NaN or infinite values; every value must be finite")
    if not isinstance(labels, torch.Tensor):
        raise ValueError(f"labels: expected a torch.Tensor [N] of dtype torch.long, got {type(labels).__name__}")
    if labels.dtype != torch.long:
        raise ValueError(f"labels: expected dtype torch.long (int64), got {labels.dtype}")
    if labels.dim() != 1 or labels.shape[0] != perturbations.shape[0]:
        raise ValueError(f"labels: expected shape [N] = [{perturbations.shape[0]}] (one label per perturbation), "
                         f"got {tuple(labels.shape)}")
    if int(labels.min()) < 0:
        raise ValueError(f"labels: class indices must be >= 0, got a minimum of {int(labels.min())}")
    if not isinstance(model, str) or model not in MODELS:
        raise ValueError(f"model={model!r}: allowed values are " + ", ".join(repr(m) for m in MODELS))
    for name, value in (("hidden", hidden), ("steps", steps)):
        if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < 1:
            raise ValueError(f"{name}={value!r}: must be a positive integer (>= 1)")
    if isinstance(seed, bool) or not isinstance(seed, numbers.Integral) or not 0 <= seed < 2 ** 63:
        raise ValueError(f"seed={seed!r}: must be an integer in [0, 2**63)")


def _scaled_features(perturbations: torch.Tensor) -> torch.Tensor:
    """The perturbations flattened to [N, C*H*W] and min-max scaled to [0, 1] over the whole tensor."""
    x = perturbations.detach().reshape(perturbations.shape[0], -1).float()
    lo, hi = x.min(), x.max()
    if hi > lo:
        return (x - lo) / (hi - lo)
    return torch.zeros_like(x)


def separability(perturbations: torch.Tensor, labels: torch.Tensor, *, model: str = "linear",
                 hidden: int = 30, steps: int = 50, seed: int = 0) -> float:
    """The training accuracy, in [0, 1], of ``model`` fit with L-BFGS to the min-max scaled
    ``perturbations`` [N, C, H, W] and their ``labels`` [N] (see the module's docstring).
    Deterministic for a given seed on a given device; the global random generators are given
    back as they were. Raises ValueError on a bad argument before any compute, RuntimeError if
    the fit diverges (a non-finite loss)."""
    _validate(perturbations, labels, model, hidden, steps, seed)
    x = _scaled_features(perturbations)
    y = labels.detach().to(x.device)
    n_features, n_classes = x.shape[1], int(y.max()) + 1
    for line_search in (None, "strong_wolfe"):  # Yu et al.'s fixed step first; a line search where it diverges
        with seeded(int(seed)):
            if model == "linear":
                net = nn.Linear(n_features, n_classes)
            else:
                net = nn.Sequential(nn.Linear(n_features, int(hidden)), nn.Tanh(), nn.Linear(int(hidden), n_classes))
        logits, loss = _fit(net.to(x.device), x, y, steps, line_search)
        if bool(torch.isfinite(loss)):
            return float((logits.argmax(dim=1) == y).float().mean())
    raise RuntimeError(f"separability: the L-BFGS fit diverged (loss {float(loss)}) after {steps} steps, with and "
                       "without a line search")


def _fit(net: nn.Module, x: torch.Tensor, y: torch.Tensor, steps: int, line_search: str | None):
    """``steps`` L-BFGS steps of full-batch cross-entropy; the final logits and loss (NaN where the
    fit diverged)."""
    loss_fn = nn.CrossEntropyLoss()
    optimizer = torch.optim.LBFGS(net.parameters(), lr=LR if line_search is None else 1.0, max_iter=MAX_ITER,
                                  line_search_fn=line_search)

    def closure():
        optimizer.zero_grad()
        loss = loss_fn(net(x), y)
        loss.backward()
        return loss

    for _ in range(int(steps)):
        optimizer.step(closure)
        if not all(bool(torch.isfinite(p).all()) for p in net.parameters()):
            return None, torch.tensor(float("nan"))
    with torch.no_grad():
        logits = net(x)
        return logits, loss_fn(logits, y)
