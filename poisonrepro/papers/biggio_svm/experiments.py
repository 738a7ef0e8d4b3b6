"""Notebook 05, Biggio, Nelson, Laskov (ICML 2012): the experiments (figures, tables and claims
are in ``report``).

- the 2-D example (Fig. 1): validation error and hinge loss of the SVM as functions of the
  attack point's position, with the trajectory of Algorithm 1, for a linear and an RBF kernel;
- MNIST digit pairs (Sec. 5.2): one attack point, validation and test error against the
  attack iteration, over several random splits;
- several attack points added greedily, each optimised with the earlier ones in place: test
  error against the fraction of poisoned training points.

Every experiment is a grid of trials run by ``poisonrepro.executor``, each cached under the hash
of its spec and of this module's code (``cache.code_hash``); the config fields that feed each
stage are declared in ``poisonrepro.config.biggio_svm``.
"""
from __future__ import annotations

from functools import lru_cache

import numpy as np
import torch

from ... import data as D
from ...attacks.svm_poisoning import error_rate, fit_svm, hinge_loss, poison_svm
from ...cache import ArtifactCache
from ...executor import Trial, run_trials

TOY_SCALE = 8.0  # the 2-D example's coordinates are divided by this to fit the unit box


def _gamma(cfg, kernel):
    return cfg.rbf_gamma if kernel == "rbf" else 0.0


# --------------------------------------------------------------------------- data
@lru_cache(maxsize=None)  # a worker running several trials of one pair decodes it once (three pairs)
def load_pair_pools(pair: str):
    """(train pool, test set) of one digit pair as flat [0, 1] features, labels +1 (first digit)
    and -1 (second digit), and the training source."""
    a, b = int(pair[0]), int(pair[-1])
    (Xp, yp, source), (Xt, yt, _) = (D.mnist_flat(split, digits=(a, b)) for split in ("train", "test"))
    return (Xp, np.where(yp == a, 1.0, -1.0)), (Xt, np.where(yt == a, 1.0, -1.0)), source


def make_split(pools, split: int, *, seed: int, n_train: int, n_val: int, n_test: int) -> dict:
    """Disjoint training and validation sets drawn from the training pool, and a test subset;
    the generator (seeded by ``seed`` and ``split`` alone) then picks the attack points."""
    (Xp, yp), (Xt, yt), _ = pools
    rng = np.random.default_rng(seed + 1000 * split)
    order = rng.permutation(len(yp))
    tr, va = order[:n_train], order[n_train:n_train + n_val]
    te = rng.permutation(len(yt))[:n_test]
    return {"X_tr": Xp[tr], "y_tr": yp[tr], "X_val": Xp[va], "y_val": yp[va], "X_te": Xt[te], "y_te": yt[te],
            "rng": rng}


def _initial_point(split: dict):
    """Algorithm 1's x_c^(0): a validation digit of the first class, cloned with the label flipped."""
    pool = np.flatnonzero(split["y_val"] == 1)
    return split["X_val"][split["rng"].choice(pool)], -1


def _pad(values, length):
    v = np.asarray(values, float)
    return np.concatenate([v, np.full(length - len(v), v[-1])])


# --------------------------------------------------------------------------- trials
# Each trial is a pure function of its JSON-able spec, run by ``executor.run_trials`` in any
# order, in-process or on a Dask worker; every generator is seeded from the spec (the split's
# seed), so the results do not depend on which trials ran before.
def single_point_trial(*, pair: str, kernel: str, split: int, seed: int, n_train: int, n_val: int, n_test: int,
                       C: float, gamma: float, step: float, max_iter: int, patience: int) -> dict:
    """One attack point on one (pair, kernel, split): errors and loss against the iteration,
    padded with the final value once the attack has stopped."""
    sp = make_split(load_pair_pools(pair), split, seed=seed, n_train=n_train, n_val=n_val, n_test=n_test)
    x0, y_c = _initial_point(sp)
    tr = poison_svm(sp["X_tr"], sp["y_tr"], sp["X_val"], sp["y_val"], x0, y_c, kernel=kernel, C=C, gamma=gamma,
                    step=step, max_iter=max_iter, patience=patience, X_test=sp["X_te"], y_test=sp["y_te"])
    L = max_iter + 1
    return {"val_error": _pad(tr.val_error, L), "test_error": _pad(tr.test_error, L),
            "val_loss": _pad(tr.val_loss, L), "iterations": float(len(tr.val_loss) - 1)}


