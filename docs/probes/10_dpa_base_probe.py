"""Probe before notebook 10's rescaled cpu run (issue 23): how strong can the k = 50 CIFAR-10 base
classifiers get within the notebook's 45 minutes? No claim is computed.

Phase "speed": images per second of one batched pass (10 partitions of 1,000 images, 1,280 images
per step) of the base network at several widths, fp32 and under bf16 autocast. Phase "accuracy"
(args: width epochs [bf16]): 10 of the 50 partitions trained with the code's recipe (crop and
flip) for that many epochs; their mean accuracy on 2,000 test images, and the seconds taken. Phase
"mnist" (args: k width epochs): 20 of MNIST's k partitions of the 5,000 offline digits, likewise
(no augmentation, as the code)."""
import json
import platform
import sys
import time
from contextlib import nullcontext

import torch

from poisonrepro.defenses import dpa
from poisonrepro.papers.dpa import experiments as E

torch.set_num_threads(2)
mnist = sys.argv[1] in ("mnist", "mnistgn")
d = E.dataset("mnist", None, 2000) if mnist else E.dataset("cifar", 50_000, 2000)
parts = dpa.partitions(d["x"], d["y"], int(sys.argv[2]) if mnist else 50)
ids = list(range(20 if mnist else 10))
cpu = platform.processor() or "unknown"


def autocast(bf16: bool):
    return torch.autocast("cpu", dtype=torch.bfloat16) if bf16 else nullcontext()


if sys.argv[1] == "speed":
    out = {"cpu": cpu}
    for width in (8, 16, 24, 32):
        for bf16 in (False, True):
            r = dpa.BaseRecipe(epochs=1, crop_pad=4, flip=True)
            make = lambda: E.base_network(3, width)  # noqa: E731
            with autocast(bf16):
                t0 = time.perf_counter()
                dpa.train_base_classifiers(make, d["x"], d["y"], parts, r, ids=ids, desc="speed")
                s = time.perf_counter() - t0
            out[f"width {width}, {'bf16' if bf16 else 'fp32'}"] = {"seconds per epoch (10 partitions)": round(s, 1),
                                                                  "images/s": round(10_000 / s)}
            print(json.dumps(out), flush=True)
else:
    args = sys.argv[3:] if mnist else sys.argv[2:]
    width, epochs, bf16 = int(args[0]), int(args[1]), len(args) > 2
    r = E.recipe(epochs, 128, 0.1, "mnist" if mnist else "cifar")
    make = lambda: E.base_network(1 if mnist else 3, width)  # noqa: E731
    if sys.argv[1] in ("accgn", "mnistgn"):  # the same blocks with GroupNorm after each convolution (per sample)
        import torch.nn as nn
        from poisonrepro import models as M

        cin_data = 1 if mnist else 3

        def make():
            w, layers, cin = width, [], 1 if mnist else 3
            for c in (w, 2 * w, 4 * w):
                layers += [nn.Conv2d(cin, c, 3, padding=1), nn.GroupNorm(min(8, c // 2), c), nn.ReLU(), nn.MaxPool2d(2)]
                cin = c
            net = M.Classifier(nn.Sequential(*layers, nn.Flatten()), 4 * w * 16, 10,
                               M.Normalize([0.5] * cin_data, [0.25] * cin_data))
            return net
    with autocast(bf16):
        t0 = time.perf_counter()
        stack = dpa.train_base_classifiers(make, d["x"], d["y"], parts, r, ids=ids, desc="accuracy")
        s = time.perf_counter() - t0
    votes = dpa.predict_base_classifiers(stack, d["test_x"])
    acc = (votes == torch.as_tensor(d["test_y"]).long()[None]).float().mean(1)
    print(json.dumps({"cpu": cpu, "dataset": "mnist" if mnist else "cifar", "norm": "group" if "gn" in sys.argv[1] else "none", "partitions": len(parts), "width": width, "epochs": epochs, "bf16": bf16, f"seconds ({len(ids)} partitions)": round(s, 1),
                      "base accuracy mean": round(float(acc.mean()), 4), "min": round(float(acc.min()), 4),
                      "max": round(float(acc.max()), 4)}), flush=True)
