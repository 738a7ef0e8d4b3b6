"""Notebook 10, Deep Partition Aggregation (Levine and Feizi, ICLR 2021): the experiments of DPA-1.

For each dataset and k: the training set is split by ``defenses.dpa.partitions`` (the sum of the
pixel values mod k, a deterministic order inside each partition), the k base classifiers are
trained in batched passes (``dpa.plan_passes``, ``dpa.train_base_classifiers``: about
``images_per_pass`` images per step, ``images_per_pass / dpa.step_width`` partitions at a time,
every pass of one width the same size), and every base classifier votes on every test image. One
trial per (dataset, k) through ``poisonrepro.executor``; it returns the votes and times itself:
the batched training, and ``loop_partitions`` partitions trained one at a time, the same
computation in a Python loop (``dpa.train_base_classifiers`` with one partition), from which the
loop's time for all k is extrapolated (its cost is a sum over partitions). Those partitions are
also trained again in passes of other companions, whose votes must match the batch's to the bit.

The planted attack (``planted_attack``) takes certified test points of one MNIST run and, for
each, inserts rho(x) copies of the test image itself labelled as the runner-up class, each made to
hash into a different partition that votes for the prediction (raising pixel values moves the
hash), retrains only those partitions and checks that the prediction stands.
"""
from __future__ import annotations

import importlib
import time
from functools import lru_cache

import numpy as np
import torch

from ... import data as D
from ... import models as M
from ... import train as T
from ...cache import stage_key
from ...config import ConfigError
from ...defenses import dpa
from ...executor import Trial, run_trials

DATASETS = ("cifar", "mnist")
NUM_CLASSES = 10


def base_network(channels: int, width: int) -> M.Classifier:
    """The base classifier: the project's ConvNet (three conv-ReLU-max-pool blocks, no batch norm)
    on 32x32 inputs of ``channels`` channels; its normalisation is set per partition."""
    net = M.convnet(NUM_CLASSES, width=width, in_channels=channels)
    net.normalize = M.Normalize([0.5] * channels, [0.25] * channels)
    return net


def base_maker(channels: int, width: int):
    """``make_model`` for ``dpa.train_base_classifiers``: a base network, its weights drawn on the
    CPU (the partition's seed), moved to ``T.default_device()``, where its partition then trains."""
    device = T.default_device()
    return lambda: base_network(channels, width).to(device)


@lru_cache(maxsize=4)
def dataset(name: str, n_train: int | None, n_test: int) -> dict:
    """uint8 NCHW training and test images (MNIST padded to 32x32, one channel) and labels: the
    first ``n_train`` training images (all when None), a random ``n_test`` test sample."""
    if name == "cifar":
        train, test = D.load_cifar10("train"), D.load_cifar10("test")
        x, tx = np.moveaxis(train.x, -1, 1), np.moveaxis(test.x, -1, 1)
    elif name == "mnist":
        train, test = D.load_mnist("train"), D.load_mnist("test")
        x, tx = (np.pad(a, ((0, 0), (2, 2), (2, 2)))[:, None] for a in (train.x, test.x))
    else:
        raise ValueError(f"unknown dataset {name!r}; allowed: {', '.join(DATASETS)}")
    n = len(x) if n_train is None else n_train
    if n > len(x):
        raise ValueError(f"{name}: {n} training images asked for, {len(x)} available ({train.source})")
    j = np.sort(np.random.default_rng(0).choice(len(tx), n_test, replace=False))
    return {"x": np.ascontiguousarray(x[:n]), "y": train.y[:n], "test_x": np.ascontiguousarray(tx[j]),
            "test_y": test.y[j], "test_index": j, "source": train.source}


def recipe(epochs: int, batch_size: int, lr: float, dataset_name: str) -> dpa.BaseRecipe:
    """The code's SGD recipe over ``epochs``; random crop (4 pixels) and flip on CIFAR-10 only."""
    cifar = dataset_name == "cifar"
    return dpa.BaseRecipe(epochs=epochs, batch_size=batch_size, lr=lr, crop_pad=4 if cifar else 0, flip=cifar)


