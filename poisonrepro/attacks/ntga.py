"""A labelled STAND-IN for the Neural Tangent Generalization Attack (NTGA): C.-H. Yuan, S.-H. Wu,
"Neural Tangent Generalization Attacks", ICML 2021; a baseline of Transferable Unlearnable
Examples (Ren et al., ICLR 2023, notebook 14). It is not the authors' method; read its numbers as
"NTGA's objective on the empirical NTK of one small network", not as NTGA.

NTGA's surrogate is the neural tangent kernel (NTK) of an infinitely wide network: the mean
prediction of such networks trained by gradient descent on the mean squared error from zero output
has a closed form (Lee et al., NeurIPS 2019), and at training time t, on validation inputs,

    f_t(X_v) = K_vt K_tt^{-1} (I - exp(-eta K_tt t)) Y_t,                   (NTGA, Eq. 3-4)

with K_tt the kernel of the (perturbed) training inputs, K_vt that of the validation inputs
against them and Y_t the one-hot training labels. The attack is L-inf PGD on the training
perturbations that MAXIMISES the loss of f_t on the validation data (the paper's Eq. 5; ``loss``
"ce", the cross-entropy of f_t read as logits, or "mse"), t = 64 and 10 steps in the paper. Both
kernels depend on the perturbations; the gradient flows through them. For a large training set the
paper splits it into blocks, each with its own K_tt, and attacks block by block: here the blocks
are the crafting loop's batches (``crafting.craft_perturbations``, a fixed order, ``block``
samples each, every block against the whole validation set), the block's one loss spread over its
samples.

The STAND-IN kernel: the EMPIRICAL NTK at initialisation of one finite, fully connected ReLU
network with a scalar output (``NTKNetwork``: ``depth`` hidden layers of ``width`` units, NTK
parametrisation z_l = sigma_w / sqrt(n_{l-1}) W_l a_{l-1} + sigma_b b_l, W and b standard normal,
drawn from ``seed``), K(x, x') = <grad_theta f(x), grad_theta f(x')>, computed exactly without
materialising the Jacobians through its layer-wise factorisation

    K(x, x') = sum_l (sigma_w^2 / n_{l-1} <a_{l-1}(x), a_{l-1}(x')> + sigma_b^2) <d_l(x), d_l(x')>,

d_l = df/dz_l by back-propagation (``empirical_ntk``; checked against ``torch.func.jacrev`` by the
tests), and used for every class as K (x) I (the infinite-width structure of independent outputs).

Departures (UNCONFIRMED where marked): the empirical NTK of one finite network (width 512, 3
hidden layers by default) instead of the analytic infinite-width kernel of the paper's FNN (5
layers, UNCONFIRMED) or CNN, computed by the authors with neural-tangents; the learning rate eta
here is 1 / mean(diag K_tt) (detached, per block), so that t is in units of the kernel's scale
(neural-tangents' convention for eta and for the loss's normalisation UNCONFIRMED);
sigma_w = sqrt(2), sigma_b = 0.1 (the paper's UNCONFIRMED); the block size (512 by default; the
paper's for CIFAR-10 UNCONFIRMED); K_tt^{-1} (I - exp(-eta t K_tt)) by ``torch.linalg.matrix_exp``
and a solve with a small diagonal jitter (1e-6 of the mean diagonal), in float64; PGD from the
clean images (a zero start) with a step of 2.5 eps / steps (Madry et al.'s rule of thumb; the
paper's step UNCONFIRMED); one-hot targets (not centred).
"""
from __future__ import annotations

import math
import numbers

import torch
import torch.nn.functional as F
from torch import nn

from ..registry import register_attack
from ..rng import seeded
from .alignment import check_with_validation
from .availability import check_budget, noise_artifact
from .crafting import craft_perturbations, device_of

LOSSES = ("ce", "mse")
JITTER = 1e-6  # of the mean diagonal of K_tt, added before the solve