def multi_point_trial(*, pair: str, kernel: str, split: int, seed: int, n_train: int, n_val: int, n_test: int,
                      C: float, gamma: float, step: float, max_iter: int, patience: int, counts: list) -> dict:
    """Attack points added one at a time on one (pair, split), each optimised with the earlier
    ones in the training set: the test error after ``counts`` points."""
    sp = make_split(load_pair_pools(pair), split, seed=seed, n_train=n_train, n_val=n_val, n_test=n_test)
    X, y = sp["X_tr"], sp["y_tr"]
    errs = [error_rate(fit_svm(X, y, kernel=kernel, C=C, gamma=gamma), sp["X_te"], sp["y_te"])]
    for _ in range(max(counts)):
        x0, y_c = _initial_point(sp)
        tr = poison_svm(X, y, sp["X_val"], sp["y_val"], x0, y_c, kernel=kernel, C=C, gamma=gamma,
                        step=step, max_iter=max_iter, patience=patience)
        X, y = np.vstack([X, tr.points[-1][None]]), np.append(y, y_c)
        errs.append(error_rate(fit_svm(X, y, kernel=kernel, C=C, gamma=gamma), sp["X_te"], sp["y_te"]))
    return {"test_error": np.asarray([errs[c] for c in counts], dtype=np.float64)}


def toy_surface_trial(*, kernel: str, seed: int, per_class: int, gamma: float, step: float, grid: int, C: float,
                      max_iter: int, patience: int) -> dict:
    """Fig. 1 for one kernel: validation error and hinge loss over a grid of attack-point
    positions, and the trajectory of Algorithm 1 (data drawn from ``seed``)."""
    rng = np.random.default_rng(seed)
    X, y = _toy_points(per_class, rng)
    Xv, yv = _toy_points(per_class, rng)
    axis = np.linspace(0, 1, grid)
    x0 = X[y == 1][np.argmin(((X[y == 1] - X[y == 1].mean(0)) ** 2).sum(1))]  # a typical +1 point, label flipped
    loss = np.zeros((grid, grid))
    err = np.zeros_like(loss)
    for i, gy in enumerate(axis):
        for j, gx in enumerate(axis):
            clf = fit_svm(np.vstack([X, [gx, gy]]), np.append(y, -1), kernel=kernel, C=C, gamma=gamma)
            loss[i, j], err[i, j] = hinge_loss(clf, Xv, yv), error_rate(clf, Xv, yv)
    tr = poison_svm(X, y, Xv, yv, x0, -1, kernel=kernel, C=C, gamma=gamma, step=step, max_iter=max_iter,
                    patience=patience)
    return {"X": X, "y": y, "grid": axis, "loss": loss, "err": err, "path": np.asarray(tr.points, dtype=np.float64)}


def _fn(name: str) -> str:
    return f"{__name__}:{name}"


def _split_spec(cfg, pair, kernel, split) -> dict:
    return {"pair": pair, "kernel": kernel, "split": split, "seed": cfg.seed, "n_train": cfg.n_train,
            "n_val": cfg.n_val, "n_test": cfg.n_test, "C": cfg.C, "gamma": _gamma(cfg, kernel), "step": cfg.step,
            "patience": cfg.patience}


def _counts(cfg) -> list[int]:
    return [int(round(f * cfg.n_train)) for f in cfg.attack_fractions]


def single_point_trials(cfg) -> list[Trial]:
    """One trial per (pair, kernel, split), in that order."""
    return [Trial("biggio_svm/single_point", _fn("single_point_trial"),
                  dict(_split_spec(cfg, pair, kernel, s), max_iter=cfg.max_iter))
            for pair in cfg.pairs for kernel in cfg.kernels for s in range(cfg.splits)]


def multi_point_trials(cfg) -> list[Trial]:
    """One trial per (pair, split) of the multi-point kernel, in that order."""
    return [Trial("biggio_svm/multi_point", _fn("multi_point_trial"),
                  dict(_split_spec(cfg, pair, cfg.multi_kernel, s), max_iter=cfg.multi_max_iter, counts=_counts(cfg)))
            for pair in cfg.pairs for s in range(cfg.multi_splits)]


def _toy_gamma(cfg, kernel) -> float:
    # gamma 0.5 in the unscaled coordinates: distances shrink by TOY_SCALE in the box
    return cfg.toy_gamma * TOY_SCALE ** 2 if kernel == "rbf" else 0.0


