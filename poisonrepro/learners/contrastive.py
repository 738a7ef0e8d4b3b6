"""Self-supervised contrastive learners, each followed by a linear probe: how a data user may learn
from protected images without their labels (Unlearnable Clusters, Zhang et al., CVPR 2023, Fig. 4b:
SimCLR; Transferable Unlearnable Examples, Ren et al., ICLR 2023, the training-wise table: SimCLR,
MoCo v2, SimSiam, then a linear classifier on the frozen features).

STAND-INS: the encoder is a small network of ``models.build_model`` (the papers use ResNet-18),
pre-trained for a few epochs at the ``cpu`` profile (the papers: SimCLR and SimSiam hundreds of
epochs, MoCo 200 and more). The shared pieces are written once:

- the two views: SimCLR's augmentation (Chen et al., ICML 2020, App. A; its CIFAR-10 form, no
  blur): random resized crop, horizontal flip, colour jitter (0.4, 0.4, 0.4, 0.1) with p = 0.8,
  grayscale with p = 0.2, per image with ``torchvision.transforms.v2`` on tensors;
- the encoder f = ``features`` of a ``models.Classifier`` (its head unused) and a projector g;
- SGD with momentum and a cosine schedule; then a logistic-regression probe (scikit-learn) on the
  standardised frozen features of the un-augmented training images.

Each method supplies only its loss and update:

- ``SimCLRLearner`` (Chen et al. 2020, Eq. 1): NT-Xent, l(i, j) = -log exp(s_ij / tau) /
  sum_{k != i} exp(s_ik / tau) over the 2B views, s the cosine similarity of z = g(f(x));
- ``MoCoV2Learner`` (He et al., CVPR 2020, Eq. 1 and Algorithm 1; Chen et al. 2020, MoCo v2: the
  MLP head and the augmentation above): InfoNCE of the query q against its key k+ and a queue of
  K past keys, -log exp(q.k+ / tau) / (exp(q.k+ / tau) + sum_queue exp(q.k / tau)); the key
  encoder is the momentum copy theta_k <- m theta_k + (1 - m) theta_q, never trained by
  gradients; the keys are computed on a shuffled batch split into groups, each with its own
  batch-norm statistics (the paper's shuffling BN, on one device);
- ``SimSiamLearner`` (Chen and He, CVPR 2021, Eq. 4-5): L = D(p1, sg(z2)) / 2 + D(p2, sg(z1)) / 2,
  D the negative cosine similarity, p = h(z) a predictor, sg the stop-gradient;
- ``RandomFeatureLearner``: the same encoder at its random initialisation and the same probe:
  the baseline a contrastive learner must beat.

``train`` returns the encoder and the probe as one ``nn.Module`` whose logits ``predict`` turns
into classes, so ``evaluation`` scores it as it scores a supervised victim. The recipe of the
evaluation spec is not used: pre-training has its own settings (the learner's fields).
"""
from __future__ import annotations

import contextlib
import copy
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from sklearn.linear_model import LogisticRegression
from sklearn.preprocessing import StandardScaler
from torch import nn
from torchvision.transforms import v2

from .. import models as M
from .. import precision as PR
from .. import train as T
from ..evaluation import SupervisedLearner
from ..progress import bar as progress
from ..rng import seed_everything, seeded


# --------------------------------------------------------------------------- shared pieces
def view_transform(size: int, crop_scale: tuple = (0.2, 1.0)) -> v2.Transform:
    """SimCLR's augmentation of one uint8 image [C, H, W] to floats in [0, 1]."""
    return v2.Compose([
        v2.RandomResizedCrop(size, scale=crop_scale, antialias=True),
        v2.RandomHorizontalFlip(),
        v2.RandomApply([v2.ColorJitter(0.4, 0.4, 0.4, 0.1)], p=0.8),
        v2.RandomGrayscale(p=0.2),
        v2.ToDtype(torch.float32, scale=True),
    ])


