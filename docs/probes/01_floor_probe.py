"""Probe before notebook 01's rescaled cpu run (issue 23): can the stand-in extractor (ConvNet-32,
2,048-d penultimate features, the regime of InceptionV3's) reach the 80% floor on its own task (the
8 CIFAR-10 classes other than airplane and frog), and can the end-to-end victim (ConvNet-16, bird
vs dog) reach it, and at what cost per end-to-end trial? No claim is computed.

Usage: python docs/probes/01_floor_probe.py CASE [CASE ...]; CASE is one of
  extractor-adam:EPOCHS:PER_CLASS  the notebook's recipe (Adam 1e-3, augmentation; train.train_classifier)
  extractor-fast:EPOCHS:PER_CLASS  the fast victim recipe (train.train_victim)
  e2e-adam:EPOCHS:PER_CLASS        the end-to-end victim, the notebook's recipe
  e2e-fast:EPOCHS:PER_CLASS        the end-to-end victim, the fast victim recipe
  finetune:PER_CLASS               one epoch of the end-to-end fine-tuning (Adam 1e-4, no augmentation)
  e2ebn-fast:EPOCHS:PER_CLASS      an end-to-end victim with batch norm (ConvNet-BN), the fast victim recipe
  finetunebn:PER_CLASS             one epoch of the end-to-end fine-tuning of ConvNet-BN
Prints one JSON line per case. Run it alone on the machine (it is a timing)."""
import json
import sys
import time

import numpy as np
import torch

from poisonrepro import data as D
from poisonrepro import models as M
from poisonrepro import precision
from poisonrepro import train as T

torch.set_num_threads(2)
train, test = D.load_cifar10("train"), D.load_cifar10("test")


def task(classes, per_class):
    idx = np.sort(np.concatenate([np.flatnonzero(train.y == c)[:per_class] for c in classes]))
    tidx = np.flatnonzero(np.isin(test.y, classes))
    remap = {c: i for i, c in enumerate(classes)}
    lab = lambda ys: torch.tensor([remap[int(v)] for v in ys])
    return T.as_nchw(train.x[idx]), lab(train.y[idx]), T.as_nchw(test.x[tidx]), lab(test.y[tidx])


SEEN = [c for c in range(10) if c not in (D.class_index("airplane"), D.class_index("frog"))]
E2E = [D.class_index("bird"), D.class_index("dog")]
for case in sys.argv[1:]:
    kind, *rest = case.split(":")
    if kind in ("finetune", "finetunebn"):
        per_class, epochs = int(rest[0]), 1
    else:
        epochs, per_class = float(rest[0]), int(rest[1])
    net, recipe = kind.split("-") if "-" in kind else (kind.replace("finetune", "e2e"), "finetune")
    classes = SEEN if net == "extractor" else E2E
    x, y, tx, ty = task(classes, per_class)
    width = 32 if net == "extractor" else 16
    torch.manual_seed(0)
    model = M.convnet_bn(len(classes)) if net.endswith("bn") else M.convnet(len(classes), width=width)
    t0 = time.perf_counter()
    if recipe == "fast":
        T.train_victim(model, x, y, T.VictimRecipe(epochs=epochs), seed=0, desc=case)
    elif recipe == "adam":
        T.train_classifier(model, T.to_unit(x), y, epochs=int(epochs), lr=1e-3, optimizer="adam", augment=True,
                           seed=0, desc=case)
    else:
        T.train_classifier(model, T.to_unit(x), y, epochs=1, lr=1e-4, optimizer="adam", augment=False,
                           seed=0, desc=case)
    seconds = time.perf_counter() - t0
    acc = T.victim_accuracy(model, tx, ty, flip_tta=False)  # the notebook scores without test-time flips
    print(json.dumps({"case": case, "classes": len(classes), "train images": len(y), "seconds": round(seconds, 1),
                      "images/s": round(len(y) * epochs / seconds), "clean accuracy (own task)": round(acc, 4),
                      "test images": len(ty), "precision": precision.in_force()}), flush=True)
