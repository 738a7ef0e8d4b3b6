"""Models. Every network maps [0, 1] pixels (or raw tabular features) to logits and exposes

- ``features(x)``: the penultimate representation (what feature-collision attacks collide in),
- ``head``: the last linear layer, so that ``forward(x) == head(features(x))``.

Input normalisation lives inside the model, so attacks work in pixel space.

The small ``ConvNet`` is the workhorse of the ``cpu`` profile: no batch norm, so that many
copies can be trained at once with ``torch.func.vmap`` (see ``poisonrepro.train``). Its
width was picked by measured speed on the 2-core machine (README, "Models").
"""
from __future__ import annotations

import torch
import torch.nn as nn
import torchvision

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
    "alexnet_cifar": alexnet_cifar,
    "resnet18": resnet18_cifar,
    "mobilenet_v2": mobilenet_v2_cifar,
    "vgg11": vgg11_cifar,
    "inception_v3_imagenet": inception_v3_imagenet,
    "mlp": mlp,
    "logistic_regression": logistic_regression,
    "adaline": adaline,
}


def build_model(name: str, **kwargs) -> Classifier:
    if name not in MODELS:
        raise ValueError(f"unknown model {name!r}; allowed: {', '.join(MODELS)}")
    return MODELS[name](**kwargs)


def trainable_summary(model: nn.Module) -> list[tuple[str, int, bool]]:
    """(layer name, parameter count, trainable?) for every module that owns parameters."""
    rows = []
    for name, module in model.named_modules():
        own = list(module.parameters(recurse=False))
        if own:
            rows.append((name, sum(p.numel() for p in own), all(p.requires_grad for p in own)))
    return rows