def two_views(images: torch.Tensor, generator: torch.Generator,
              crop_scale: tuple = (0.2, 1.0)) -> tuple[torch.Tensor, torch.Tensor]:
    """Two independent augmentations of every uint8 image of ``images`` [B, C, H, W] (on the CPU):
    two float batches in [0, 1]. A v2 transform draws one set of parameters per call, hence one
    call per image; its draws come from torch's CPU generator, forked and seeded from ``generator``."""
    transform = view_transform(images.shape[-1], crop_scale)
    with torch.random.fork_rng(devices=[]):
        torch.default_generator.manual_seed(int(torch.randint(2 ** 62, (), generator=generator)))
        first = torch.stack([transform(image) for image in images])
        second = torch.stack([transform(image) for image in images])
    return first, second


#: how the two views are drawn: ``per_image`` by torchvision (``two_views``, SimCLR's augmentation
#: as published), ``batched`` by torch ops over the whole batch (``batched_views``: about 25 times
#: faster on a CPU, where the per-image transforms cost more than the network's step)
VIEWS = ("per_image", "batched")


def batched_views(images: torch.Tensor, generator: torch.Generator,
                  crop_scale: tuple = (0.2, 1.0)) -> tuple[torch.Tensor, torch.Tensor]:
    """Two independent augmentations of the uint8 ``images`` [B, C, H, W], each drawn for the whole
    batch at once by ``attacks.contrastive_poisoning.differentiable_view`` (the same resized crop,
    flip, colour jitter and grayscale as ``two_views``, bilinear, without the hue jitter)."""
    from ..attacks.contrastive_poisoning import differentiable_view
    unit = images.float() / 255
    return differentiable_view(unit, generator, crop_scale), differentiable_view(unit, generator, crop_scale)


def mlp(dims: list[int], last_bn: bool = False) -> nn.Sequential:
    """Linear layers with batch norm and ReLU between them (and batch norm after the last with
    ``last_bn``, SimSiam's projector)."""
    layers: list[nn.Module] = []
    for i, (a, b) in enumerate(zip(dims[:-1], dims[1:])):
        last = i == len(dims) - 2
        layers.append(nn.Linear(a, b, bias=last and not last_bn))
        if not last:
            layers += [nn.BatchNorm1d(b), nn.ReLU(inplace=True)]
        elif last_bn:
            layers.append(nn.BatchNorm1d(b, affine=False))
    return nn.Sequential(*layers)


class ProbedEncoder(nn.Module):
    """A frozen encoder and a linear probe: logits = W (f(x) - mean) / scale + b."""

    def __init__(self, encoder: M.Classifier, mean, scale, weight, bias):
        super().__init__()
        self.encoder = encoder.eval().requires_grad_(False)
        self.register_buffer("mean", torch.as_tensor(mean, dtype=torch.float32))
        self.register_buffer("scale", torch.as_tensor(scale, dtype=torch.float32))
        self.probe = nn.Linear(len(mean), len(bias))
        with torch.no_grad():
            self.probe.weight.copy_(torch.as_tensor(weight, dtype=torch.float32))
            self.probe.bias.copy_(torch.as_tensor(bias, dtype=torch.float32))
        self.probe.requires_grad_(False)

    def forward(self, x):
        return self.probe((self.encoder.features(x) - self.mean) / self.scale)


def linear_probe(encoder: M.Classifier, images: torch.Tensor, labels: torch.Tensor, *, c: float = 1.0,
                 max_iter: int = 1000) -> ProbedEncoder:
    """Logistic regression (L2, inverse strength ``c``, L-BFGS) on the standardised frozen features
    of uint8 ``images``; classes absent from ``labels`` get logit -1e9."""
    feats = torch.cat([T.extract_features(encoder, T.to_unit(images[i:i + 5000]))  # floats a chunk at a time
                       for i in range(0, len(images), 5000)]).double().numpy()
    y = torch.as_tensor(labels).long().numpy()
    scaler = StandardScaler().fit(feats)
    clf = LogisticRegression(C=c, max_iter=max_iter).fit(scaler.transform(feats), y)
    num_classes = int(y.max()) + 1
    weight = np.zeros((num_classes, feats.shape[1]))
    bias = np.full(num_classes, -1e9)
    if len(clf.classes_) == 2:  # one logit for the second class against the first's zero
        weight[clf.classes_[1]], bias[clf.classes_[1]], bias[clf.classes_[0]] = clf.coef_[0], clf.intercept_[0], 0.0
    else:
        weight[clf.classes_], bias[clf.classes_] = clf.coef_, clf.intercept_
    device = next(encoder.parameters()).device  # the probe joins the encoder (a GPU where it is on one)
    return ProbedEncoder(encoder, scaler.mean_, scaler.scale_, weight, bias).to(device)


