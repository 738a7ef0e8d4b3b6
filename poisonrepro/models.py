"""Models. Every network maps [0, 1] pixels (or raw tabular features) to logits and exposes

- ``features(x)``: the penultimate representation (what feature-collision attacks collide in),
- ``head``: the last linear layer, so that ``forward(x) == head(features(x))``.

Input normalisation lives inside the model, so attacks work in pixel space.

The small ``ConvNet`` is the workhorse of the ``cpu`` profile: no batch norm, so that many
copies can be trained at once with ``torch.func.vmap`` (see ``poisonrepro.train``). Its
width was picked by measured speed on the 2-core machine (README, "Models").

Victims trained from scratch (the deep-net papers) come in two sizes:

- the papers' own architectures (``resnet18``, ``mobilenet_v2``, ``vgg11``, ``efficientnet_b1``,
  ``regnetx_1_6gf``: torchvision's, with a stride-1 stem for 32x32 inputs), for the ``paper`` profile;
- their stand-ins (``<name>_standin``), for the ``cpu`` profile: the same torchvision block types
  (BasicBlock, InvertedResidual, MBConv, the RegNet X block, VGG's conv-BN-ReLU), narrowed and
  shortened so that one trains in a minute or two on 2 cores. ``STANDIN_OF`` maps each to the
  architecture it stands in for, and ``display_name`` labels it as a stand-in wherever it appears;
- ``convnet_bn``, the ConvNet with batch norm (conv-BN-GELU blocks after airbench, Jordan 2024):
  the fast victim of ``train.train_victim``.
"""
from __future__ import annotations

import importlib

import torch
import torch.nn as nn


class _Lazy:
    """``torchvision``, imported on first use: its model zoo costs about 2.5 s of import time in every
    notebook kernel and test process, most of which never build a torchvision architecture."""

    def __getattr__(self, name):
        return getattr(importlib.import_module("torchvision"), name)


torchvision = _Lazy()

CIFAR_MEAN = (0.4914, 0.4822, 0.4465)
CIFAR_STD = (0.2470, 0.2435, 0.2616)
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


class Normalize(nn.Module):
    def __init__(self, mean, std):
        super().__init__()
        self.register_buffer("mean", torch.tensor(mean).view(1, -1, 1, 1))
        self.register_buffer("std", torch.tensor(std).view(1, -1, 1, 1))

    def forward(self, x):
        return (x - self.mean) / self.std


class Classifier(nn.Module):
    """``head(body(normalize(x)))`` with ``features`` = ``body(normalize(x))``."""

    def __init__(self, body: nn.Module, feature_dim: int, num_classes: int, normalize: nn.Module | None):
        super().__init__()
        self.normalize = normalize if normalize is not None else nn.Identity()
        self.body = body
        self.feature_dim = feature_dim
        self.head = nn.Linear(feature_dim, num_classes)

    def features(self, x):
        return self.body(self.normalize(x))

    def forward(self, x):
        return self.head(self.features(x))