def train_and_vote(x, y, parts, test_x, make, r: dpa.BaseRecipe, images_per_pass: int, seed: int, ids=None,
                   desc: str = "DPA", passes=None) -> torch.Tensor:
    """The votes [len(ids), n_test] of the base classifiers of ``ids`` (default: all), trained in
    the batched passes of ``dpa.plan_passes`` (``passes``: others of the same shapes, to check
    that a partition's vote does not depend on its pass), so that each base classifier is the
    same whichever other partitions are trained (all of them, or the few an attack touched)."""
    ids = list(range(len(parts))) if ids is None else [int(i) for i in ids]
    passes = dpa.plan_passes(parts, ids, r.batch_size, images_per_pass) if passes is None else passes
    votes = {}
    bar = dpa.T.progress(total=len(ids), desc=desc, leave=False)
    for chunk in passes:
        stack = dpa.train_base_classifiers(make, x, y, parts, r, seed=seed, ids=chunk, desc=f"{desc}, pass")
        pred = dpa.predict_base_classifiers(stack, test_x).to(torch.int8)
        for j, i in enumerate(chunk):
            if i is not None:
                votes[i] = pred[j]
        bar.update(sum(i is not None for i in chunk))
    bar.close()
    return torch.stack([votes[i] for i in ids])


def shuffled_passes(parts, ids, batch_size: int, images_per_pass: int) -> list[list]:
    """Passes of the same shapes as ``dpa.plan_passes`` gives, but with other companions and at
    other places: each of ``ids`` after a placeholder, the others in reverse order (the check
    that a partition's network does not depend on the pass it is trained in)."""
    passes = []
    for chunk in dpa.plan_passes(parts, ids, batch_size, images_per_pass):
        members = [i for i in chunk if i is not None][::-1]
        if len(chunk) > len(members):  # room for a placeholder in front: every member moves
            members = [None] + members
        passes.append(members + [None] * (len(chunk) - len(members)))
    return passes


def dpa_trial(*, dataset_name: str, k: int, n_train: int | None, n_test: int, epochs: int, width: int, batch_size: int,
              lr: float, images_per_pass: int, loop_partitions: int, seed: int) -> dict:
    """DPA with k partitions: ``votes`` [k, n_test] (each base classifier's class), ``test_y``,
    ``partition_sizes`` [k], ``batched_s`` (the batched training and voting), and for
    ``loop_partitions`` of the partitions (none when 0): ``loop_s_per_partition`` (each trained
    alone, one network at a time: the loop whose time is extrapolated to all k; NaN when 0),
    ``loop_agreement`` (the share of their votes that match the batch's: 1 unless a dense
    convolution rounds differently from a grouped one, and training amplifies it) and
    ``rebatched_agreement`` (the same partitions trained again in passes of other companions and
    places: 1, to the bit, as Theorem 1 needs each base classifier to depend on its partition
    alone)."""
    d = dataset(dataset_name, n_train, n_test)
    dpa.check_k(k, len(d["y"]))
    parts = dpa.partitions(d["x"], d["y"], k)
    make = base_maker(d["x"].shape[1], width)
    r = recipe(epochs, batch_size, lr, dataset_name)
    t0 = time.perf_counter()
    votes = train_and_vote(d["x"], d["y"], parts, d["test_x"], make, r, images_per_pass, seed, desc=f"DPA k={k}")
    batched = time.perf_counter() - t0
    looped = ([int(i) for i in np.unique(np.linspace(0, k - 1, loop_partitions).round().astype(int))]
              if loop_partitions else [])
    loop, agree = [], []
    for i in looped:
        t0 = time.perf_counter()
        alone = dpa.train_base_classifiers(make, d["x"], d["y"], parts, r, seed=seed, ids=[i], desc="one partition")
        vote = dpa.predict_base_classifiers(alone, d["test_x"])[0]
        loop.append(time.perf_counter() - t0)
        agree.append(float((vote == votes[i].long()).float().mean()))
    nan = torch.tensor(float("nan"))
    rebatched = nan
    if looped:
        again = train_and_vote(d["x"], d["y"], parts, d["test_x"], make, r, images_per_pass, seed, ids=looped,
                               desc="re-batched", passes=shuffled_passes(parts, looped, batch_size, images_per_pass))
        rebatched = (again == votes[looped]).float().mean()
    return {"votes": votes, "test_y": torch.as_tensor(d["test_y"]), "partition_sizes": torch.tensor([len(p) for p in parts]),
            "batched_s": torch.tensor(batched), "loop_s_per_partition": torch.tensor(np.mean(loop)) if loop else nan,
            "loop_agreement": torch.tensor(np.mean(agree)) if agree else nan, "rebatched_agreement": rebatched}