# --------------------------------------------------------------------------- the losses
def nt_xent(z1: torch.Tensor, z2: torch.Tensor, temperature: float) -> torch.Tensor:
    """SimCLR's NT-Xent over the 2B views: each view's positive is its other view, the other
    2B - 2 views its negatives."""
    z = F.normalize(torch.cat([z1, z2]), dim=1)
    sim = z @ z.T / temperature
    sim.fill_diagonal_(float("-inf"))  # k != i
    b = len(z1)
    positive = torch.cat([torch.arange(b, 2 * b), torch.arange(b)]).to(z.device)
    return F.cross_entropy(sim, positive)


def info_nce(q: torch.Tensor, k: torch.Tensor, queue: torch.Tensor, temperature: float) -> torch.Tensor:
    """MoCo's InfoNCE: query q against its key k (the positive, index 0) and the queue's keys
    [K, D]; q, k and the queue unit vectors."""
    positive = (q * k).sum(1, keepdim=True)
    negative = q @ queue.T
    logits = torch.cat([positive, negative], dim=1) / temperature
    return F.cross_entropy(logits, torch.zeros(len(q), dtype=torch.long, device=q.device))


def simsiam_loss(p1: torch.Tensor, p2: torch.Tensor, z1: torch.Tensor, z2: torch.Tensor) -> torch.Tensor:
    """SimSiam's symmetrised negative cosine similarity with the stop-gradient on the targets z."""
    return -(F.cosine_similarity(p1, z2.detach(), dim=1).mean()
             + F.cosine_similarity(p2, z1.detach(), dim=1).mean()) / 2


@torch.no_grad()
def momentum_update(key: nn.Module, query: nn.Module, m: float) -> None:
    """theta_k <- m theta_k + (1 - m) theta_q (MoCo's Eq. 2); buffers (batch-norm statistics) copied."""
    for pk, pq in zip(key.parameters(), query.parameters()):
        pk.mul_(m).add_(pq.detach(), alpha=1 - m)
    for bk, bq in zip(key.buffers(), query.buffers()):
        bk.copy_(bq)


# --------------------------------------------------------------------------- the learners
@dataclass(frozen=True)
class RandomFeatureLearner(SupervisedLearner):
    """The encoder of ``arch`` at its random initialisation (drawn from the seed) and a linear
    probe on its frozen features: the baseline of the contrastive learners. ``probe_c``: the
    probe's inverse L2 strength."""
    probe_c: float = 1.0
    probe_max_iter: int = 1000

    def __post_init__(self):
        if self.arch not in M.MODELS:
            raise ValueError(f"arch={self.arch!r}: unknown; allowed: {', '.join(M.MODELS)}")
        if not self.probe_c > 0 or not (isinstance(self.probe_max_iter, int) and self.probe_max_iter >= 1):
            raise ValueError(f"probe_c={self.probe_c!r}, probe_max_iter={self.probe_max_iter!r}: "
                             "probe_c > 0 and an integer probe_max_iter >= 1")

    def encoder(self, seed: int) -> M.Classifier:
        with seeded(seed):  # the initial weights are a function of the seed alone
            return M.build_model(self.arch).to(T.default_device())

    def pretrain(self, x: torch.Tensor, seed: int) -> tuple[M.Classifier, nn.ModuleDict]:
        """The encoder (and the method's other networks) after self-supervised training on the
        uint8 images ``x``: none here."""
        return self.encoder(seed), nn.ModuleDict()

    def train(self, x, y, recipe, seed, *, score=None):
        x = T.as_nchw(x)
        if x.dtype != torch.uint8:
            raise ValueError(f"images of dtype {x.dtype}: the contrastive learners take uint8 pixels")
        encoder, _ = self.pretrain(x, seed)
        return linear_probe(encoder, x, y, c=self.probe_c, max_iter=self.probe_max_iter)


