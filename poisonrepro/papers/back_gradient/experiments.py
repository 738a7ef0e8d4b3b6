"""Notebook 06, back-gradient poisoning (Munoz-Gonzalez et al., AISec 2017), label flipping and
its defences, as the lecture deck "Adversarial Machine Learning" (Luis Munoz-Gonzalez, Imperial College
London, 20 December 2018) presents them: the experiments (figures, tables and claims are in ``report``).

- MG-1, MG-2: 2-D illustrations (types of poisoning; the trajectory of one poison);
- MG-3: indiscriminate attacks on ADALINE, logistic regression and a small MLP over Spambase,
  MNIST 1 vs 7 and a labeled stand-in for Ransomware (binary features, binary poisons; continuous
  poisons as a labeled variant); MG-5: transferability between learners;
- MG-4: multiclass MNIST logistic regression, error-generic and error-specific (8 as 3);
- MG-6, MG-10: outlier-detection pre-filtering against the unconstrained attack and against
  attacks constrained to stay within the attacker's own estimate of the detector's acceptance
  region (fitted on the attacker's validation data, not the defender's trusted set);
- MG-7, MG-8: optimal, informed and random label flipping on Spambase with outlier detection,
  the noise-robust loss and k-NN label sanitisation (sensitivity to k);
- LF-1: random labels, label flipping, partial label flipping (the lecture deck "Data Poisoning: Attacks
  and Defenses", Xingjun Ma, Fudan University).

Devices: the back-gradient learners (float64) run on ``T.default_device()``, their data moved there
(``_on_device``); splits, detectors, k-NN and scikit-learn stay in numpy on the CPU, and results come
back to the CPU. Informed label flipping runs on the CPU (``label_flipping`` returns numpy from its
tensors).
"""
from __future__ import annotations

import importlib

import numpy as np
import torch
from torch.func import vmap

from ... import data as D
from ... import train as T
from ...attacks.back_gradient import (LEARNERS, Learner, PoisonRun, as_tensor, craft_poisons, train_gd,
                                      validation_objective)
from ...attacks.label_flipping import informed_label_flips, poison_labels, random_label_flips
from ...cache import ArtifactCache, stage_key
from ...defenses.knn_sanitization import knn_relabel
from ...defenses.noisy_labels import noise_robust
from ...defenses.outlier_detection import fit_outlier_detector
from ...train import progress

DATASET_LABELS = {"spambase": "Spambase", "mnist_1v7": "MNIST 1 vs 7", "ransomware_standin": "Ransomware (stand-in)",
                  "ransomware_standin_continuous": "Ransomware (stand-in), continuous poisons (variant)"}
BINARY = ("ransomware_standin",)  # binary features: poisons crafted by bit flips, so that they stay binary


def _key(cfg, stage, **extra) -> str:
    """The stage's key: the fields that feed it (``poisonrepro.config.back_gradient``) and this code."""
    return stage_key(cfg, stage, __name__, **extra)


def settings(cfg, learner: str) -> dict:
    """The per-learner settings of the config (tuples ordered as ``LEARNERS``)."""
    i = LEARNERS.index(learner)
    return {k: getattr(cfg, k)[i] for k in ("attack_iters", "attack_step", "train_steps", "train_lr",
                                            "inner_steps", "inner_lr")}


def make_learner(cfg, kind: str, n_features: int, n_classes: int = 2) -> Learner:
    return Learner(kind, n_features, n_classes=n_classes, hidden=cfg.mlp_hidden, weight_decay=cfg.weight_decay)


# --------------------------------------------------------------------------- data
def load_pool(cfg, name: str) -> dict:
    """A dataset as features in [0, 1] and 0/1 labels: ``X, y`` (the pool splits are drawn
    from), optionally a separate ``X_test, y_test``, and its ``source``."""
    if name == "spambase":
        ds = D.load_spambase()
        z = np.log1p(ds.x.astype(np.float64))  # heavy-tailed counts: log scale, then [0, 1]
        return {"X": z / np.maximum(z.max(0), 1e-12), "y": ds.y, "source": ds.source}
    if name == "mnist_1v7":
        (X, y, source), (Xt, yt, test_source) = (D.mnist_flat(split, digits=(1, 7)) for split in ("train", "test"))
        return {"X": X, "y": (y == 7).astype(np.int64), "X_test": Xt, "y_test": (yt == 7).astype(np.int64),
                "source": f"{source}; test: {test_source}"}
    if name.startswith("ransomware_standin"):
        ds = D.binary_feature_standin(cfg.ransomware_features, cfg.seed)
        note = "" if name in BINARY else "; continuous poisons in [0, 1] (variant)"
        return {"X": ds.x.astype(np.float64), "y": ds.y, "source": ds.source + note}
    raise ValueError(f"unknown dataset {name!r}; allowed: {', '.join(DATASET_LABELS)}")