class NTKNetwork(nn.Module):
    """A fully connected ReLU network with one output at initialisation, NTK-parametrised (module
    docstring), on flattened images; ``factors`` gives what its empirical NTK is made of."""

    def __init__(self, in_dim: int, width: int = 512, depth: int = 3, sigma_w: float = math.sqrt(2),
                 sigma_b: float = 0.1):
        super().__init__()
        dims = [in_dim] + [width] * depth + [1]
        self.sigma_w, self.sigma_b = float(sigma_w), float(sigma_b)
        self.weights = nn.ParameterList(nn.Parameter(torch.randn(b, a)) for a, b in zip(dims[:-1], dims[1:]))
        self.biases = nn.ParameterList(nn.Parameter(torch.randn(b)) for b in dims[1:])

    def _scale(self, layer: int) -> float:
        return self.sigma_w / math.sqrt(self.weights[layer].shape[1])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        a = x.flatten(1)
        for layer, (w, b) in enumerate(zip(self.weights, self.biases)):
            z = self._scale(layer) * a @ w.T + self.sigma_b * b
            a = torch.relu(z) if layer < len(self.weights) - 1 else z
        return a.squeeze(1)

    def factors(self, x: torch.Tensor) -> list[tuple[torch.Tensor, torch.Tensor]]:
        """Per layer l, (a_{l-1}, d_l): its input [B, n_{l-1}] and df/dz_l [B, n_l], differentiable
        w.r.t. ``x`` (d_l through a_l's weights only: the ReLU's derivative is piecewise constant)."""
        inputs, masks, a = [], [], x.flatten(1)
        for layer, (w, b) in enumerate(zip(self.weights, self.biases)):
            inputs.append(a)
            z = self._scale(layer) * a @ w.T + self.sigma_b * b
            if layer < len(self.weights) - 1:
                masks.append((z > 0).to(z.dtype))
                a = torch.relu(z)
        d = torch.ones(len(x), 1, dtype=a.dtype, device=a.device)
        backward = [d]
        for layer in range(len(self.weights) - 1, 0, -1):  # d_{l-1} = (scale_l W_l^T d_l) * relu'(z_{l-1})
            d = (self._scale(layer) * d @ self.weights[layer]) * masks[layer - 1]
            backward.append(d)
        return list(zip(inputs, reversed(backward)))


def empirical_ntk(net: NTKNetwork, x1: torch.Tensor, x2: torch.Tensor | None = None, *, factors1=None,
                  factors2=None) -> torch.Tensor:
    """The empirical NTK [N1, N2] of ``net`` between two batches (``x2`` None: ``x1`` itself),
    J(x1) J(x2)^T over all parameters, by the layer-wise factorisation of the module docstring;
    precomputed ``net.factors`` may be passed instead of the inputs."""
    f1 = net.factors(x1) if factors1 is None else factors1
    f2 = (f1 if x2 is None else net.factors(x2)) if factors2 is None else factors2
    kernel = 0
    for layer, ((a1, d1), (a2, d2)) in enumerate(zip(f1, f2)):
        scale = net._scale(layer) ** 2
        kernel = kernel + (scale * a1 @ a2.T + net.sigma_b ** 2) * (d1 @ d2.T)
    return kernel


def ntk_predictor(k_tt: torch.Tensor, k_vt: torch.Tensor, y_onehot: torch.Tensor, t: float) -> torch.Tensor:
    """f_t(X_v) = K_vt K_tt^{-1} (I - exp(-eta t K_tt)) Y (module docstring), eta = 1 / mean(diag K_tt)
    (detached), in float64; the predictions [V, classes] in ``k_vt``'s dtype."""
    k, kv, targets = k_tt.double(), k_vt.double(), y_onehot.double()
    eta = 1.0 / k.diagonal().mean().detach()
    eye = torch.eye(len(k), dtype=k.dtype, device=k.device)
    decayed = targets - torch.linalg.matrix_exp(-eta * t * k) @ targets  # (I - exp(-eta t K)) Y
    jitter = JITTER * k.diagonal().mean().detach()
    return (kv @ torch.linalg.solve(k + jitter * eye, decayed)).to(k_vt.dtype)


def _validation_loss(prediction, y_val, num_classes, loss):
    if loss == "ce":
        return F.cross_entropy(prediction, y_val)
    return 0.5 * (prediction - F.one_hot(y_val, num_classes).to(prediction.dtype)).pow(2).sum(1).mean()


def _as_unit(x):
    return x.float() / 255 if x.dtype == torch.uint8 else x


def _integer(name, value, minimum=1):
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < minimum:
        raise ValueError(f"{name}={value!r}: need an integer >= {minimum}")


def _positive(name, value):
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or not 0 < value < math.inf:
        raise ValueError(f"{name}={value!r}: need a finite number > 0")


def _check(x, y, x_val, y_val, *, eps, steps, step_size, t, block, width, depth, loss, seed):
    check_budget(eps)
    y, y_val = check_with_validation(x, y, x_val, y_val)
    _integer("steps", steps)
    _integer("block", block, minimum=2)
    _integer("width", width)
    _integer("depth", depth)
    _integer("seed", seed, minimum=0)
    _positive("t", t)
    if step_size is not None and (isinstance(step_size, bool) or not isinstance(step_size, numbers.Real)
                                  or not 0 < step_size <= eps):
        raise ValueError(f"step_size={step_size!r}: need a PGD step in (0, eps={eps:.5g}] (None: 2.5 eps / steps)")
    if loss not in LOSSES:
        raise ValueError(f"loss={loss!r}: unknown; allowed: {', '.join(map(repr, LOSSES))}")
    num_classes = int(max(int(y.max()), int(y_val.max()))) + 1
    if num_classes < 2:
        raise ValueError("y: need at least two classes")
    return y, y_val, num_classes


def build_network(x: torch.Tensor, *, width: int = 512, depth: int = 3, seed: int = 0) -> NTKNetwork:
    """The stand-in's network at initialisation for images shaped like ``x``, drawn from ``seed``
    (the global random state is left as it was)."""
    with seeded(seed):
        return NTKNetwork(x[0].numel(), width, depth)