@dataclass(frozen=True)
class _Contrastive(RandomFeatureLearner):
    """Self-supervised pre-training of the encoder (module docstring), then the probe."""
    epochs: float = 20.0
    batch_size: int = 256
    lr: float = 0.06
    momentum: float = 0.9
    weight_decay: float = 5e-4
    projection_dim: int = 128
    hidden_dim: int = 512
    crop_scale: tuple = (0.2, 1.0)
    views: str = "per_image"  # VIEWS
    autocast: bool = False  # True: pre-train under the precision in force (bf16 where the processor has it)

    def __post_init__(self):
        super().__post_init__()
        object.__setattr__(self, "crop_scale", tuple(self.crop_scale))  # a JSON spec gives a list
        if self.views not in VIEWS:
            raise ValueError(f"views={self.views!r}: allowed: {', '.join(VIEWS)}")
        for name in ("epochs", "lr", "projection_dim", "hidden_dim"):
            if not getattr(self, name) > 0:
                raise ValueError(f"{name}={getattr(self, name)!r}: must be positive")
        if not isinstance(self.batch_size, int) or self.batch_size < 2:
            raise ValueError(f"batch_size={self.batch_size!r}: an integer >= 2 (contrast needs pairs)")
        if not 0 <= self.momentum < 1 or self.weight_decay < 0:
            raise ValueError(f"momentum={self.momentum!r} in [0, 1) and weight_decay={self.weight_decay!r} >= 0")
        if len(self.crop_scale) != 2 or not 0 < self.crop_scale[0] <= self.crop_scale[1] <= 1:
            raise ValueError(f"crop_scale={self.crop_scale!r}: 0 < low <= high <= 1")

    # each method: its networks besides the encoder, its loss, and what follows each step
    def networks(self, encoder: M.Classifier) -> nn.ModuleDict:
        raise NotImplementedError

    def loss(self, encoder, nets: nn.ModuleDict, v1: torch.Tensor, v2_: torch.Tensor, generator) -> torch.Tensor:
        raise NotImplementedError

    def after_step(self, encoder, nets: nn.ModuleDict, state: dict) -> None:
        pass

    def pretrain(self, x, seed):
        encoder = self.encoder(seed)
        with seeded(seed):
            nets = self.networks(encoder).to(next(encoder.parameters()).device)
        gen = seed_everything(seed)
        trained = [p for p in [*encoder.parameters(), *nets.parameters()] if p.requires_grad]
        opt = torch.optim.SGD(trained, lr=self.lr, momentum=self.momentum, weight_decay=self.weight_decay)
        n = len(x)
        batch = min(self.batch_size, n)
        steps_per_epoch = max(1, n // batch)  # full batches only: batch norm sees no tiny tail
        total = max(1, round(self.epochs * steps_per_epoch))
        sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, total)
        device = next(encoder.parameters()).device
        encoder.train()
        nets.train()
        step = 0
        draw = two_views if self.views == "per_image" else batched_views
        with progress(total=total, desc=f"{type(self).__name__} {self.arch}", leave=False) as bar:
            while step < total:
                perm = torch.randperm(n, generator=gen)
                for i in range(steps_per_epoch):
                    if step == total:
                        break
                    v1, v2_ = draw(x[perm[i * batch:(i + 1) * batch]], gen, self.crop_scale)
                    with PR.autocast(device) if self.autocast else contextlib.nullcontext():
                        loss = self.loss(encoder, nets, v1.to(device), v2_.to(device), gen).float()
                    opt.zero_grad(set_to_none=True)
                    loss.backward()
                    opt.step()
                    sched.step()
                    self.after_step(encoder, nets, {"step": step})
                    step += 1
                    bar.update(1)
        encoder.eval()
        nets.eval()
        return encoder, nets


@dataclass(frozen=True)
class SimCLRLearner(_Contrastive):
    """SimCLR (Chen et al. 2020): NT-Xent at ``temperature`` (0.5, their CIFAR-10 setting) on a
    two-layer projector."""
    temperature: float = 0.5

    def __post_init__(self):
        super().__post_init__()
        if not self.temperature > 0:
            raise ValueError(f"temperature={self.temperature!r}: must be positive")

    def networks(self, encoder):
        return nn.ModuleDict({"projector": mlp([encoder.feature_dim, self.hidden_dim, self.projection_dim])})

    def loss(self, encoder, nets, v1, v2_, generator):
        g = nets["projector"]
        return nt_xent(g(encoder.features(v1)), g(encoder.features(v2_)), self.temperature)