def check_inputs(cfg) -> dict:
    """Load (and so check) every dataset the config names, before any compute: a missing
    file says how to get it; a Spambase file of the wrong shape is refused."""
    return {name: load_pool(cfg, name) for name in cfg.datasets}


def make_split(cfg, pool: dict, split: int) -> dict:
    """Disjoint training, validation (the attacker's), trusted (the defender's curated points,
    ``trusted_per_class`` per class) and test sets."""
    rng = np.random.default_rng(cfg.seed + 1000 * split)
    X, y = pool["X"], pool["y"]
    order = rng.permutation(len(y))
    tr, va = order[:cfg.n_train], order[cfg.n_train:cfg.n_train + cfg.n_val]
    rest = order[cfg.n_train + cfg.n_val:]
    trusted = np.concatenate([rest[y[rest] == k][:cfg.trusted_per_class] for k in (0, 1)])
    rest = np.setdiff1d(rest, trusted)
    if "X_test" in pool:
        te = rng.permutation(len(pool["y_test"]))[:cfg.n_test]
        X_te, y_te = pool["X_test"][te], pool["y_test"][te]
    else:
        te = rng.permutation(rest)[:cfg.n_test]
        X_te, y_te = X[te], y[te]
    return {"X_tr": X[tr], "y_tr": y[tr], "X_val": X[va], "y_val": y[va], "X_trusted": X[trusted],
            "y_trusted": y[trusted], "X_te": X_te, "y_te": y_te, "rng": rng}


def initial_poisons(sp: dict, count: int):
    """The paper's initialisation: random validation points with their labels flipped."""
    idx = sp["rng"].choice(len(sp["y_val"]), size=count, replace=False)
    return sp["X_val"][idx], 1 - sp["y_val"][idx]


def _on_device(a) -> torch.Tensor:
    """``a`` as the learners' float64 tensor (``as_tensor``, as the attack converts it) on
    ``T.default_device()``, where the learners then run."""
    return as_tensor(a).to(T.default_device())


def _objective(learner: Learner, X_val, y_val, target_labels=None):
    """``validation_objective`` with the validation data on the device."""
    return validation_objective(learner, _on_device(X_val), None if y_val is None else _on_device(y_val),
                                None if target_labels is None else _on_device(target_labels))


def _fit(learner: Learner, X, y, s: dict) -> torch.Tensor:
    """The learner's weights trained from its initialisation on (X, y), on the device."""
    return train_gd(learner, _on_device(X), _on_device(y), steps=s["train_steps"], lr=s["train_lr"])


def _on_cpu(run: PoisonRun) -> PoisonRun:
    return PoisonRun(run.X_p.cpu(), run.y_p.cpu(), run.objective, [p.cpu() for p in run.paths])


def victim_error(learner: Learner, s: dict, X, y, X_te, y_te) -> float:
    """Test error of the learner trained from its initialisation on (X, y)."""
    w = _fit(learner, X, y, s)
    return learner.error(w, _on_device(X_te), torch.as_tensor(y_te).to(w.device))


def _attack(learner, s, sp, objective, X0, y0, per_round, bar, project=None, binary_flips=0):
    """``craft_poisons`` on the split's training set with the learner's settings ``s``, on the
    device (``objective`` built by ``_objective``); the poisons come back to the CPU."""
    return _on_cpu(craft_poisons(learner, _on_device(sp["X_tr"]), _on_device(sp["y_tr"]), objective, _on_device(X0),
                                 _on_device(y0), per_round=per_round, project=project, bar=bar,
                                 binary_flips=binary_flips, **s))