# --------------------------------------------------------------------------- trials
def _spec(cfg, name: str, k: int) -> dict:
    cifar = name == "cifar"
    return {"dataset_name": name, "k": int(k), "n_train": cfg.cifar_train if cifar else (cfg.mnist_train or None),
            "n_test": cfg.cifar_test if cifar else cfg.mnist_test, "epochs": cfg.cifar_epochs if cifar else cfg.mnist_epochs,
            "width": cfg.cifar_width if cifar else cfg.mnist_width, "batch_size": cfg.batch_size, "lr": cfg.lr,
            "images_per_pass": cfg.images_per_pass, "loop_partitions": cfg.loop_partitions, "seed": cfg.seed}


def trials(cfg) -> list[Trial]:
    fn = f"{__name__}:dpa_trial"
    return ([Trial("cifar", fn, _spec(cfg, "cifar", k)) for k in cfg.cifar_ks] +
            [Trial("mnist", fn, _spec(cfg, "mnist", k)) for k in cfg.mnist_ks])


def check_sizes(cfg) -> None:
    """k against each training set, before any training. MNIST's size is known only once it is
    found (torchvision's 60,000 digits, or the offline mirror's 5,000), so the config's check of
    ``mnist_train`` and ``mnist_ks`` (at most 60,000) is completed here, naming the key."""
    train = D.load_mnist("train")
    found = len(train.y)
    if cfg.mnist_train > found:
        raise ConfigError(f"mnist_train={cfg.mnist_train}: the MNIST training set found has {found} digits "
                          f"({train.source}); allowed: [0, {found}] (0: all of them)")
    n = cfg.mnist_train or found
    for k in cfg.mnist_ks:
        if k > n:
            raise ConfigError(f"mnist_ks: k={k} is larger than the MNIST training set ({n} digits, {train.source}): "
                              f"k partitions need at least k samples, so k must lie in [1, {n}]")
    for k in cfg.cifar_ks:
        dpa.check_k(k, cfg.cifar_train)


def run(cfg, cache) -> dict:
    """{dataset: {k: trial result}}, trained (or loaded from the cache)."""
    check_sizes(cfg)
    ts = trials(cfg)
    out = {name: {} for name in DATASETS}
    for t, r in zip(ts, run_trials(ts, cache, desc="DPA: base classifiers per (dataset, k)")):
        out[t.spec["dataset_name"]][t.spec["k"]] = r
    return out


# --------------------------------------------------------------------------- the planted attack
def hash_into(image: np.ndarray, partition: int, k: int) -> np.ndarray:
    """A copy of ``image`` (uint8) whose pixel sum is ``partition`` mod k: the smallest amount
    raised, pixel after pixel, each at most to 255."""
    img = image.copy()
    flat = img.reshape(-1)
    need = (partition - int(flat.astype(np.int64).sum())) % k
    for p in range(flat.size):
        if not need:
            break
        add = min(need, 255 - int(flat[p]))
        flat[p] += add
        need -= add
    if need:
        raise ValueError(f"cannot move the image into partition {partition}: no room left below 255")
    return img