@dataclass(frozen=True)
class MoCoV2Learner(_Contrastive):
    """MoCo v2 (He et al. 2020; Chen et al. 2020): a key encoder and projector that are the
    momentum copy (``key_momentum``, 0.99 as in MoCo's CIFAR-10 demo) of the query's, a queue of
    ``queue_size`` keys, InfoNCE at ``temperature`` 0.2; keys on ``bn_groups`` shuffled groups."""
    temperature: float = 0.2
    key_momentum: float = 0.99
    queue_size: int = 4096
    bn_groups: int = 2

    def __post_init__(self):
        super().__post_init__()
        if not self.temperature > 0 or not 0 <= self.key_momentum < 1:
            raise ValueError(f"temperature={self.temperature!r} > 0 and key_momentum={self.key_momentum!r} in [0, 1)")
        if not isinstance(self.queue_size, int) or self.queue_size < 1:
            raise ValueError(f"queue_size={self.queue_size!r}: an integer >= 1")
        if not isinstance(self.bn_groups, int) or not 1 <= self.bn_groups <= self.batch_size // 2:
            raise ValueError(f"bn_groups={self.bn_groups!r}: an integer in [1, batch_size / 2]")

    def networks(self, encoder):
        projector = mlp([encoder.feature_dim, self.hidden_dim, self.projection_dim])
        nets = nn.ModuleDict({"projector": projector,
                              "key_encoder": copy.deepcopy(encoder).requires_grad_(False),
                              "key_projector": copy.deepcopy(projector).requires_grad_(False)})
        # the queue starts as random unit vectors (MoCo's code); a buffer, so it moves with the networks
        nets.register_buffer("queue", F.normalize(torch.randn(self.queue_size, self.projection_dim), dim=1))
        nets.register_buffer("pointer", torch.zeros((), dtype=torch.long))
        return nets

    def loss(self, encoder, nets, v1, v2_, generator):
        q = F.normalize(nets["projector"](encoder.features(v1)), dim=1)
        with torch.no_grad():
            order = torch.randperm(len(v2_), generator=generator).to(v2_.device)
            keys = torch.cat([nets["key_projector"](nets["key_encoder"].features(chunk))
                              for chunk in v2_[order].chunk(self.bn_groups)])
            k = F.normalize(torch.empty_like(keys).index_copy_(0, order, keys), dim=1)  # back to the batch's order
        loss = info_nce(q, k, nets.queue.clone(), self.temperature)
        nets.pending = k  # enqueued after the step (the queue is a constant of this step's loss)
        return loss

    def after_step(self, encoder, nets, state):
        momentum_update(nets["key_encoder"], encoder, self.key_momentum)
        momentum_update(nets["key_projector"], nets["projector"], self.key_momentum)
        k = nets.pending[: self.queue_size]
        slots = (nets.pointer + torch.arange(len(k), device=k.device)) % self.queue_size
        nets.queue[slots] = k.to(nets.queue.dtype)  # under autocast the keys are bf16, the queue fp32
        nets.pointer.copy_((nets.pointer + len(k)) % self.queue_size)


@dataclass(frozen=True)
class SimSiamLearner(_Contrastive):
    """SimSiam (Chen and He 2021): a three-layer projector ending in batch norm (``projection_dim``
    wide; 2048 in the paper) and a bottleneck predictor (``predictor_dim``, a quarter), the
    stop-gradient on the targets; lr 0.03 (their CIFAR-10 setting at batch 256)."""
    lr: float = 0.03
    projection_dim: int = 512
    predictor_dim: int = 128

    def __post_init__(self):
        super().__post_init__()
        if not isinstance(self.predictor_dim, int) or self.predictor_dim < 1:
            raise ValueError(f"predictor_dim={self.predictor_dim!r}: an integer >= 1")

    def networks(self, encoder):
        d = self.projection_dim
        return nn.ModuleDict({"projector": mlp([encoder.feature_dim, d, d, d], last_bn=True),
                              "predictor": mlp([d, self.predictor_dim, d])})

    def loss(self, encoder, nets, v1, v2_, generator):
        z1, z2 = nets["projector"](encoder.features(v1)), nets["projector"](encoder.features(v2_))
        return simsiam_loss(nets["predictor"](z1), nets["predictor"](z2), z1, z2)