def convnet(num_classes: int = 10, width: int = 32, in_channels: int = 3) -> Classifier:
    """Three conv-ReLU-maxpool blocks (width, 2*width, 4*width); the penultimate layer is the
    flattened last block: 4*width*4*4 = 2048 features at width 32 on 32x32 inputs."""
    w = width
    body = nn.Sequential(
        nn.Conv2d(in_channels, w, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(w, 2 * w, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(2 * w, 4 * w, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
        nn.Flatten())
    return Classifier(body, 4 * w * 16, num_classes, Normalize(CIFAR_MEAN, CIFAR_STD))


class ConvBlock(nn.Sequential):
    """airbench's block: conv, max-pool, BN, GELU, conv, BN, GELU (the pool before the norm
    halves the work of the first norm and activation)."""

    def __init__(self, cin: int, cout: int):
        super().__init__(nn.Conv2d(cin, cout, 3, padding=1, bias=False), nn.MaxPool2d(2),
                         nn.BatchNorm2d(cout), nn.GELU(),
                         nn.Conv2d(cout, cout, 3, padding=1, bias=False), nn.BatchNorm2d(cout), nn.GELU())


def convnet_bn(num_classes: int = 10, widths: tuple = (16, 32, 64), stem: int = 16, stem_kernel: int = 2,
               stem_padding: int = 0) -> Classifier:
    """The ConvNet with batch norm: a 2x2 stem conv, three ``ConvBlock`` (each halves the
    resolution), a global max-pool and a bias-free linear head (airbench's layout, narrowed).

    The unpadded 2x2 stem leaves 31x31 maps, and each floor-rounded pool then drops the last row
    and column (31 -> 15 -> 7 -> 3): the bottom and right border pixels reach the head only
    through the convolutions' edges (a random network's bottom-right 3x3 corner has about a
    fifth of the top-left's gradient), so a corner trigger is nearly invisible to it.
    ``convnet_bn_padded`` (a 3x3 stem with padding 1: 32 -> 16 -> 8 -> 4) sees every pixel."""
    layers = [nn.Conv2d(3, stem, stem_kernel, padding=stem_padding), nn.GELU()]
    cin = stem
    for w in widths:
        layers.append(ConvBlock(cin, w))
        cin = w
    body = nn.Sequential(*layers, nn.AdaptiveMaxPool2d(1), nn.Flatten())
    model = Classifier(body, cin, num_classes, Normalize(CIFAR_MEAN, CIFAR_STD))
    model.head = nn.Linear(cin, num_classes, bias=False)
    return model


def convnet_bn_padded(num_classes: int = 10) -> Classifier:
    """``convnet_bn`` with a 3x3 stem padded by 1, so that no border pixel is cut off by the
    pooling: the victim of the backdoor notebook, whose triggers sit in the corner."""
    return convnet_bn(num_classes, stem_kernel=3, stem_padding=1)


def alexnet_cifar(num_classes: int = 10) -> Classifier:
    """The scaled-down AlexNet of the TensorFlow CIFAR-10 tutorial that Poison Frogs used
    end-to-end (two 5x5 conv layers of 64, two fully connected layers of 384 and 192)."""
    body = nn.Sequential(
        nn.Conv2d(3, 64, 5, padding=2), nn.ReLU(), nn.MaxPool2d(3, 2, padding=1),
        nn.LocalResponseNorm(4, alpha=0.001 / 9.0, beta=0.75, k=1.0),
        nn.Conv2d(64, 64, 5, padding=2), nn.ReLU(),
        nn.LocalResponseNorm(4, alpha=0.001 / 9.0, beta=0.75, k=1.0), nn.MaxPool2d(3, 2, padding=1),
        nn.Flatten(), nn.Linear(64 * 8 * 8, 384), nn.ReLU(), nn.Linear(384, 192), nn.ReLU())
    return Classifier(body, 192, num_classes, Normalize(CIFAR_MEAN, CIFAR_STD))


def resnet18_cifar(num_classes: int = 10) -> Classifier:
    """torchvision's ResNet-18 with the usual CIFAR stem (3x3 conv, stride 1, no max-pool)."""
    net = torchvision.models.resnet18(num_classes=num_classes)
    net.conv1 = nn.Conv2d(3, 64, 3, 1, 1, bias=False)
    net.maxpool = nn.Identity()
    net.fc = nn.Identity()
    return Classifier(net, 512, num_classes, Normalize(CIFAR_MEAN, CIFAR_STD))


class _WideBlock(nn.Module):
    """Pre-activation basic block of a wide ResNet: BN-ReLU-conv3x3-BN-ReLU-conv3x3, a 1x1
    convolution on the shortcut where the shape changes."""

    def __init__(self, cin: int, cout: int, stride: int):
        super().__init__()
        self.bn1, self.conv1 = nn.BatchNorm2d(cin), nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
        self.bn2, self.conv2 = nn.BatchNorm2d(cout), nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
        self.shortcut = None if cin == cout and stride == 1 else nn.Conv2d(cin, cout, 1, stride, bias=False)

    def forward(self, x):
        o = torch.relu(self.bn1(x))
        y = self.conv2(torch.relu(self.bn2(self.conv1(o))))
        return y + (x if self.shortcut is None else self.shortcut(o))


def wide_resnet_cifar(num_classes: int = 10, depth: int = 16, widen: int = 1) -> Classifier:
    """WRN-depth-widen (Zagoruyko and Komodakis 2016) for 32x32 inputs: a 3x3 stem of 16, three
    groups of (depth - 4) / 6 blocks of 16, 32, 64 x ``widen`` channels (strides 1, 2, 2), BN-ReLU,
    global average pooling. ABL's repository trains WRN-16-1; ITLM's paper a WRN-16."""
    if (depth - 4) % 6:
        raise ValueError(f"depth={depth}: a wide ResNet has depth 6n + 4")
    n, widths = (depth - 4) // 6, [16, 16 * widen, 32 * widen, 64 * widen]
    layers = [nn.Conv2d(3, 16, 3, 1, 1, bias=False)]
    for g in range(3):
        layers += [_WideBlock(widths[g] if i == 0 else widths[g + 1], widths[g + 1], (1 if g == 0 else 2) if i == 0 else 1)
                   for i in range(n)]
    layers += [nn.BatchNorm2d(widths[3]), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten()]
    return Classifier(nn.Sequential(*layers), widths[3], num_classes, Normalize(CIFAR_MEAN, CIFAR_STD))


def mobilenet_v2_cifar(num_classes: int = 10) -> Classifier:
    """torchvision's MobileNet-V2 with a stride-1 stem for 32x32 inputs."""
    net = torchvision.models.mobilenet_v2(num_classes=num_classes)
    net.features[0][0].stride = (1, 1)
    net.classifier = nn.Identity()
    return Classifier(net, 1280, num_classes, Normalize(CIFAR_MEAN, CIFAR_STD))


def vgg11_cifar(num_classes: int = 10) -> Classifier:
    """torchvision's VGG-11 (with batch norm) convolutional stack; 512-d features at 32x32."""
    net = torchvision.models.vgg11_bn(num_classes=num_classes)
    body = nn.Sequential(net.features, nn.Flatten())
    return Classifier(body, 512, num_classes, Normalize(CIFAR_MEAN, CIFAR_STD))


def efficientnet_b1_cifar(num_classes: int = 10, width_mult: float = 1.0, depth_mult: float = 1.1) -> Classifier:
    """torchvision's EfficientNet-B1 (width 1.0, depth 1.1) with a stride-1 stem for 32x32 inputs."""
    from functools import partial
    from torchvision.models.efficientnet import EfficientNet, MBConvConfig
    conf = partial(MBConvConfig, width_mult=width_mult, depth_mult=depth_mult)
    setting = [conf(1, 3, 1, 32, 16, 1), conf(6, 3, 2, 16, 24, 2), conf(6, 5, 2, 24, 40, 2),
               conf(6, 3, 2, 40, 80, 3), conf(6, 5, 1, 80, 112, 3), conf(6, 5, 2, 112, 192, 4),
               conf(6, 3, 1, 192, 320, 1)]  # torchvision's _efficientnet_conf("efficientnet_b*")
    net = EfficientNet(setting, dropout=0.2, num_classes=num_classes)
    net.features[0][0].stride = (1, 1)
    dim = net.classifier[1].in_features
    net.classifier = nn.Identity()
    return Classifier(net, dim, num_classes, Normalize(CIFAR_MEAN, CIFAR_STD))


def regnetx_1_6gf_cifar(num_classes: int = 10, depth: int = 18, w_0: int = 80, w_a: float = 34.01,
                        w_m: float = 2.25, group_width: int = 24, stem_width: int = 32) -> Classifier:
    """torchvision's RegNetX-1.6GF (depth 18, w_0 80, w_a 34.01, w_m 2.25, group width 24) with
    a stride-1 stem for 32x32 inputs."""
    from torchvision.models.regnet import BlockParams, RegNet
    params = BlockParams.from_init_params(depth=depth, w_0=w_0, w_a=w_a, w_m=w_m, group_width=group_width)
    net = RegNet(params, num_classes=num_classes, stem_width=stem_width)
    net.stem[0].stride = (1, 1)
    dim = net.fc.in_features
    net.fc = nn.Identity()
    return Classifier(net, dim, num_classes, Normalize(CIFAR_MEAN, CIFAR_STD))


# --------------------------------------------------------------------------- stand-ins
def resnet18_standin(num_classes: int = 10, widths: tuple = (16, 32, 64, 128), blocks: tuple = (1, 1, 1, 1)) -> Classifier:
    """ResNet-18 narrowed (64-128-256-512 -> 16-32-64-128) and shortened (2 BasicBlocks per
    stage -> 1): torchvision's ``ResNet._make_layer`` with its ``BasicBlock``, CIFAR stem."""
    from torchvision.models.resnet import BasicBlock
    net = torchvision.models.resnet18(num_classes=num_classes)
    net.inplanes = widths[0]
    net.conv1 = nn.Conv2d(3, widths[0], 3, 1, 1, bias=False)
    net.bn1 = nn.BatchNorm2d(widths[0])
    net.maxpool = nn.Identity()
    for i, (w, b) in enumerate(zip(widths, blocks)):
        setattr(net, f"layer{i + 1}", net._make_layer(BasicBlock, w, b, stride=1 if i == 0 else 2))
    net.fc = nn.Identity()
    return Classifier(net, widths[-1], num_classes, Normalize(CIFAR_MEAN, CIFAR_STD))


def mobilenet_v2_standin(num_classes: int = 10) -> Classifier:
    """MobileNet-V2 narrowed (width x0.25) and shortened (each stage's repeats halved, at least
    one): torchvision's ``MobileNetV2`` and ``InvertedResidual``; stride-1 stem and a stride-1
    second stage for 32x32 inputs (as in the common CIFAR variant)."""
    setting = [[1, 16, 1, 1], [6, 24, 1, 1], [6, 32, 2, 2], [6, 64, 2, 2], [6, 96, 1, 1],
               [6, 160, 2, 2], [6, 320, 1, 1]]  # t, c, n, s; torchvision's n (1,2,3,4,3,3,1) halved
    net = torchvision.models.MobileNetV2(num_classes=num_classes, width_mult=0.25,
                                         inverted_residual_setting=setting)
    net.features[0][0].stride = (1, 1)
    dim = net.last_channel
    net.classifier = nn.Identity()
    return Classifier(net, dim, num_classes, Normalize(CIFAR_MEAN, CIFAR_STD))


def vgg11_standin(num_classes: int = 10) -> Classifier:
    """VGG-11 (configuration A, with batch norm) narrowed 4x: torchvision's ``make_layers``."""
    from torchvision.models.vgg import make_layers
    cfg = [16, "M", 32, "M", 64, 64, "M", 128, 128, "M", 128, 128, "M"]
    body = nn.Sequential(make_layers(cfg, batch_norm=True), nn.Flatten())
    return Classifier(body, 128, num_classes, Normalize(CIFAR_MEAN, CIFAR_STD))


def efficientnet_b1_standin(num_classes: int = 10) -> Classifier:
    """EfficientNet-B1 narrowed (width x0.25) and shortened (depth x0.5): torchvision's MBConv."""
    return efficientnet_b1_cifar(num_classes, width_mult=0.25, depth_mult=0.5)


def regnetx_1_6gf_standin(num_classes: int = 10) -> Classifier:
    """RegNetX-1.6GF narrowed (w_0 80 -> 16, w_a 34.01 -> 8, group width 24 -> 8, stem 32 -> 16)
    and shortened (depth 18 -> 6): torchvision's RegNet X block."""
    return regnetx_1_6gf_cifar(num_classes, depth=6, w_0=16, w_a=8.0, w_m=2.25, group_width=8, stem_width=16)


#: stand-in -> the architecture it replaces (its label says so wherever it appears)
STANDIN_OF = {
    "resnet18_standin": "resnet18", "mobilenet_v2_standin": "mobilenet_v2", "vgg11_standin": "vgg11",
    "efficientnet_b1_standin": "efficientnet_b1", "regnetx_1_6gf_standin": "regnetx_1_6gf",
}


def display_name(name: str) -> str:
    """How a model is labelled in tables and figures: stand-ins say so."""
    if name in STANDIN_OF:
        return f"{STANDIN_OF[name]} (STAND-IN: narrowed, shortened)"
    return name


def inception_v3_imagenet(num_classes: int = 2) -> Classifier:
    """torchvision's ImageNet InceptionV3 (2048-d pool features); downloads its weights.

    Inputs are resized to 299x299 inside the model. Raises if the weights cannot be had.
    """
    weights = torchvision.models.Inception_V3_Weights.IMAGENET1K_V1
    net = torchvision.models.inception_v3(weights=weights, aux_logits=True)
    net.aux_logits, net.AuxLogits = False, None
    net.fc = nn.Identity()
    body = nn.Sequential(nn.Upsample(size=(299, 299), mode="bilinear", align_corners=False), net)
    return Classifier(body, 2048, num_classes, Normalize(IMAGENET_MEAN, IMAGENET_STD))


def mlp(in_features: int, num_classes: int = 2, hidden: int = 10, activation: str = "tanh") -> Classifier:
    act = {"tanh": nn.Tanh, "relu": nn.ReLU}[activation]
    body = nn.Sequential(nn.Flatten(), nn.Linear(in_features, hidden), act())
    return Classifier(body, hidden, num_classes, None)


def logistic_regression(in_features: int, num_classes: int = 2) -> Classifier:
    """A linear model trained with cross-entropy (``features`` is the flattened input)."""
    return Classifier(nn.Flatten(), in_features, num_classes, None)


def adaline(in_features: int) -> Classifier:
    """ADALINE: one linear output trained on the squared error to +-1 targets
    (``poisonrepro.train`` picks the loss from ``model.loss``)."""
    model = Classifier(nn.Flatten(), in_features, 1, None)
    model.loss = "mse"
    return model


MODELS = {
    "convnet": convnet,
    "convnet_bn": convnet_bn,
    "convnet_bn_padded": convnet_bn_padded,
    "alexnet_cifar": alexnet_cifar,
    "resnet18": resnet18_cifar,
    "mobilenet_v2": mobilenet_v2_cifar,
    "vgg11": vgg11_cifar,
    "efficientnet_b1": efficientnet_b1_cifar,
    "regnetx_1_6gf": regnetx_1_6gf_cifar,
    "wrn16_1": lambda num_classes=10: wide_resnet_cifar(num_classes, 16, 1),
    "wrn16_8": lambda num_classes=10: wide_resnet_cifar(num_classes, 16, 8),
    **{name: globals()[name] for name in STANDIN_OF},
    "inception_v3_imagenet": inception_v3_imagenet,
    "mlp": mlp,
    "logistic_regression": logistic_regression,
    "adaline": adaline,
}


def build_model(name: str, **kwargs) -> Classifier:
    if name not in MODELS:
        raise ValueError(f"unknown model {name!r}; allowed: {', '.join(MODELS)}")
    return MODELS[name](**kwargs)


#: the output of the last-but-one stage of each architecture: the second feature level of
#: Convex Polytope's end-to-end ("multi-layer") attack (Zhu et al. 2019, Sec. 4.2 and Fig. 7, whose
#: code takes the second-to-last block of the last stage; our stand-ins have one block per stage)
MID_LAYERS = {
    "convnet_bn": "body.3",
    "vgg11_standin": "body.0.21", "vgg11": "body.0.21",
    "regnetx_1_6gf_standin": "body.trunk_output.block2", "regnetx_1_6gf": "body.trunk_output.block3",
    "resnet18_standin": "body.layer3", "resnet18": "body.layer3",
}


def layer_outputs(model: Classifier, x: torch.Tensor, layers) -> list[torch.Tensor]:
    """The flattened outputs [B, D] of ``layers`` (names of ``model.named_modules()``, or
    "penultimate" for ``model.features``) from one forward pass of ``model.features``."""
    captured, handles = {}, []
    for name in layers:
        if name != "penultimate":
            module = model.get_submodule(name)  # AttributeError names the missing layer
            handles.append(module.register_forward_hook(
                lambda _m, _i, out, name=name: captured.__setitem__(name, out)))
    try:
        penultimate = model.features(x)
    finally:
        for h in handles:
            h.remove()
    return [(penultimate if name == "penultimate" else captured[name]).flatten(1) for name in layers]


def with_dropout(model: Classifier, p: float) -> Classifier:
    """``model`` with dropout of rate ``p`` on its penultimate features, before the head (the
    substitutes of Convex Polytope are trained, and attacked, with dropout)."""
    if not 0 <= p < 1:
        raise ValueError(f"dropout p={p}: must lie in [0, 1)")
    if p > 0:
        model.head = nn.Sequential(nn.Dropout(p), model.head)
    model.dropout = p
    return model


def trainable_summary(model: nn.Module) -> list[tuple[str, int, bool]]:
    """(layer name, parameter count, trainable?) for every module that owns parameters."""
    rows = []
    for name, module in model.named_modules():
        own = list(module.parameters(recurse=False))
        if own:
            rows.append((name, sum(p.numel() for p in own), all(p.requires_grad for p in own)))
    return rows