def planted_attack(cfg, results: dict) -> list[dict]:
    """For up to ``planted_points`` test points certified with rho >= 1 at MNIST's ``planted_k``:
    insert rho copies of the test image labelled as the runner-up class, each raised in a few pixel
    values so that it hashes into a different partition voting for the prediction (the votes worth turning),
    retrain exactly those partitions and recount the votes. Each row: the point, rho, whether the
    prediction stands, and how many of the attacked partitions changed their vote. The inserted
    sample is the test image itself labelled as the runner-up class."""
    k, spec = cfg.planted_k, _spec(cfg, "mnist", cfg.planted_k)
    d = dataset("mnist", spec["n_train"], cfg.mnist_test)
    r = results["mnist"][k]
    counts = dpa.vote_counts(r["votes"].long(), NUM_CLASSES)
    pred, rho = dpa.aggregate(counts)
    correct = pred == r["test_y"]
    points = [int(i) for i in torch.nonzero(correct & (rho >= 1)).flatten()[:cfg.planted_points]]
    make = base_maker(1, spec["width"])
    rec = recipe(spec["epochs"], spec["batch_size"], spec["lr"], "mnist")
    rows = []
    for i in points:
        rest = counts[i].clone()
        rest[pred[i]] = -1
        runner = int(rest.argmax())
        voters = [int(j) for j in torch.nonzero(r["votes"][:, i].long() == pred[i]).flatten()][:int(rho[i])]
        # the test image itself, labelled as the runner-up: the sample most likely to turn a vote
        inserted = [hash_into(d["test_x"][i], j, k) for j in voters]
        x = np.concatenate([d["x"], np.stack(inserted)])
        y = np.concatenate([d["y"], np.full(len(inserted), runner)])
        parts = dpa.partitions(x, y, k)
        new = train_and_vote(x, y, parts, d["test_x"][i:i + 1], make, rec, cfg.images_per_pass, spec["seed"], ids=voters,
                             desc="retrain attacked partitions")
        votes = r["votes"][:, i].long().clone()
        votes[voters] = new[:, 0].long()
        after, _ = dpa.aggregate(dpa.vote_counts(votes[:, None], NUM_CLASSES))
        rows.append({"test_point": i, "rho": int(rho[i]), "inserted": len(inserted), "runner_up": runner,
                     "votes_flipped": int((new[:, 0].long() != pred[i]).sum()), "prediction_stands": bool(after[0] == pred[i])})
    return rows


def planted(cfg, results: dict, cache) -> list[dict]:
    """``planted_attack``, cached (a JSON of its rows)."""
    key = stage_key(cfg, "planted", __name__)
    return cache.json("planted", key, lambda: {"rows": planted_attack(cfg, results)})["rows"]


# --------------------------------------------------------------------------- plan
def plan(cfg) -> list[dict]:
    """The stages at ``cfg`` for ``make plan``; runs nothing."""
    P = importlib.import_module("poisonrepro.plan")
    rows = []
    for name, ks, n, epochs, width, tests in (("cifar", cfg.cifar_ks, cfg.cifar_train, cfg.cifar_epochs, cfg.cifar_width,
                                               cfg.cifar_test),
                                              ("mnist", cfg.mnist_ks, cfg.mnist_train or 5000, cfg.mnist_epochs, cfg.mnist_width, cfg.mnist_test)):
        net = base_network(3 if name == "cifar" else 1, width)
        shape = (3 if name == "cifar" else 1, 32, 32)
        for k in ks:
            train = P.model_train_flops(net, shape, n * epochs)
            vote = P.model_train_flops(net, shape, k * tests) / 3  # a forward pass is about a third of a step
            rows.append({"stage": f"DPA {name} k={k}", "trials": 1, "flops_per_trial": float(train + vote),
                         "basis": f"{n} images x {epochs} epochs over {k} partitions; {k} x {tests} test votes"})
    return rows