def flips(cfg, name: str) -> int:
    """Bits flipped per attack iteration: ``binary_flips`` on binary data, 0 (continuous) otherwise."""
    return cfg.binary_flips if name in BINARY else 0


def _poisoned(sp, X_p, y_p, count):
    return np.vstack([sp["X_tr"], X_p[:count]]), np.concatenate([sp["y_tr"], y_p[:count]])


# --------------------------------------------------------------------------- MG-3 (and the poisons of MG-5..7)
def indiscriminate(cfg, cache: ArtifactCache, pools: dict) -> dict:
    """For every dataset, learner and split: ``max(counts)`` poisons crafted greedily by
    back-gradient ascent on the validation loss; test error after each count."""
    key = _key(cfg, "bg_indiscriminate")
    counts = cfg.counts()

    def run():
        err = np.zeros((len(cfg.datasets), len(cfg.learners), cfg.splits, len(counts)))
        out = {}
        total = sum(settings(cfg, l)["attack_iters"] for l in cfg.learners) * len(cfg.datasets) * cfg.splits \
            * (max(counts) // cfg.per_round)
        bar = progress(total=total, desc="MG-3 back-gradient attacks")
        for di, name in enumerate(cfg.datasets):
            pool = pools[name]
            for li, kind in enumerate(cfg.learners):
                s = settings(cfg, kind)
                for sp_i in range(cfg.splits):
                    sp = make_split(cfg, pool, sp_i)
                    learner = make_learner(cfg, kind, sp["X_tr"].shape[1])
                    X0, y0 = initial_poisons(sp, max(counts))
                    objective = _objective(learner, sp["X_val"], sp["y_val"])
                    runp = _attack(learner, s, sp, objective, X0, y0, cfg.per_round, bar,
                                   binary_flips=flips(cfg, name))
                    X_p, y_p = runp.X_p.numpy(), runp.y_p.numpy()
                    err[di, li, sp_i] = [victim_error(learner, s, *_poisoned(sp, X_p, y_p, c), sp["X_te"], sp["y_te"])
                                         for c in counts]
                    out[f"poisons/{name}/{kind}/{sp_i}"] = torch.from_numpy(X_p)
                    out[f"labels/{name}/{kind}/{sp_i}"] = torch.from_numpy(y_p)
        bar.close()
        out.update(test_error=torch.from_numpy(err), counts=torch.tensor(counts))
        return out
    return cache.tensors("bg_indiscriminate", key, run)


def transferability(cfg, cache: ArtifactCache, pools: dict, ind: dict) -> dict:
    """MG-5: the poisons crafted against each source learner (most poisons) added to the
    training set of every victim learner; clean and poisoned test error, mean over splits."""
    key = _key(cfg, "bg_transfer")

    def run():
        name, L = cfg.transfer_dataset, len(cfg.learners)
        clean, poisoned = np.zeros((L, cfg.splits)), np.zeros((L, L, cfg.splits))
        for sp_i in range(cfg.splits):
            sp = make_split(cfg, pools[name], sp_i)
            for vi, victim in enumerate(cfg.learners):
                learner, s = make_learner(cfg, victim, sp["X_tr"].shape[1]), settings(cfg, victim)
                clean[vi, sp_i] = victim_error(learner, s, sp["X_tr"], sp["y_tr"], sp["X_te"], sp["y_te"])
                for si, source in enumerate(cfg.learners):
                    X_p = ind[f"poisons/{name}/{source}/{sp_i}"].numpy()
                    y_p = ind[f"labels/{name}/{source}/{sp_i}"].numpy()
                    poisoned[si, vi, sp_i] = victim_error(learner, s, *_poisoned(sp, X_p, y_p, len(y_p)),
                                                          sp["X_te"], sp["y_te"])
        return {"clean": torch.from_numpy(clean), "poisoned": torch.from_numpy(poisoned)}
    return cache.tensors("bg_transfer", key, run)


# --------------------------------------------------------------------------- MG-6, MG-10
def _filtered_error(learner, s, det, X, y, sp):
    keep = det.keep(X, y)
    return victim_error(learner, s, X[keep], y[keep], sp["X_te"], sp["y_te"])


def attacker_detector(cfg, sp: dict):
    """The attacker's estimate of the defender's detector: the same design, fitted on the
    attacker's own (validation) data; it never sees the defender's trusted set."""
    return fit_outlier_detector(sp["X_val"], sp["y_val"], quantile=cfg.od_quantile)


def outlier_defence(cfg, cache: ArtifactCache, pools: dict, ind: dict) -> dict:
    """Logistic regression on each defence dataset: the unconstrained poisons of MG-3 and
    poisons crafted under the detectability constraint (each radius), with and without the
    outlier detector; ``error[dataset, variant, split, count, defence]`` with variants
    (radii..., unconstrained) and defences (none, outlier detection), and the share of
    poisons the defender's detector flags.

    The constrained attacker does not see the defender's trusted set: it fits a detector of the
    same design (centroids, ``od_quantile`` threshold) on its own validation data and keeps its
    poisons within ``radius`` of *that* detector's thresholds, so whether the defender flags
    them is measured, not given by construction."""
    key = _key(cfg, "bg_outlier")
    counts = cfg.counts()

    def run():
        R = len(cfg.constraint_radii)
        shape = (len(cfg.defence_datasets), R + 1, cfg.splits, len(counts))
        err, flagged = np.zeros(shape + (2,)), np.zeros(shape)
        s = settings(cfg, "logistic")
        bar = progress(total=len(cfg.defence_datasets) * cfg.splits * R * s["attack_iters"]
                       * (max(counts) // cfg.per_round), desc="MG-10 constrained attacks")
        for di, name in enumerate(cfg.defence_datasets):
            for sp_i in range(cfg.splits):
                sp = make_split(cfg, pools[name], sp_i)
                learner = make_learner(cfg, "logistic", sp["X_tr"].shape[1])
                det = fit_outlier_detector(sp["X_trusted"], sp["y_trusted"], quantile=cfg.od_quantile)
                guess = attacker_detector(cfg, sp)
                proj = guess.project_binary if name in BINARY else guess.project
                X0, y0 = initial_poisons(sp, max(counts))
                objective = _objective(learner, sp["X_val"], sp["y_val"])
                variants = []
                for r in cfg.constraint_radii:
                    runp = _attack(learner, s, sp, objective, X0, y0, cfg.per_round, bar,
                                   project=lambda x, y, r=r: proj(x, y, r), binary_flips=flips(cfg, name))
                    variants.append((runp.X_p.numpy(), runp.y_p.numpy()))
                variants.append((ind[f"poisons/{name}/logistic/{sp_i}"].numpy(),
                                 ind[f"labels/{name}/logistic/{sp_i}"].numpy()))
                for vi, (X_p, y_p) in enumerate(variants):
                    for ci, c in enumerate(counts):
                        X, y = _poisoned(sp, X_p, y_p, c)
                        err[di, vi, sp_i, ci, 0] = victim_error(learner, s, X, y, sp["X_te"], sp["y_te"])
                        err[di, vi, sp_i, ci, 1] = _filtered_error(learner, s, det, X, y, sp)
                        flagged[di, vi, sp_i, ci] = 1 - det.keep(X_p[:c], y_p[:c]).mean() if c else np.nan
        bar.close()
        return {"error": torch.from_numpy(err), "flagged": torch.from_numpy(flagged)}
    return cache.tensors("bg_outlier", key, run)


# --------------------------------------------------------------------------- MG-7, MG-8
FLIP_ATTACKS = ("optimal", "informed label flipping", "random label flipping")


def flip_defences(cfg) -> list[str]:
    return ["no defence", "outlier detection", "noise-robust loss"] + [f"k-NN k={k}" for k in cfg.knn_ks]


def label_flipping(cfg, cache: ArtifactCache, pools: dict, ind: dict) -> dict:
    """On ``flip_dataset`` with logistic regression: the optimal attack (MG-3's poisons), ILF
    and RLF at the same budgets; test error under each defence: ``error[attack, split, count,
    defence]`` with defences as ``flip_defences(cfg)``."""
    key = _key(cfg, "bg_flipping")
    counts = cfg.counts()
    defences = flip_defences(cfg)

    def run():
        err = np.zeros((len(FLIP_ATTACKS), cfg.splits, len(counts), len(defences)))
        s = settings(cfg, "logistic")
        name = cfg.flip_dataset
        bar = progress(total=cfg.splits * len(FLIP_ATTACKS), desc="MG-7/8 label flipping")
        for sp_i in range(cfg.splits):
            sp = make_split(cfg, pools[name], sp_i)
            learner = make_learner(cfg, "logistic", sp["X_tr"].shape[1])
            det = fit_outlier_detector(sp["X_trusted"], sp["y_trusted"], quantile=cfg.od_quantile)
            # informed flipping's alone, on the CPU: label_flipping (shared with 09) returns numpy
            objective = validation_objective(learner, sp["X_val"], sp["y_val"])
            cand = sp["rng"].choice(len(sp["y_val"]), size=cfg.ilf_candidates, replace=False)
            attacks = [(ind[f"poisons/{name}/logistic/{sp_i}"].numpy(), ind[f"labels/{name}/logistic/{sp_i}"].numpy()),
                       informed_label_flips(learner, sp["X_tr"], sp["y_tr"], sp["X_val"][cand], sp["y_val"][cand],
                                            max(counts), objective, steps=s["train_steps"], lr=s["train_lr"],
                                            warm_steps=cfg.ilf_warm_steps),
                       random_label_flips(sp["X_val"], sp["y_val"], max(counts), sp["rng"])]
            for ai, (X_p, y_p) in enumerate(attacks):
                for ci, c in enumerate(counts):
                    X, y = _poisoned(sp, X_p, y_p, c)
                    row = [victim_error(learner, s, X, y, sp["X_te"], sp["y_te"]),
                           _filtered_error(learner, s, det, X, y, sp),
                           victim_error(noise_robust(learner, c / len(y)), s, X, y, sp["X_te"], sp["y_te"])]
                    row += [victim_error(learner, s, X, knn_relabel(X, y, k=k, confidence=cfg.knn_confidence),
                                         sp["X_te"], sp["y_te"]) for k in cfg.knn_ks]
                    err[ai, sp_i, ci] = row
                bar.update(1)
        bar.close()
        return {"error": torch.from_numpy(err)}
    return cache.tensors("bg_flipping", key, run)


# --------------------------------------------------------------------------- MG-4
def multiclass(cfg, cache: ArtifactCache) -> dict:
    """Multiclass MNIST logistic regression (softmax), error-generic and error-specific
    (``mc_source`` classified as ``mc_target``): test error and the source->target rate after
    each count of poisons; ``error[objective, split, count]``, ``rate[objective, split, count]``."""
    key = _key(cfg, "bg_multiclass")
    counts = cfg.counts(cfg.mc_fractions, cfg.mc_n_train)

    def run():
        (Xp, yp, _), (Xt, yt, _) = D.mnist_flat("train"), D.mnist_flat("test")
        s = dict(settings(cfg, "logistic"), attack_iters=cfg.mc_attack_iters)
        err = np.zeros((2, cfg.mc_splits, len(counts)))
        rate = np.zeros_like(err)
        bar = progress(total=2 * cfg.mc_splits * cfg.mc_attack_iters * (max(counts) // cfg.mc_per_round),
                       desc="MG-4 multiclass attacks")
        for sp_i in range(cfg.mc_splits):
            rng = np.random.default_rng(cfg.seed + 1000 * sp_i)
            order = rng.permutation(len(yp))
            tr, va = order[:cfg.mc_n_train], order[cfg.mc_n_train:cfg.mc_n_train + cfg.mc_n_val]
            te = rng.permutation(len(yt))[:cfg.mc_n_test]
            sp = {"X_tr": Xp[tr], "y_tr": yp[tr]}
            learner = make_learner(cfg, "softmax", Xp.shape[1], n_classes=10)
            src_te = yt[te] == cfg.mc_source
            for oi, specific in enumerate((False, True)):
                y_val = yp[va]
                if specific:
                    pool = va[yp[va] == cfg.mc_source]
                    idx = rng.choice(pool, size=max(counts), replace=len(pool) < max(counts))
                    X0, y0 = Xp[idx], np.full(max(counts), cfg.mc_target)
                    objective = _objective(learner, Xp[va], None,
                                           np.where(y_val == cfg.mc_source, cfg.mc_target, y_val))
                else:
                    idx = rng.choice(va, size=max(counts), replace=False)
                    X0, y0 = Xp[idx], (yp[idx] + rng.integers(1, 10, size=max(counts))) % 10  # a wrong label
                    objective = _objective(learner, Xp[va], y_val)
                runp = _attack(learner, s, sp, objective, X0, y0, cfg.mc_per_round, bar)
                X_p, y_p = runp.X_p.numpy(), runp.y_p.numpy()
                for ci, c in enumerate(counts):
                    w = _fit(learner, *_poisoned(sp, X_p, y_p, c), s)
                    pred = learner.predict(w, _on_device(Xt[te])).cpu().numpy()
                    err[oi, sp_i, ci] = (pred != yt[te]).mean()
                    rate[oi, sp_i, ci] = (pred[src_te] == cfg.mc_target).mean()
        bar.close()
        return {"error": torch.from_numpy(err), "rate": torch.from_numpy(rate), "counts": torch.tensor(counts)}
    return cache.tensors("bg_multiclass", key, run)


# --------------------------------------------------------------------------- LF-1
LF_VARIANTS = ("random", "flip", "partial")


def label_noise(cfg, cache: ArtifactCache) -> dict:
    """LF-1: 10-class MNIST logistic regression (scikit-learn) trained on labels poisoned by
    each variant; test accuracy and the source class's accuracy, ``[variant, split, fraction]``."""
    from sklearn.linear_model import LogisticRegression
    key = _key(cfg, "bg_label_noise")

    def run():
        (Xp, yp, _), (Xt, yt, _) = D.mnist_flat("train"), D.mnist_flat("test")
        acc = np.zeros((len(LF_VARIANTS), cfg.splits, len(cfg.lf_fractions)))
        src = np.zeros_like(acc)
        bar = progress(total=acc.size, desc="LF-1 label poisoning")
        for sp_i in range(cfg.splits):
            rng = np.random.default_rng(cfg.seed + 1000 * sp_i)
            tr = rng.permutation(len(yp))[:cfg.lf_n_train]
            te = rng.permutation(len(yt))[:cfg.n_test]
            for vi, variant in enumerate(LF_VARIANTS):
                for fi, f in enumerate(cfg.lf_fractions):
                    y = poison_labels(yp[tr], f, variant, 10, rng, source=cfg.lf_source, target=cfg.lf_target)
                    clf = LogisticRegression(max_iter=200, C=1.0).fit(Xp[tr], y)
                    pred = clf.predict(Xt[te])
                    acc[vi, sp_i, fi] = (pred == yt[te]).mean()
                    src[vi, sp_i, fi] = (pred[yt[te] == cfg.lf_source] == cfg.lf_source).mean()
                    bar.update(1)
        bar.close()
        return {"accuracy": torch.from_numpy(acc), "source_accuracy": torch.from_numpy(src)}
    return cache.tensors("bg_label_noise", key, run)


# --------------------------------------------------------------------------- MG-1, MG-2
TOY_CENTERS = np.array([[0.3, 0.3], [0.7, 0.3], [0.5, 0.72]])


def _blobs(rng, n, centers):
    X = np.vstack([rng.normal(c, 0.08, (n, 2)) for c in centers])
    return np.clip(X, 0, 1), np.repeat(np.arange(len(centers)), n)


def toy(cfg, cache: ArtifactCache) -> dict:
    """MG-1: three classes, clean / error-generic / error-specific (class 2 pushed to class 0)
    poisons; MG-2: two classes, one poison's back-gradient trajectory over the validation loss
    it causes at each position (every position's learner trained at once with vmap)."""
    key = _key(cfg, "bg_toy")

    def run():
        rng = np.random.default_rng(cfg.seed)
        s = settings(cfg, "logistic")
        grid = np.linspace(0, 1, cfg.toy_grid)
        G = np.stack(np.meshgrid(grid, grid), -1).reshape(-1, 2)
        out = {"grid": grid}
        # MG-1
        X, y = _blobs(rng, cfg.toy_per_class, TOY_CENTERS)
        Xv, yv = _blobs(rng, cfg.toy_per_class, TOY_CENTERS)
        learner = make_learner(cfg, "softmax", 2, n_classes=3)
        sp = {"X_tr": X, "y_tr": y}
        for name, target in (("clean", None), ("generic", None), ("specific", np.where(yv == 2, 0, yv))):
            if name == "clean":
                X_p, y_p = X[:0], y[:0]
            else:
                if target is None:
                    idx = rng.choice(len(yv), cfg.toy_poisons, replace=False)
                    X0, y0 = Xv[idx], (yv[idx] + rng.integers(1, 3, cfg.toy_poisons)) % 3
                else:
                    X0, y0 = Xv[rng.choice(np.flatnonzero(yv == 2), cfg.toy_poisons)], np.zeros(cfg.toy_poisons, int)
                objective = _objective(learner, Xv, yv, target)
                r = _attack(learner, s, sp, objective, X0, y0, cfg.toy_poisons, None)
                X_p, y_p = r.X_p.numpy(), r.y_p.numpy()
            w = _fit(learner, *_poisoned(sp, X_p, y_p, len(y_p)), s)
            out[f"mg1_{name}_regions"] = learner.predict(w, _on_device(G)).reshape(len(grid), len(grid)).cpu()
            out[f"mg1_{name}_poisons"], out[f"mg1_{name}_labels"] = X_p, y_p
            out[f"mg1_{name}_val_error"] = learner.error(w, _on_device(Xv), torch.as_tensor(yv).to(w.device))
            out[f"mg1_{name}_red_as_blue"] = (learner.predict(w, _on_device(Xv[yv == 2])) == 0).double().mean().item()
        out.update(mg1_X=X, mg1_y=y)
        # MG-2
        centers = np.array([[0.35, 0.5], [0.65, 0.5]])
        X, y = _blobs(rng, cfg.toy_per_class, centers)
        Xv, yv = _blobs(rng, cfg.toy_per_class, centers)
        learner = make_learner(cfg, "logistic", 2)
        objective = _objective(learner, Xv, yv)
        x0 = X[y == 0][np.argmin(((X[y == 0] - centers[0]) ** 2).sum(1))][None]  # a typical class-0 point, flipped
        r = _on_cpu(craft_poisons(learner, _on_device(X), _on_device(y), objective, _on_device(x0),
                                  _on_device(np.ones(1)), per_round=1, keep_path=True,
                                  **dict(s, attack_iters=4 * s["attack_iters"], attack_step=s["attack_step"] / 10)))
        Xt, yt = _on_device(X), _on_device(y)
        one = torch.ones(1, dtype=yt.dtype, device=yt.device)

        def loss_at(p):  # validation loss of the learner trained with a poison (label 1) at p
            return objective(train_gd(learner, torch.cat([Xt, p[None]]), torch.cat([yt, one]),
                                      steps=s["train_steps"], lr=s["train_lr"]))
        surface = vmap(loss_at)(_on_device(G)).reshape(len(grid), len(grid)).cpu()
        out.update(mg2_X=X, mg2_y=y, mg2_path=r.paths[0][:, 0].numpy(), mg2_surface=surface.numpy(),
                   mg2_objective=np.asarray(r.objective[0]))
        return {k: torch.as_tensor(np.asarray(v)) for k, v in out.items()}
    return cache.tensors("bg_toy", key, run)


# --------------------------------------------------------------------------- plan
FEATURES = {"spambase": 57, "mnist_1v7": 784}  # the Ransomware stand-in: ``ransomware_features``


def _plan_row(stage: str, trials: int, flops: float, basis: str) -> dict:
    return {"stage": stage, "trials": int(trials), "flops_per_trial": float(flops), "basis": basis}


def plan(cfg) -> list[dict]:
    """The stages this notebook runs at ``cfg``, for ``make plan``; runs nothing. FLOPs: each
    learner as the equivalent network (a linear layer to one logit; the MLP with its hidden
    layer; softmax: ten logits), its forward pass counted by ``poisonrepro.plan``
    (FlopCounterMode) per example, x3 for a gradient-descent step over the training set; an
    attack iteration runs the T inner steps forward and back again (x6)."""
    P = importlib.import_module("poisonrepro.plan")  # by name: the plan is no part of any stage's code hash
    nn = torch.nn

    def net(kind, d, classes=1):
        if kind == "mlp":
            return nn.Sequential(nn.Linear(d, cfg.mlp_hidden), nn.Tanh(), nn.Linear(cfg.mlp_hidden, classes))
        return nn.Linear(d, 10 if kind == "softmax" else classes)

    def dims(name):
        return FEATURES.get(name, cfg.ransomware_features)

    def fit(kind, d, n, steps):  # full-batch gradient descent
        return P.model_train_flops(net(kind, d), (d,), steps * n)

    def attack(kind, d, n, s, rounds):  # per iteration: T inner steps, then back through them
        return P.model_train_flops(net(kind, d), (d,), rounds * s["attack_iters"] * s["inner_steps"] * n, passes=6.0)

    counts = cfg.counts()
    rounds, n = max(counts) // cfg.per_round, cfg.n_train + max(counts)
    per = [attack(k, dims(name), n, settings(cfg, k), rounds)
           + len(counts) * fit(k, dims(name), n, settings(cfg, k)["train_steps"])
           for name in cfg.datasets for k in cfg.learners]
    rows = [_plan_row("bg_indiscriminate", len(per) * cfg.splits, sum(per) / len(per),
                      f"per dataset, learner and split (mean): {max(counts)} poisons in {rounds} rounds of back-gradient "
                      f"ascent, then the victim trained at each of {len(counts)} budgets")]
    L, d_tr = len(cfg.learners), dims(cfg.transfer_dataset)
    rows.append(_plan_row("bg_transfer", cfg.splits * L * (L + 1),
                          sum(fit(k, d_tr, n, settings(cfg, k)["train_steps"]) for k in cfg.learners) / L,
                          "per split, victim and source of poisons (and clean): one victim trained"))
    s = settings(cfg, "logistic")
    R = len(cfg.constraint_radii)
    per = [attack("logistic", dims(name), n, s, rounds) + 2 * (R + 1) / R * len(counts)
           * fit("logistic", dims(name), n, s["train_steps"]) for name in cfg.defence_datasets]
    rows.append(_plan_row("bg_outlier", len(cfg.defence_datasets) * cfg.splits * R, sum(per) / len(per),
                          "per defence dataset, split and radius: a constrained attack, and the victim with and "
                          "without the detector at every budget"))
    d_f = dims(cfg.flip_dataset)
    refits = len(counts) * (3 + len(cfg.knn_ks))
    rows.append(_plan_row("bg_flipping", cfg.splits * len(FLIP_ATTACKS),
                          refits * fit("logistic", d_f, n, s["train_steps"])
                          + cfg.ilf_candidates * fit("logistic", d_f, n, cfg.ilf_warm_steps) / len(FLIP_ATTACKS),
                          f"per split and attack: {refits} victims (each defence at each budget), and informed "
                          f"flipping's {cfg.ilf_candidates} candidates warm-started ({cfg.ilf_warm_steps} steps)"))
    mc_counts = cfg.counts(cfg.mc_fractions, cfg.mc_n_train)
    mc_n, mc_rounds = cfg.mc_n_train + max(mc_counts), max(mc_counts) // cfg.mc_per_round
    s_mc = dict(s, attack_iters=cfg.mc_attack_iters)
    rows.append(_plan_row("bg_multiclass", 2 * cfg.mc_splits,
                          attack("softmax", 784, mc_n, s_mc, mc_rounds)
                          + len(mc_counts) * fit("softmax", 784, mc_n, s["train_steps"]),
                          "per objective and split: the softmax learner's attack and its victims at every budget"))
    rows.append(_plan_row("bg_label_noise", len(LF_VARIANTS) * cfg.splits * len(cfg.lf_fractions),
                          fit("softmax", 784, cfg.lf_n_train, 200),
                          f"per variant, split and fraction: scikit-learn's logistic regression, at most 200 "
                          f"iterations over {cfg.lf_n_train} digits"))
    toy_n = 3 * cfg.toy_per_class
    rows.append(_plan_row("bg_toy", 1, (cfg.toy_grid ** 2 + 4) * fit("logistic", 2, toy_n + 1, s["train_steps"])
                          + 3 * attack("softmax", 2, toy_n, s, 1),
                          f"the 2-D examples: a learner trained at each of {cfg.toy_grid}^2 grid points"))
    return rows
