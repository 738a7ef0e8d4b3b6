"""Influence functions and the training-set attack: Koh and Liang, "Understanding Black-box
Predictions via Influence Functions", ICML 2017, Sec. 2 (Eqs. 2-5) and Sec. 5.2.

For a model theta^ minimising (1/n) sum_i L(z_i, theta) with Hessian H:

    I_up,loss(z, z_test)   = - grad_theta L(z_test)^T H^-1 grad_theta L(z)                  (Eq. 2)
    I_pert,loss(z, z_test) = - grad_theta L(z_test)^T H^-1 grad_x grad_theta L(z)           (Eq. 5)

Removing z changes the test loss by about -(1/n) I_up,loss(z, z_test). The model here is an
L2-regularised logistic regression on frozen features (the paper's "Inception-v3 features +
logistic regression" setting), whose Hessian is small enough to form exactly; conjugate
gradients (``method="cg"``, Hessian-vector products only) sit behind the same interface for
larger heads. The attack (Sec. 5.2) moves the most influential training images along
sign(I_pert,loss) inside a small L-inf box so as to raise the test image's loss until its
prediction flips. ``random_sign_control`` is its control: the same training images moved to
random corners of the same box, which tells a working attack from targets that any
perturbation flips.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from scipy.sparse.linalg import LinearOperator, cg

from ..registry import register_attack


def _augment(feats: torch.Tensor) -> torch.Tensor:
    """Features with a constant 1 appended (the bias is the last parameter)."""
    return torch.cat([feats, torch.ones(len(feats), 1, dtype=feats.dtype, device=feats.device)], 1)


def extract(extractor, images: torch.Tensor, device: torch.device | None = None) -> torch.Tensor:
    """``extractor.features(images)``, computed where the extractor is, put on ``device`` (default:
    the extractor's), differentiable with respect to ``images``: the images may stay on the CPU while
    the extractor and the head sit on a GPU."""
    here = next(extractor.parameters(), images).device  # an extractor without weights: where the images are
    return extractor.features(images.to(here)).to(here if device is None else device)


@dataclass
class LogisticHead:
    """Binary logistic regression on features: P(y=1|x) = sigmoid(theta . [f(x), 1]), trained
    to the optimum of mean log-loss + (weight_decay / 2) ||w||^2 (bias unregularised). It lives
    where its training features are; features and labels given to it must be there too."""
    theta: torch.Tensor
    weight_decay: float

    @classmethod
    def fit(cls, feats: torch.Tensor, y: torch.Tensor, weight_decay: float, max_iter: int = 500) -> "LogisticHead":
        X = _augment(feats.double())
        yy = y.double()
        theta = torch.zeros(X.shape[1], dtype=torch.float64, device=X.device, requires_grad=True)
        opt = torch.optim.LBFGS([theta], lr=1, max_iter=max_iter, tolerance_grad=1e-10,
                                tolerance_change=1e-14, history_size=50, line_search_fn="strong_wolfe")

        def closure():
            opt.zero_grad()
            loss = F.binary_cross_entropy_with_logits(X @ theta, yy) + 0.5 * weight_decay * (theta[:-1] ** 2).sum()
            loss.backward()
            return loss
        opt.step(closure)
        return cls(theta.detach(), weight_decay)

    def logits(self, feats):
        return _augment(feats.double()) @ self.theta

    def predict(self, feats):
        return (self.logits(feats) > 0).long()

    def losses(self, feats, y):
        return F.binary_cross_entropy_with_logits(self.logits(feats), y.double(), reduction="none")

    def grads(self, feats, y) -> torch.Tensor:
        """Per-example gradients of the (unregularised) log-loss: [n, d+1]."""
        X = _augment(feats.double())
        return (torch.sigmoid(X @ self.theta) - y.double())[:, None] * X

    def hessian(self, feats) -> torch.Tensor:
        """Hessian of the training objective (mean log-loss + L2 term)."""
        X = _augment(feats.double())
        p = torch.sigmoid(X @ self.theta)
        H = (X * (p * (1 - p))[:, None]).T @ X / len(X)
        reg = torch.full((X.shape[1],), self.weight_decay, dtype=torch.float64, device=X.device)
        reg[-1] = 0.0
        return H + torch.diag(reg)

    def hvp(self, feats, v: torch.Tensor) -> torch.Tensor:
        X = _augment(feats.double())
        p = torch.sigmoid(X @ self.theta)
        out = X.T @ ((p * (1 - p)) * (X @ v)) / len(X)
        reg = v * self.weight_decay
        reg[-1] = 0.0
        return out + reg


def inverse_hvp(head: LogisticHead, train_feats, v: torch.Tensor, method: str = "exact") -> torch.Tensor:
    """H^-1 v, exactly (a linear solve with the full Hessian) or by conjugate gradients."""
    if method == "exact":
        return torch.linalg.solve(head.hessian(train_feats), v)
    if method == "cg":
        n = v.numel()  # scipy's solver works on the CPU; each product runs where the head is
        op = LinearOperator((n, n), dtype=np.float64,
                            matvec=lambda x: head.hvp(train_feats, torch.from_numpy(x).to(v.device)).cpu().numpy())
        sol, info = cg(op, v.cpu().numpy(), rtol=1e-10, maxiter=10 * n)
        if info != 0:
            raise RuntimeError(f"conjugate gradients did not converge (info={info})")
        return torch.from_numpy(sol).to(v.device)
    raise ValueError(f"method={method!r}: allowed values are 'exact', 'cg'")


def influence_up_loss(head: LogisticHead, train_feats, train_y, test_feats, test_y, method="exact") -> torch.Tensor:
    """I_up,loss(z_i, z_test) for every training point i (Eq. 2), one test point."""
    s_test = inverse_hvp(head, train_feats, head.grads(test_feats, test_y)[0], method)
    return -(head.grads(train_feats, train_y) @ s_test)


def influence_pert_loss(extractor, head: LogisticHead, images, labels, s_test: torch.Tensor) -> torch.Tensor:
    """I_pert,loss(z, z_test) = -s_test^T grad_x grad_theta L(z) for each training image (Eq. 5),
    through the frozen extractor; ``s_test`` = H^-1 grad_theta L(z_test)."""
    x = images.clone().requires_grad_(True)
    phi = _augment(extract(extractor, x, head.theta.device).double())
    p = torch.sigmoid(phi @ head.theta)
    # s_test . grad_theta L(z) = (p - y) (s_test . phi), summed: each image only affects its own term
    inner = ((p - labels.double().to(p.device)) * (phi @ s_test)).sum()
    (g,) = torch.autograd.grad(inner, x)
    return -g


def most_influential(head: LogisticHead, train_feats, train_y, test_feat, test_y, k: int) -> torch.Tensor:
    """The ``k`` training points with the largest |I_up,loss| on the test point (Sec. 5.2's choice)."""
    infl = influence_up_loss(head, train_feats, train_y, test_feat, test_y)
    return torch.argsort(infl.abs(), descending=True)[:k]


@register_attack("influence_attack", paper="Koh and Liang 2017", notebook="08_influence",
                 summary="perturb the most influential training images to flip a test prediction",
                 timing="poisoning", goal="targeted", knowledge="white-box", universality="individual",
                 influence="causative", violation="integrity", specificity="targeted")
def training_set_attack(extractor, head: LogisticHead, train_images, train_y, train_feats, test_image, test_y,
                        *, n_perturb: int, eps: float, step: float, iters: int, weight_decay: float):
    """Sec. 5.2: perturb the ``n_perturb`` training images with the largest |I_up,loss| on the
    test point along sign(I_pert,loss) within an L-inf ball of radius ``eps``, refitting the head
    after every step; stop once the test prediction flips. Returns (flipped, indices, images, head),
    the indices and images where ``train_images`` are. The signed steps and the projection are the
    shared crafting loop's (``attacks.crafting``), on the CPU; this function supplies the objective and
    the refit between steps. The extractor may sit elsewhere (its batches go to it); the head, the
    features and the labels sit together (``LogisticHead``)."""
    if not 0 < eps <= 1:
        raise ValueError(f"eps={eps}: must lie in (0, 1] (pixels on the [0, 1] scale)")
    with torch.no_grad():
        test_feat = extract(extractor, test_image, train_feats.device)
    idx = most_influential(head, train_feats, train_y, test_feat, test_y, n_perturb)
    pos = idx.to(train_images.device)  # the same indices, where the images are
    labels, feats = train_y[idx].double(), train_feats.clone()
    every = torch.arange(len(idx))
    now = {"head": head, "x": train_images[pos].clone(), "flipped": False}

    def s_test():
        return inverse_hvp(now["head"], feats, now["head"].grads(test_feat, test_y)[0])
    now["s_test"] = s_test()

    def objective(_, x, batch):
        # s_test . grad_theta L(z) = (p - y)(s_test . phi) per image: its input gradient is
        # -I_pert,loss, so the loop's signed descent ascends the test loss (Eq. 5)
        phi = _augment(extract(extractor, x, feats.device).double())
        return (torch.sigmoid(phi @ now["head"].theta) - labels[batch]) * (phi @ now["s_test"])

    def refit(state):  # after every step: the moved images' features, the head refit, the flip test
        now["x"] = state.perturbed(every)
        with torch.no_grad():
            feats[idx] = extract(extractor, now["x"], feats.device).to(feats.dtype)
        now["head"] = LogisticHead.fit(feats, train_y, weight_decay)
        now["flipped"] = int(now["head"].predict(test_feat)[0]) != int(test_y[0])
        if not now["flipped"]:
            now["s_test"] = s_test()

    from .crafting import craft_perturbations  # the shared loop: L-inf box, signed steps
    craft_perturbations(train_images[pos], objective, eps=eps, norm="linf", steps=iters, step_rule="pgd",
                        lr=step, batch_size=len(idx), on_step=refit, model_update=lambda state: now["flipped"],
                        desc="influence attack")
    return now["flipped"], pos, now["x"], now["head"]


def random_sign_control(extractor, train_images, train_y, train_feats, test_feat, test_y, idx, *, eps: float,
                        weight_decay: float, generator: torch.Generator):
    """The attack's control: the training images ``idx`` (the attack's choice, from
    ``most_influential``), each pixel moved by +-eps with a random sign (the corners of the
    attack's L-inf box, where its signed steps end up), the head refit once. Returns
    (flipped, images, head)."""
    if not 0 < eps <= 1:
        raise ValueError(f"eps={eps}: must lie in (0, 1] (pixels on the [0, 1] scale)")
    base = train_images[idx.to(train_images.device)]
    # the signs are drawn on the CPU (the generator's stream) and join the images
    sign = torch.randint(0, 2, base.shape, generator=generator).to(device=base.device, dtype=base.dtype) * 2 - 1
    x = (base + eps * sign).clamp(0, 1)
    feats = train_feats.clone()
    with torch.no_grad():
        feats[idx] = extract(extractor, x, feats.device).to(feats.dtype)
    head = LogisticHead.fit(feats, train_y, weight_decay)
    return int(head.predict(test_feat)[0]) != int(test_y[0]), x, head