def toy_trials(cfg) -> list[Trial]:
    """One trial per kernel of the 2-D example."""
    return [Trial("biggio_svm/toy_surface", _fn("toy_surface_trial"),
                  {"kernel": kernel, "seed": cfg.seed, "per_class": cfg.toy_per_class, "gamma": _toy_gamma(cfg, kernel),
                   "step": cfg.toy_step, "grid": cfg.toy_grid, "C": cfg.C, "max_iter": cfg.max_iter,
                   "patience": cfg.patience})
            for kernel in cfg.kernels]


# --------------------------------------------------------------------------- experiments
def single_point(cfg, cache: ArtifactCache) -> dict:
    """One attack point per (pair, kernel, split): arrays [pair, kernel, split, iteration] of
    validation and test error and validation loss, and the iterations run."""
    out = run_trials(single_point_trials(cfg), cache, desc="single-point attacks")
    shape = (len(cfg.pairs), len(cfg.kernels), cfg.splits)
    stacked = {k: torch.stack([r[k] for r in out]).reshape(*shape, -1) for k in ("val_error", "test_error", "val_loss")}
    stacked["iterations"] = torch.stack([r["iterations"] for r in out]).reshape(shape)
    return stacked


def multi_point(cfg, cache: ArtifactCache) -> dict:
    """Attack points added one at a time (each optimised with the earlier ones in the
    training set): test error [pair, split, fraction] after each, read off at ``attack_fractions``."""
    out = run_trials(multi_point_trials(cfg), cache, desc="multi-point attacks")
    test_err = torch.stack([r["test_error"] for r in out]).reshape(len(cfg.pairs), cfg.multi_splits, -1)
    return {"test_error": test_err, "counts": torch.tensor(_counts(cfg))}


def _toy_points(per_class: int, rng):
    n = per_class
    X = np.vstack([rng.normal((-1, 0), 1, (n, 2)), rng.normal((1, 0), 1, (n, 2))])
    return np.clip(X / TOY_SCALE + 0.5, 0, 1), np.r_[np.ones(n), -np.ones(n)]  # into the unit box


def toy_data(cfg, rng):
    """Two Gaussian classes (+1 left, -1 right) scaled into the unit box."""
    return _toy_points(cfg.toy_per_class, rng)


def toy_surfaces(cfg, cache: ArtifactCache) -> dict:
    """Fig. 1: validation error and hinge loss over a grid of attack-point positions, and the
    trajectory of Algorithm 1, for each kernel (gamma from ``toy_gamma``)."""
    out = run_trials(toy_trials(cfg), cache, desc="2-D example")
    toy = {k: out[0][k] for k in ("X", "y", "grid")}  # the same data in every kernel's trial
    for kernel, r in zip(cfg.kernels, out):
        toy.update({f"{kernel}_loss": r["loss"], f"{kernel}_err": r["err"], f"{kernel}_path": r["path"]})
    return toy


# --------------------------------------------------------------------------- plan
def plan(cfg) -> list[dict]:
    """The trials each stage runs at ``cfg`` and an analytic FLOP estimate per trial (libsvm
    runs on a CPU; these count the arithmetic, not GPU work): each attack step refits the SVM,
    about n^2 kernel evaluations of d features (2 n^2 d FLOPs), and the Eq. (10) gradient,
    about (n_val + n) n d more; at most ``max_iter`` steps (patience stops most attacks sooner)."""
    d, n = 784, cfg.n_train + 1
    step = 2.0 * n * n * d + 2.0 * (cfg.n_val + n) * n * d
    rows = [
        {"stage": "biggio_svm/toy_surface", "trials": len(cfg.kernels),
         "flops_per_trial": (cfg.toy_grid ** 2 + cfg.max_iter) * 2.0 * (2 * cfg.toy_per_class + 1) ** 2 * 2,
         "basis": "analytic: grid^2 + max_iter SVM fits of 2 n^2 d FLOPs (n = 2 x toy_per_class + 1, d = 2)"},
        {"stage": "biggio_svm/single_point", "trials": len(cfg.pairs) * len(cfg.kernels) * cfg.splits,
         "flops_per_trial": cfg.max_iter * step,
         "basis": "analytic: max_iter x (SVM fit 2 n^2 d + gradient 2 (n_val + n) n d), n = n_train + 1, d = 784"},
        {"stage": "biggio_svm/multi_point", "trials": len(cfg.pairs) * cfg.multi_splits,
         "flops_per_trial": max(_counts(cfg)) * cfg.multi_max_iter * step,
         "basis": "analytic: points x multi_max_iter x (SVM fit + gradient), as single_point"},
    ]
    return rows


