"""``python -m poisonrepro.bench``: ``train.train_many`` against a Python loop of
``train.train_classifier`` on the same work (same models, data sizes, epochs, batch size).

Two cases that the compendium meets: many linear heads on frozen features (Poison Frogs'
one head per target) and a few small ConvNets (ensembles, DPA partitions).
"""
from __future__ import annotations

import argparse
import copy
import os
import time

import torch

from . import models
from . import train as T


def _time(fn) -> float:
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


def bench_case(name, make, x, y, k, epochs, batch_size, lr=1e-3):
    torch.manual_seed(0)
    nets = [make() for _ in range(k)]
    sets = [torch.arange(len(y))] * k
    t_many = _time(lambda: T.train_many(nets, x, y, sets, epochs=epochs, lr=lr, batch_size=batch_size))
    t_loop = _time(lambda: [T.train_classifier(copy.deepcopy(n), x, y, epochs=epochs, lr=lr,
                                               batch_size=batch_size) for n in nets])
    return {"case": name, "models": k, "loop_s": round(t_loop, 2), "train_many_s": round(t_many, 2),
            "speed_up": round(t_loop / t_many, 2)}


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="smaller sizes (seconds)")
    args = ap.parse_args(argv)
    os.environ["POISONREPRO_PROGRESS"] = "0"  # bars would cost time in both arms
    n, epochs = (300, 2) if args.quick else (1000, 5)
    torch.manual_seed(0)
    feats, yb = torch.randn(n, 2048), torch.randint(0, 2, (n,))
    imgs, y10 = torch.rand(n, 3, 32, 32), torch.randint(0, 10, (n,))
    rows = [bench_case("linear heads on 2048-d features, batch 32", lambda: torch.nn.Linear(2048, 2),
                       feats, yb, 50, epochs, 32, lr=0.01),
            bench_case("ConvNet-16 on 32x32 images, batch 128", lambda: models.convnet(10, width=16),
                       imgs, y10, 4, epochs, 128)]
    print(f"torch threads: {torch.get_num_threads()}; {n} examples, {epochs} epochs")
    print("| case | models | Python loop (s) | train_many (s) | speed-up |")
    print("|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['case']} | {r['models']} | {r['loop_s']} | {r['train_many_s']} | {r['speed_up']}x |")
    return rows


if __name__ == "__main__":
    main()
