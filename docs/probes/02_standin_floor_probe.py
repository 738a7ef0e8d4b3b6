"""Probe before notebook 02's rescaled cpu run (issue 23): which stand-in architectures reach the
80% floor on CIFAR-10 when pretrained as the paper pretrains its substitutes (the first 4,800
images of every class: 48,000), with the project's fast victim recipe, and in how long? No claim is
computed.

Usage: python docs/probes/02_standin_floor_probe.py ARCH EPOCHS [ARCH EPOCHS ...]
Prints one JSON line per network: its clean accuracy on the 10,000 test images, the seconds its
training took, and images per second. Run it alone on the machine (it is a timing)."""
import json
import sys
import time

import torch

from poisonrepro import evaluation as EV
from poisonrepro import precision
from poisonrepro import train as T
from poisonrepro.papers.convex_polytope import experiments as E

torch.set_num_threads(2)
x, y = E._pretraining_set(4800)
test_x, test_y = EV.cifar10_test_set(10_000)
args = sys.argv[1:]
for arch, epochs in zip(args[::2], args[1::2]):
    torch.manual_seed(0)
    model = E.build_network(arch, 0.0).to(T.default_device())
    t0 = time.perf_counter()
    T.train_victim(model, x, y, T.VictimRecipe(epochs=float(epochs)), seed=0, desc=f"probe {arch}")
    seconds = time.perf_counter() - t0
    acc = T.victim_accuracy(model, test_x, test_y)
    print(json.dumps({"arch": arch, "epochs": float(epochs), "train images": len(y), "seconds": round(seconds, 1),
                      "images/s": round(len(y) * float(epochs) / seconds), "clean accuracy": round(acc, 4),
                      "precision": precision.in_force()}), flush=True)
