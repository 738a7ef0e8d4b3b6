"""Back-gradient poisoning: L. Munoz-Gonzalez, B. Biggio, A. Demontis, A. Paudice,
V. Wongrassamee, E. C. Lupu, F. Roli, "Towards Poisoning of Deep Learning Algorithms with
Back-gradient Optimization", AISec 2017 (arXiv:1708.08689).

The attacker solves the bi-level problem (the lecture's "Optimal Poisoning Attacks")

    x_p* in argmax_{x_p in [0,1]^d} A(w*, D_val)   s.t.  w* in argmin_w C_tr(w, D_tr u {(x_p, y_p)})

by projected gradient ascent on x_p. The gradient dA/dx_p is computed by *back-gradient
descent* (Algorithm 2): the learner is trained by T steps of gradient descent (Algorithm 1),
and reverse-mode differentiation runs backwards through those T steps, recovering each
w_{t-1} = w_t + alpha g(w_t) by reversing the update instead of storing the trajectory:

    dx_p <- dx_p - alpha dw . d/dx_p grad_w C_tr(w_t, x_p)
    dw   <- dw   - alpha dw . d/dw   grad_w C_tr(w_t, x_p)
    w_{t-1} = w_t + alpha grad_w C_tr(w_t, x_p)

Hessian-vector products come from double backward (``torch.func``), never a Hessian. The
learners are functional models on one flat float64 parameter vector: ADALINE (squared loss on
+-1 targets), logistic regression, a one-hidden-layer tanh network, and multiclass (softmax)
logistic regression for the paper's MNIST multiclass experiments.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch.func import grad

from ..registry import register_attack

LEARNERS = ("adaline", "logistic", "mlp")
DTYPE = torch.float64


@dataclass(frozen=True)
class Learner:
    """A classifier as a loss on a flat parameter vector. Binary labels are 0/1; multiclass
    labels 0..K-1 (``kind='softmax'``). ``noise_rate`` > 0 replaces the logistic loss by the
    unbiased estimator of Natarajan et al. (NIPS 2013) for symmetric label noise of that rate."""
    kind: str
    n_features: int
    n_classes: int = 2
    hidden: int = 10
    weight_decay: float = 0.0
    noise_rate: float = 0.0

    def __post_init__(self):
        if self.kind not in LEARNERS + ("softmax",):
            raise ValueError(f"unknown learner {self.kind!r}; allowed: {', '.join(LEARNERS + ('softmax',))}")
        if not 0 <= self.noise_rate < 0.5:
            raise ValueError(f"noise_rate={self.noise_rate}: must lie in [0, 0.5)")

    @property
    def n_params(self) -> int:
        d = self.n_features
        if self.kind == "mlp":
            return d * self.hidden + 2 * self.hidden + 1
        if self.kind == "softmax":
            return (d + 1) * self.n_classes
        return d + 1

    def init(self, seed: int = 0) -> torch.Tensor:
        """Zeros for the convex learners; a seeded small random start for the network (the
        victim and a full-knowledge attacker share it)."""
        w = torch.zeros(self.n_params, dtype=DTYPE)
        if self.kind == "mlp":
            g = torch.Generator().manual_seed(seed)
            d, h = self.n_features, self.hidden
            w[:d * h] = torch.randn(d * h, generator=g, dtype=DTYPE) / math.sqrt(d)
            w[d * h + h:d * h + 2 * h] = torch.randn(h, generator=g, dtype=DTYPE) / math.sqrt(h)
        return w

    def scores(self, w: torch.Tensor, X: torch.Tensor) -> torch.Tensor:
        """[n] scores of the positive class (binary) or [n, K] logits (softmax)."""
        d = self.n_features
        if self.kind == "mlp":
            h = self.hidden
            W1, b1 = w[:d * h].view(d, h), w[d * h:d * h + h]
            w2, b2 = w[d * h + h:d * h + 2 * h], w[-1]
            return torch.tanh(X @ W1 + b1) @ w2 + b2
        if self.kind == "softmax":
            W = w.view(d + 1, self.n_classes)
            return X @ W[:d] + W[d]
        return X @ w[:d] + w[d]

    def sample_losses(self, w, X, y) -> torch.Tensor:
        s = self.scores(w, X)
        if self.kind == "softmax":
            return F.cross_entropy(s, y.long(), reduction="none")
        if self.kind == "adaline":
            return 0.5 * (s - (2 * y - 1)) ** 2
        yf = y.to(s.dtype)
        loss = F.binary_cross_entropy_with_logits(s, yf, reduction="none")
        if self.noise_rate:
            rho = self.noise_rate
            flipped = F.binary_cross_entropy_with_logits(s, 1 - yf, reduction="none")
            loss = ((1 - rho) * loss - rho * flipped) / (1 - 2 * rho)
        return loss

    def loss(self, w, X, y) -> torch.Tensor:
        """The training cost C_tr: mean loss plus (weight_decay / 2) ||w||^2."""
        return self.sample_losses(w, X, y).mean() + 0.5 * self.weight_decay * (w * w).sum()

    def _dscores(self, s, y):
        """d sample_loss / d score, per sample."""
        if self.kind == "softmax":
            return torch.softmax(s, 1) - F.one_hot(y.long(), self.n_classes).to(s.dtype)
        if self.kind == "adaline":
            return s - (2 * y - 1)
        rho = self.noise_rate  # Natarajan et al.'s loss: sigma(s) - (y - rho) / (1 - 2 rho); rho = 0: logistic
        return torch.sigmoid(s) - (y.to(s.dtype) - rho) / (1 - 2 * rho)

    def gradient(self, w, X, y) -> torch.Tensor:
        """grad_w of ``loss`` in closed form (training runs thousands of these; autograd's
        per-call overhead would dominate at this size). A test checks it against autograd."""
        n, d = X.shape
        if self.kind == "mlp":
            h_ = self.hidden
            W1, b1, w2 = w[:d * h_].view(d, h_), w[d * h_:d * h_ + h_], w[d * h_ + h_:d * h_ + 2 * h_]
            hid = torch.tanh(X @ W1 + b1)
            g = self._dscores(hid @ w2 + w[-1], y) / n
            dh = g[:, None] * w2[None, :] * (1 - hid * hid)
            out = torch.cat([(X.T @ dh).flatten(), dh.sum(0), hid.T @ g, g.sum()[None]])
        else:
            g = self._dscores(self.scores(w, X), y) / n
            out = torch.cat([X.T @ g, g.sum(0)[None]]).flatten()  # softmax: W is [d + 1, K], row-major
        return out + self.weight_decay * w

    def predict(self, w, X) -> torch.Tensor:
        s = self.scores(w, X)
        return s.argmax(1) if self.kind == "softmax" else (s > 0).long()

    def error(self, w, X, y) -> float:
        return (self.predict(w, X) != y.long()).double().mean().item()


def as_tensor(a) -> torch.Tensor:
    return torch.as_tensor(a, dtype=DTYPE)


def train_gd(learner: Learner, X, y, *, steps: int, lr: float, w0: torch.Tensor | None = None) -> torch.Tensor:
    """Algorithm 1: ``steps`` full-batch gradient-descent steps from ``w0`` (default: init)."""
    X, y = as_tensor(X), as_tensor(y)
    # the initial weights are drawn on the CPU (as ever) and join the data, which may be on a GPU
    w = learner.init().to(X.device) if w0 is None else w0.clone()
    for _ in range(steps):
        w = w - lr * learner.gradient(w, X, y)
    return w


def back_gradient(learner: Learner, w_T: torch.Tensor, X_tr, y_tr, X_p, y_p, objective, *, steps: int,
                  lr: float) -> torch.Tensor:
    """Algorithm 2: d objective(w_T) / d X_p, back through ``steps`` reversed GD steps.

    ``objective(w)`` is the attacker's A on the validation data; the training set is
    D_tr u D_p, with the poisons X_p (the variable) and their fixed labels y_p.
    """
    X_tr, y_tr, X_p, y_p = as_tensor(X_tr), as_tensor(y_tr), as_tensor(X_p), as_tensor(y_p)
    y_all = torch.cat([y_tr, y_p])

    def cost(w, xp):
        return learner.loss(w, torch.cat([X_tr, xp]), y_all)

    grad_w = grad(cost, argnums=0)

    def directional(w, xp, v):  # <grad_w C_tr(w, x_p), v>; its gradients are the two HVPs
        return (grad_w(w, xp) * v).sum()

    hvps = grad(directional, argnums=(0, 1))
    dw = grad(objective)(w_T)
    dxp = torch.zeros_like(X_p)
    w = w_T
    for _ in range(steps):
        hw, hx = hvps(w, X_p, dw)
        dxp = dxp - lr * hx
        dw = dw - lr * hw
        w = w + lr * learner.gradient(w, torch.cat([X_tr, X_p]), y_all)  # reverse the update, not stored
    return dxp


def unrolled_gradient(learner: Learner, w0, X_tr, y_tr, X_p, y_p, objective, *, steps: int, lr: float):
    """Reference for the tests: autograd through T stored GD steps from ``w0`` (exact
    reverse mode, memory O(T)); returns (d objective / d X_p, w_T)."""
    X_tr, y_tr = as_tensor(X_tr), as_tensor(y_tr)
    xp = as_tensor(X_p).clone().requires_grad_(True)
    X, y = torch.cat([X_tr, xp]), torch.cat([y_tr, as_tensor(y_p)])
    w = w0.clone().requires_grad_(True)
    for _ in range(steps):
        (g,) = torch.autograd.grad(learner.loss(w, X, y), w, create_graph=True)
        w = w - lr * g
    (dx,) = torch.autograd.grad(objective(w), xp)
    return dx, w.detach()


def validation_objective(learner: Learner, X_val, y_val, target_labels=None):
    """The attacker's A(w): error-generic: the validation loss (to be raised); error-specific:
    minus the loss of the validation set relabeled with ``target_labels`` (e.g. every 8 as 3),
    so that raising A pushes the model towards the chosen errors (Munoz-Gonzalez et al., Sec. 3)."""
    X_val = as_tensor(X_val)
    if target_labels is None:
        y_val = as_tensor(y_val)
        return lambda w: learner.sample_losses(w, X_val, y_val).mean()
    t = as_tensor(target_labels)
    return lambda w: -learner.sample_losses(w, X_val, t).mean()


@dataclass
class PoisonRun:
    """Poisons in the order they were added, their labels, and the attacker's objective after
    each attack iteration of each round."""
    X_p: torch.Tensor
    y_p: torch.Tensor
    objective: list = field(default_factory=list)
    paths: list = field(default_factory=list)  # per round: [iterations + 1, per_round, d]


def binary_step(x: torch.Tensor, g: torch.Tensor, flips: int) -> torch.Tensor:
    """Flip the ``flips`` bits of each binary row of ``x`` that raise the objective most to
    first order (gain g_j (1 - 2 x_j)); a bit with no positive gain is left alone."""
    if not ((x == 0) | (x == 1)).all():
        raise ValueError("binary_flips needs poisons of 0/1 features")
    gain, idx = (g * (1 - 2 * x)).topk(min(flips, x.shape[1]), dim=1)
    flip = torch.zeros_like(x, dtype=torch.bool).scatter(1, idx, gain > 0)
    return torch.where(flip, 1 - x, x)


@register_attack("back_gradient", paper="Munoz-Gonzalez et al. 2017", notebook="06_back_gradient",
                 summary="insert points whose features maximise the validation loss; gradient by reversing T "
                         "steps of the learner's gradient descent (Algorithm 2)",
                 timing="poisoning", goal="untargeted", knowledge="white-box", universality="universal",
                 influence="causative", violation="availability", specificity="indiscriminate")
def craft_poisons(learner: Learner, X_tr, y_tr, objective, init_points, init_labels, *, per_round: int,
                  attack_iters: int, attack_step: float, train_steps: int, train_lr: float, inner_steps: int,
                  inner_lr: float, project=None, keep_path: bool = False, bar=None,
                  binary_flips: int = 0) -> PoisonRun:
    """Greedy rounds of ``per_round`` poisons (the paper adds one at a time): each round starts
    from the given initial points (validation points with flipped labels), trains the learner on
    D_tr plus the poisons so far, then alternates T warm-started training steps with a
    back-gradient step of normalised gradient ascent, projected onto [0, 1]^d (and onto
    ``project(x, y)`` when a detectability constraint is given).

    ``binary_flips`` > 0 keeps poisons of binary features binary: instead of the continuous
    step, each iteration flips the ``binary_flips`` bits of each poison whose first-order gain
    ``g_j (1 - 2 x_j)`` is largest and positive (the initial points must be 0/1; ``project``
    must then keep them binary too)."""
    X_tr, y_tr = as_tensor(X_tr), as_tensor(y_tr)
    init_points, init_labels = as_tensor(init_points), as_tensor(init_labels)
    X_p, y_p = X_tr[:0], y_tr[:0]
    objectives, paths = [], []
    for start in range(0, len(init_points), per_round):
        x = init_points[start:start + per_round].clone()
        yc = init_labels[start:start + per_round]
        if project is not None:
            x = project(x, yc)
        X_fix, y_fix = torch.cat([X_tr, X_p]), torch.cat([y_tr, y_p])
        w = train_gd(learner, torch.cat([X_fix, x]), torch.cat([y_fix, yc]), steps=train_steps, lr=train_lr)
        path, values = [x.clone()], []
        for _ in range(attack_iters):
            w = train_gd(learner, torch.cat([X_fix, x]), torch.cat([y_fix, yc]), steps=inner_steps, lr=inner_lr,
                         w0=w)
            values.append(objective(w).item())
            g = back_gradient(learner, w, X_fix, y_fix, x, yc, objective, steps=inner_steps, lr=inner_lr)
            x = binary_step(x, g, binary_flips) if binary_flips else \
                (x + attack_step * g / g.norm(dim=1, keepdim=True).clamp_min(1e-12)).clamp(0, 1)
            if project is not None:
                x = project(x, yc)
            if keep_path:
                path.append(x.clone())
            if bar is not None:
                bar.update(1)
        objectives.append(values)
        if keep_path:
            paths.append(torch.stack(path))
        X_p, y_p = torch.cat([X_p, x]), torch.cat([y_p, yc])
    return PoisonRun(X_p, y_p, objectives, paths)
