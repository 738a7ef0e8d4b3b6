"""Training: from scratch, fine-tuning, last-layer (transfer) retraining, and many small
models at once.

- ``train_classifier`` trains one model (all of it, or only what ``requires_grad``);
- ``freeze_for_transfer`` / ``reset_head`` set up last-layer retraining from a cold start;
- ``train_many`` trains K copies of one architecture at once with ``torch.func``
  (``stack_module_state`` + ``vmap(functional_call)``), each on its own index set into a
  shared pool of examples: ensembles, one victim per poisoned target, DPA partitions.
  Because Adam and SGD act element-wise, one optimizer over the stacked parameters is
  exactly K independent optimizers.

Everything is deterministic on the CPU for a given seed. The victim trainer runs where the model
is (``model.to("cuda")``): the data move there once, and every random draw still comes from the
CPU generator, so the draws do not depend on the device. Progress bars are tqdm's (``progress``):
in batch runs they go to a log that ``make reproduce`` prints, never into a committed notebook.
"""
from __future__ import annotations

import copy
from dataclasses import dataclass
import math

import torch
import torch.nn as nn
import torch.nn.functional as F
from torch.func import functional_call, stack_module_state

from . import precision as P
from . import device as _device
from .progress import bar as progress  # T.progress as before
from .rng import seed_everything  # defined once, in rng; T.seed_everything as before

default_device = _device.default_device  # defined once, in device; T.default_device as before


def augment_batch(x: torch.Tensor, generator: torch.Generator, pad: int = 4) -> torch.Tensor:
    """Random crop with zero padding and random horizontal flip, one draw per image
    (the standard CIFAR augmentation), drawn from ``generator`` for determinism."""
    n, _, h, w = x.shape
    xp = F.pad(x, (pad, pad, pad, pad))
    dy = torch.randint(0, 2 * pad + 1, (n,), generator=generator).to(x.device)
    dx = torch.randint(0, 2 * pad + 1, (n,), generator=generator).to(x.device)
    rows = (dy[:, None] + torch.arange(h, device=x.device))[:, None, :, None].expand(n, x.shape[1], h, w + 2 * pad)
    out = xp.gather(2, rows)
    cols = (dx[:, None] + torch.arange(w, device=x.device))[:, None, None, :].expand(n, x.shape[1], h, w)
    out = out.gather(3, cols)
    flip = (torch.rand(n, generator=generator) < 0.5).to(x.device)
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
    device = _device_of(model)  # batches move there (a GPU where the model is on one); draws stay on the CPU
    for _ in progress(range(epochs), desc=desc, leave=False):
        perm = torch.randperm(n, generator=gen)
        for i in range(0, n, batch_size):
            idx = perm[i:i + batch_size]
            xb = x[idx].to(device)
            if augment:
                xb = augment_batch(xb, gen)
            opt.zero_grad(set_to_none=True)
            _loss(model, model(xb), y[idx].to(device)).backward()
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


def _device_of(module: nn.Module) -> torch.device:
    first = next(module.parameters(), None)
    return first.device if first is not None else torch.device("cpu")


@torch.no_grad()
def predict_logits(model: nn.Module, x: torch.Tensor, batch_size: int = 500) -> torch.Tensor:
    """Logits of ``x``, computed where the model is, returned where ``x`` is."""
    model.eval()
    device = _device_of(model)
    return torch.cat([model(x[i:i + batch_size].to(device)).to(x.device) for i in range(0, len(x), batch_size)])