def surrogate_loss(x: torch.Tensor, y: torch.Tensor, x_val: torch.Tensor, y_val: torch.Tensor, *, t: float = 64.0,
                   block: int = 512, width: int = 512, depth: int = 3, loss: str = "ce", seed: int = 0,
                   network: NTKNetwork | None = None) -> float:
    """The attack's objective on a training set (``x`` uint8 or floats in [0, 1], clean or
    poisoned): the validation loss of the block-wise predictor f_t, averaged over the blocks
    (``block`` samples, in order); the network built as ``craft_ntga`` builds it from ``seed``."""
    y, y_val, num_classes = _check(x, y, x_val, y_val, eps=1.0, steps=1, step_size=None, t=t, block=block,
                                   width=width, depth=depth, loss=loss, seed=seed)
    net = build_network(x, width=width, depth=depth, seed=seed) if network is None else network
    device = device_of(net)
    values = []
    with torch.no_grad():
        val = _as_unit(x_val).to(device)
        val_factors = net.factors(val)
        for start in range(0, len(x), block):
            xb = _as_unit(x[start:start + block]).to(device)
            factors = net.factors(xb)
            prediction = ntk_predictor(empirical_ntk(net, xb, factors1=factors),
                                       empirical_ntk(net, val, factors1=val_factors, factors2=factors),
                                       F.one_hot(y[start:start + block].to(device), num_classes), t)
            values.append(float(_validation_loss(prediction, y_val.to(device), num_classes, loss)))
    return sum(values) / len(values)


@register_attack("ntga", paper="Yuan and Wu 2021 (stand-in; baseline of Ren et al. 2023)", notebook="14_tue",
                 summary="STAND-IN for NTGA: L-inf PGD on the training data to raise the validation loss of the "
                         "closed-form gradient-descent predictor of a small network's empirical NTK, block-wise",
                 timing="poisoning", goal="untargeted", knowledge="black-box", universality="individual",
                 influence="causative", violation="availability", specificity="indiscriminate")
def craft_ntga(x: torch.Tensor, y: torch.Tensor, x_val: torch.Tensor, y_val: torch.Tensor, *, eps: float = 8 / 255,
               steps: int = 10, step_size: float | None = None, t: float = 64.0, block: int = 512,
               width: int = 512, depth: int = 3, loss: str = "ce", seed: int = 0, device: str | None = None,
               desc: str = "NTGA (stand-in)") -> dict:
    """The stand-in's noise for the training set (``x`` uint8 or floats in [0, 1], ``y``) with the
    validation set (``x_val``, ``y_val``), by the block-wise PGD of the module docstring; no model
    is needed (the kernel's network is drawn from ``seed``, on ``device``, default the CPU).

    Returns ``availability.noise_artifact`` (sample-wise) with ``loss_history`` (the mean over
    blocks of the surrogate's validation loss at every step, before the step) and
    ``val_loss_clean`` (``surrogate_loss`` of the clean set)."""
    y, y_val, num_classes = _check(x, y, x_val, y_val, eps=eps, steps=steps, step_size=step_size, t=t, block=block,
                                   width=width, depth=depth, loss=loss, seed=seed)
    lr = 2.5 * eps / steps if step_size is None else step_size
    lr = min(lr, eps)
    net = build_network(x, width=width, depth=depth, seed=seed)
    if device is not None:
        net = net.to(device)
    net.requires_grad_(False)  # the kernel's network is fixed: gradients flow to the inputs only
    clean = surrogate_loss(x, y, x_val, y_val, t=t, block=block, loss=loss, network=net)
    run_on = device_of(net)
    val = _as_unit(x_val).to(run_on)
    with torch.no_grad():
        val_factors = [(a.detach(), d.detach()) for a, d in net.factors(val)]
    targets = F.one_hot(y, num_classes).to(run_on)
    y_val_dev = y_val.to(run_on)

    def objective(kernel_net, x_perturbed, idx):
        factors = kernel_net.factors(x_perturbed)
        prediction = ntk_predictor(empirical_ntk(kernel_net, x_perturbed, factors1=factors),
                                   empirical_ntk(kernel_net, val, factors1=val_factors, factors2=factors),
                                   targets[idx.to(run_on)], t)
        # the loop minimises: the block's validation loss, negated and spread over its samples
        return -_validation_loss(prediction, y_val_dev, num_classes, loss).expand(len(idx)) / len(idx)

    result = craft_perturbations(x, objective, models=net, eps=eps, norm="linf", steps=steps, step_rule="pgd",
                                 lr=lr, init="zeros", batch_size=block, shuffle=False, seed=seed, desc=desc)
    blocks = -(-len(x) // block)
    return noise_artifact(result.delta, eps=eps, by_class=False, groups=torch.arange(len(x)),
                          loss_history=-result.loss_history[0] * len(x) / blocks, val_loss_clean=clean)