@torch.no_grad()
def extract_features(model: nn.Module, x: torch.Tensor, batch_size: int = 500) -> torch.Tensor:
    """Features of ``x``, computed where the model is, returned where ``x`` is."""
    model.eval()
    device = _device_of(model)
    return torch.cat([model.features(x[i:i + batch_size].to(device)).to(x.device)
                      for i in range(0, len(x), batch_size)])


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
        """Logits [K, N, C] of every model on the same inputs ``x`` [N, ...], computed where the
        models are, returned where ``x`` is."""
        device = next(iter(self.params.values())).device
        return torch.cat([self.forward(x[i:i + batch_size].to(device), shared_input=True).to(x.device)
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
    device = next(iter(stack.params.values())).device  # where the models are; the pool stays where it is

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
            xb = pool_x[idx.reshape(-1)].to(device)
            if augment:
                xb = augment_batch(xb, gen)
            xb = xb.reshape(k, -1, *pool_x.shape[1:])
            opt.zero_grad(set_to_none=True)
            # summed over models, so each model's gradient is its own
            loss_fn(stack.forward(xb), pool_y[idx].to(device)).backward()
            opt.step()
    return stack


# --------------------------------------------------------------------------- fast victims
@dataclass(frozen=True)
class VictimRecipe:
    """The from-scratch training recipe for victims, chosen for accuracy per second on 2 CPU
    cores (README, "Fast victims"; ``python -m poisonrepro.bench`` measures it). After airbench
    (Jordan 2024): SGD with Nesterov momentum, a linear warm-up then linear decay to zero,
    label smoothing, weight decay on weights only (not on norms and biases), flip-and-crop
    augmentation drawn per image and applied to whole uint8 batches, and channels-last tensors.
    ``epochs`` may be fractional: the schedule always runs to its end, so there is no
    fall-back after the peak."""
    epochs: float = 5.0
    batch_size: int = 256
    lr: float = 0.2
    momentum: float = 0.9
    weight_decay: float = 5e-4
    label_smoothing: float = 0.2
    warmup: float = 0.2
    crop_pad: int = 2
    flip: bool = True
    channels_last: bool = True
    logit_scale: float = 1.0
    whiten: bool = False
    # Madry et al.'s adversarial training (ICLR 2018): each augmented batch replaced by L-inf PGD
    # away from its labels (``evasion_pgd.untargeted_pgd``, eval mode, a random start); 0: off
    adversarial_eps: float = 0.0
    adversarial_steps: int = 7
    adversarial_step_size: float = 2 / 255
    # schedule "steps": the classic step schedule instead of the linear one, lr x lr_decay at each
    # milestone (a fraction of the steps; none: a constant rate) after ``warmup`` (0: none); "Just
    # How Toxic" and MetaPoison's code train this way
    schedule: str = "linear"
    milestones: tuple = ()
    lr_decay: float = 0.1
    nesterov: bool = True

    def __post_init__(self):
        for name in ("epochs", "batch_size", "lr"):
            if not getattr(self, name) > 0:
                raise ValueError(f"VictimRecipe.{name}={getattr(self, name)!r}: must be positive")
        if not 0 <= self.adversarial_eps <= 1:
            raise ValueError(f"VictimRecipe.adversarial_eps={self.adversarial_eps!r}: an L-inf budget on the [0, 1] "
                             f"pixel scale (did you mean {self.adversarial_eps}/255?)")
        if self.adversarial_eps and (self.adversarial_steps < 1 or not self.adversarial_step_size > 0):
            raise ValueError("VictimRecipe: adversarial training needs adversarial_steps >= 1 and a step size > 0")
        if not 0 <= self.warmup < 1 or not 0 <= self.label_smoothing < 1:
            raise ValueError("VictimRecipe: warmup and label_smoothing must lie in [0, 1)")
        if self.schedule not in ("linear", "steps"):
            raise ValueError(f"VictimRecipe.schedule={self.schedule!r}: 'linear' or 'steps'")
        if self.milestones and self.schedule != "steps":
            raise ValueError("VictimRecipe.milestones: only the 'steps' schedule has milestones")
        if any(not 0 < m < 1 for m in self.milestones) or list(self.milestones) != sorted(self.milestones):
            raise ValueError(f"VictimRecipe.milestones={self.milestones!r}: increasing fractions of the steps in (0, 1)")
        if not 0 < self.lr_decay <= 1:
            raise ValueError(f"VictimRecipe.lr_decay={self.lr_decay!r}: a factor in (0, 1]")

    def lr_factor(self, step: int, total: int) -> float:
        """The learning rate at ``step`` of ``total``, as a multiple of ``lr``: a linear warm-up from
        lr/10, then a linear decay to zero at the last step ("linear") or x ``lr_decay`` at each of
        the ``milestones`` ("steps")."""
        if self.schedule == "steps":
            warm = round(self.warmup * total)
            if step < warm:
                return 0.1 + 0.9 * step / warm
            return self.lr_decay ** sum(step >= round(m * total) for m in self.milestones)
        warm = max(1, round(self.warmup * total))
        return (0.1 + 0.9 * step / warm) if step < warm else max(0.0, (total - step) / max(1, total - warm))


def as_nchw(images) -> torch.Tensor:
    """uint8 NHWC (as the loaders return) or NCHW, numpy or torch -> NCHW tensor, dtype kept."""
    x = torch.as_tensor(images)
    if x.ndim != 4:
        raise ValueError(f"images of shape {tuple(x.shape)}: expected [N, C, H, W] or [N, H, W, C]")
    return x.permute(0, 3, 1, 2).contiguous() if x.shape[-1] in (1, 3) and x.shape[1] not in (1, 3) else x


def check_pixels(name: str, x: torch.Tensor) -> None:
    """A clear error, before any compute, for images that are neither uint8 pixels nor floats in
    [0, 1] (a 0-255 float batch is the usual slip)."""
    if x.dtype == torch.uint8:
        return
    if not x.is_floating_point():
        raise ValueError(f"{name}: dtype {x.dtype}; need uint8 pixels or floats in [0, 1]")
    low, high = float(x.min()), float(x.max())
    if low < 0 or high > 1:
        raise ValueError(f"{name}: floats must lie in [0, 1] (got [{low:g}, {high:g}]); "
                         "pass uint8 pixels or divide by 255")


def to_unit(xb: torch.Tensor, channels_last: bool = False) -> torch.Tensor:
    """A batch as float pixels in [0, 1] (uint8 batches are divided by 255 here, not earlier)."""
    out = xb.float().div_(255) if xb.dtype == torch.uint8 else xb.float()
    return out.contiguous(memory_format=torch.channels_last) if channels_last else out


def crop_flip(xb: torch.Tensor, generator: torch.Generator, pad: int = 2, flip: bool = True) -> torch.Tensor:
    """Random translation by up to ``pad`` pixels with reflection at the border, and a random
    horizontal flip, one draw per image, as one ``gather`` on the flattened batch in its own
    dtype (uint8 stays uint8, and no padded copy is made; 2.5x faster than 4-D indexing here).
    Differentiable for float batches."""
    n, c, h, w = xb.shape
    dy = torch.randint(-pad, pad + 1, (n, 1), generator=generator)
    dx = torch.randint(-pad, pad + 1, (n, 1), generator=generator)
    rows, cols = torch.arange(h) + dy, torch.arange(w) + dx
    if flip:
        cols = torch.where(torch.rand(n, 1, generator=generator) < 0.5, cols.flip(1), cols)
    rows = rows.abs().where(rows < h, 2 * (h - 1) - rows)  # reflect at both borders
    cols = cols.abs().where(cols < w, 2 * (w - 1) - cols)
    index = (rows[:, :, None] * w + cols[:, None, :]).reshape(n, 1, h * w).to(xb.device).expand(n, c, h * w)
    return xb.reshape(n, c, h * w).gather(2, index).reshape(n, c, h, w)


@torch.no_grad()
def whiten_stem(model: nn.Module, images: torch.Tensor, n: int = 5000, eps: float = 5e-4) -> None:
    """airbench's whitening initialisation: the first conv (k x k, 2 * 3k^2 output channels)
    gets the eigenvectors of the covariance of the training images' k x k patches, scaled by
    1/sqrt(eigenvalue), and their negatives; it is then frozen."""
    conv = next(m for m in model.modules() if isinstance(m, nn.Conv2d))
    k = conv.kernel_size[0]
    d = conv.in_channels * k * k
    if conv.out_channels != 2 * d:
        raise ValueError(f"whitening needs a stem of 2 x {d} channels, got {conv.out_channels}")
    x = model.normalize(to_unit(images[:n]))
    patches = x.unfold(2, k, 1).unfold(3, k, 1).permute(0, 2, 3, 1, 4, 5).reshape(-1, d)
    eigenvalues, vectors = torch.linalg.eigh(torch.cov(patches.T))
    w = (vectors.T / torch.sqrt(eigenvalues[:, None] + eps)).reshape(d, conv.in_channels, k, k)
    conv.weight.copy_(torch.cat([w, -w]))
    conv.weight.requires_grad_(False)
    if conv.bias is not None:
        conv.bias.zero_()
        conv.bias.requires_grad_(False)


def _victim_optimizer(model: nn.Module, recipe: VictimRecipe):
    decay = [p for p in model.parameters() if p.requires_grad and p.ndim > 1]
    no_decay = [p for p in model.parameters() if p.requires_grad and p.ndim <= 1]
    return torch.optim.SGD([{"params": decay, "weight_decay": recipe.weight_decay},
                            {"params": no_decay, "weight_decay": 0.0}],
                           lr=recipe.lr, momentum=recipe.momentum, nesterov=recipe.nesterov)


def victim_step(model: nn.Module, opt, xb: torch.Tensor, yb: torch.Tensor, recipe: VictimRecipe,
                generator: torch.Generator, loss_fn=None, precision: str | None = None) -> None:
    """One SGD step of ``train_victim`` on a raw batch (augmented and converted here); the
    bench times exactly this. ``loss_fn(logits, labels)`` replaces the label-smoothed cross-entropy
    (Anti-Backdoor Learning's local gradient ascent, its unlearning's ascent). ``precision``:
    ``fp32`` or ``bf16`` (autocast of the forward pass); default the one in force
    (``poisonrepro.precision``)."""
    if recipe.crop_pad or recipe.flip:
        xb = crop_flip(xb, generator, recipe.crop_pad, recipe.flip)
    if recipe.adversarial_eps:
        from .attacks.evasion_pgd import untargeted_pgd  # attacks import this module
        seed = int(torch.randint(2 ** 31 - 1, (), generator=generator))
        xb = untargeted_pgd(model, xb.cpu(), yb.cpu(), eps=recipe.adversarial_eps, steps=recipe.adversarial_steps,
                            step_size=recipe.adversarial_step_size, batch_size=len(yb), seed=seed,
                            desc="adversarial batch").to(yb.device)
    with P.autocast(yb.device, precision):
        logits = model(to_unit(xb, recipe.channels_last)).float() * recipe.logit_scale
    loss = F.cross_entropy(logits, yb, label_smoothing=recipe.label_smoothing) if loss_fn is None else loss_fn(logits, yb)
    opt.zero_grad(set_to_none=True)
    loss.backward()
    opt.step()


def train_victim(model: nn.Module, images, labels, recipe: VictimRecipe = VictimRecipe(), *, seed: int = 0,
                 desc: str = "victim", on_step=None, loss_fn=None, precision: str | None = None) -> nn.Module:
    """Train ``model`` from scratch on ``images`` (uint8 or [0, 1] float, NHWC or NCHW) with
    ``recipe``. ``on_step(step, total_steps)`` is called after every step (timing, logging);
    ``loss_fn(logits, labels)``, if given, is the loss instead of the recipe's cross-entropy;
    ``precision`` (``fp32`` | ``bf16``) overrides the one in force (``poisonrepro.precision``)."""
    x, y = as_nchw(images), torch.as_tensor(labels).long()
    if len(x) != len(y):
        raise ValueError(f"{len(x)} images but {len(y)} labels")
    if x.is_floating_point() and (x.min() < 0 or x.max() > 1):
        raise ValueError("float images must lie in [0, 1] (uint8 images are converted per batch)")
    device = next(model.parameters()).device
    x, y = x.to(device), y.to(device)  # once: uint8 CIFAR-10 is 150 MB
    gen = seed_everything(seed)
    if recipe.whiten:
        whiten_stem(model, x[torch.randperm(len(x), generator=gen)[:5000]])
    if recipe.channels_last:
        model = model.to(memory_format=torch.channels_last)
    opt = _victim_optimizer(model, recipe)
    n = len(y)
    steps_per_epoch = max(1, n // recipe.batch_size)  # full batches only: BN sees no tiny tail
    total = max(1, round(recipe.epochs * steps_per_epoch))
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: recipe.lr_factor(s, total))
    model.train()
    step = 0
    bar = progress(total=total, desc=desc, leave=False)
    while step < total:
        perm = torch.randperm(n, generator=gen)
        for i in range(steps_per_epoch):
            if step == total:
                break
            idx = perm[i * recipe.batch_size:(i + 1) * recipe.batch_size].to(device)
            victim_step(model, opt, x[idx], y[idx], recipe, gen, loss_fn, precision)
            sched.step()
            step += 1
            bar.update(1)
            if on_step is not None:
                on_step(step, total)
    bar.close()
    model.eval()
    return model


@torch.no_grad()
def per_sample_losses(model: nn.Module, images, labels, batch_size: int = 1000) -> tuple[torch.Tensor, torch.Tensor]:
    """Cross-entropy of every sample at its given label, and whether the model predicts that
    label, in eval mode without augmentation (what trimming and backdoor isolation rank); the
    model's train/eval mode is restored."""
    x, y = as_nchw(images), torch.as_tensor(labels).long()
    was_training = model.training
    model.eval()
    weight = next(model.parameters())
    channels_last = weight.is_contiguous(memory_format=torch.channels_last)
    losses, correct = [], []
    for i in range(0, len(y), batch_size):
        logits = model(to_unit(x[i:i + batch_size].to(weight.device), channels_last)).float().cpu()
        losses.append(F.cross_entropy(logits, y[i:i + batch_size], reduction="none"))
        correct.append(logits.argmax(1) == y[i:i + batch_size])
    model.train(was_training)
    return torch.cat(losses), torch.cat(correct)


@torch.no_grad()
def victim_accuracy(model: nn.Module, images, labels, *, flip_tta: bool = True, batch_size: int = 1000) -> float:
    """Test accuracy of a victim; with ``flip_tta`` the logits of each image and its mirror image
    are averaged (airbench's test-time augmentation)."""
    x, y = as_nchw(images), torch.as_tensor(labels).long()
    model.eval()
    weight = next(model.parameters())
    channels_last = weight.is_contiguous(memory_format=torch.channels_last)
    correct = 0
    for i in range(0, len(y), batch_size):
        xb = to_unit(x[i:i + batch_size].to(weight.device), channels_last)
        logits = model(xb)
        if flip_tta:
            logits = logits + model(xb.flip(3))
        correct += (logits.argmax(1).cpu() == y[i:i + batch_size]).sum().item()
    return correct / len(y)
