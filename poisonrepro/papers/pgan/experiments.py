"""Notebook 07, generative poisoning: the experiments (figures, tables and claims are in ``report``).

- GEN-1 (Yang et al. 2017): poisons for a 10-class MNIST logistic regression made three ways,
  as the lecture's three panels: the direct gradient method from real "5"s, the same from
  uniform noise, and the autoencoder-based generative method from the same "5"s; with the
  victim's test accuracy after each set is added, and the time each method took. The whole
  experiment is repeated ``gen_trials`` times (seeds ``seed``, ``seed + 1``, ...: a new split,
  noise, autoencoder), each repeat cached on its own;
- PGAN-1 (Munoz-Gonzalez et al. 2019): pGAN on binary MNIST for a sweep of alpha and
  ``pgan_seeds`` generator seeds (each cached on its own): the poisons, the victim's accuracy
  and the share of poisons an outlier detector flags.

Devices: the learners, the autoencoder and the pGAN networks train on ``T.default_device()``, their
data moved there; every random draw stays on the CPU, the detector and the victims' scikit-learn
fits stay in numpy, results come back to the CPU, and each method's seconds are measured once the
device has finished its work (``generative.synchronized_clock``).
"""
from __future__ import annotations

import importlib

import numpy as np
import torch
from sklearn.linear_model import LogisticRegression

from ... import data as D
from ... import train as T
from ...attacks.back_gradient import DTYPE, Learner, as_tensor, craft_poisons, train_gd, validation_objective
from ...attacks.generative import (Autoencoder, pretrain_autoencoder, synchronized_clock, train_generative_poisoner,
                                  uniform_noise)
from ...attacks.pgan import PGAN, train_pgan
from ...cache import ArtifactCache, stage_key
from ...defenses.outlier_detection import fit_outlier_detector
from ...train import progress

GEN_KEYS = ("direct_data", "direct_noise", "generative")
GEN_STARTS = ("direct_data_start", "direct_noise_start", "reconstruction")


def _key(cfg, stage, **extra) -> str:
    # the repeat counts feed no key (``poisonrepro.config.pgan``): more repeats reuse the ones made
    return stage_key(cfg, stage, __name__, **extra)


def mnist_pools():
    """MNIST training digits (the pool splits come from) and the test set, flat in [0, 1]."""
    (Xp, yp, source), (Xt, yt, _) = D.mnist_flat("train"), D.mnist_flat("test")
    return (Xp, yp), (Xt, yt), source


def _gen_trial(cfg, seed: int, bar) -> dict:
    """One GEN-1 experiment at ``seed``: its split, the three poison sets, the autoencoder's
    plain reconstructions (a control), the victim's accuracy with each, and the seconds each
    method took (wall clock of the real runs)."""
    dev = T.default_device()
    (Xp, yp), (Xt, yt), _ = mnist_pools()
    rng = np.random.default_rng(seed)
    order = rng.permutation(len(yp))
    tr, va = order[:cfg.gen_n_train], order[cfg.gen_n_train:cfg.gen_n_train + cfg.gen_n_val]
    attacker = order[cfg.gen_n_train + cfg.gen_n_val:]  # the attacker's own digits
    te = rng.permutation(len(yt))[:cfg.gen_n_test]
    X_tr, y_tr, X_te, y_te = (v.to(dev) for v in (as_tensor(Xp[tr]), as_tensor(yp[tr]), as_tensor(Xt[te]),
                                                  torch.as_tensor(yt[te])))
    src = attacker[yp[attacker] == cfg.gen_source]
    n_p = int(round(cfg.gen_fraction * cfg.gen_n_train))
    X_src, y_src = as_tensor(Xp[src]).to(dev), torch.full((len(src),), float(cfg.gen_source), dtype=DTYPE, device=dev)
    learner = Learner("softmax", Xp.shape[1], n_classes=10, weight_decay=cfg.gen_weight_decay)
    objective = validation_objective(learner, as_tensor(Xp[va]).to(dev), as_tensor(yp[va]).to(dev))
    settings = dict(attack_iters=cfg.gen_attack_iters, attack_step=cfg.gen_attack_step,
                    train_steps=cfg.gen_train_steps, train_lr=cfg.gen_train_lr, inner_steps=cfg.gen_inner_steps,
                    inner_lr=cfg.gen_train_lr)

    def accuracy(X_p):
        w = train_gd(learner, torch.cat([X_tr, X_p]), torch.cat([y_tr, y_src[:len(X_p)]]),
                     steps=cfg.gen_train_steps, lr=cfg.gen_train_lr)
        return 1 - learner.error(w, X_te, y_te)

    out, seconds = {}, {}
    # the noise is drawn on the CPU, as ever, then joins the data
    for name, start in (("direct_data", X_src[:n_p]), ("direct_noise", uniform_noise(n_p, Xp.shape[1], seed).to(dev))):
        t0 = synchronized_clock(dev)
        r = craft_poisons(learner, X_tr, y_tr, objective, start, y_src[:n_p], per_round=n_p, bar=bar, **settings)
        seconds[name] = synchronized_clock(dev) - t0
        out[name], out[f"{name}_start"] = r.X_p, start
    t0 = synchronized_clock(dev)
    ae = pretrain_autoencoder(as_tensor(Xp[attacker]).to(dev), code=cfg.ae_code, steps=cfg.ae_pretrain_steps,
                              lr=cfg.ae_lr, batch=64, seed=seed)
    seconds["ae_pretrain"] = synchronized_clock(dev) - t0
    with torch.no_grad():
        out["reconstruction"] = ae(X_src[:n_p])
    ae, values, seconds["ae_attack"] = train_generative_poisoner(
        ae, learner, X_tr, y_tr, X_src, y_src, objective, steps=cfg.ae_attack_steps, lr=cfg.ae_lr,
        recon_weight=cfg.ae_recon_weight, train_steps=cfg.gen_train_steps, train_lr=cfg.gen_train_lr,
        inner_steps=cfg.gen_inner_steps, inner_lr=cfg.gen_train_lr, batch=cfg.ae_batch, seed=seed, bar=bar)
    t0 = synchronized_clock(dev)
    with torch.no_grad():
        out["generative"] = ae(X_src[:n_p])
    seconds["ae_generate"] = synchronized_clock(dev) - t0
    out["source"] = X_src[:n_p]
    acc = {"clean": 1 - learner.error(train_gd(learner, X_tr, y_tr, steps=cfg.gen_train_steps,
                                               lr=cfg.gen_train_lr), X_te, y_te)}
    for name in GEN_KEYS + GEN_STARTS:
        acc[name] = accuracy(out[name])
    tensors = {k: v.detach().to(torch.float32).cpu() for k, v in out.items()}
    tensors.update({f"acc/{k}": torch.tensor(v) for k, v in acc.items()},
                   **{f"seconds/{k}": torch.tensor(v) for k, v in seconds.items()},
                   ae_objective=torch.tensor(values), n_poisons=torch.tensor(n_p), seed=torch.tensor(seed))
    return tensors


def generative_attack(cfg, cache: ArtifactCache) -> list[dict]:
    """``gen_trials`` GEN-1 experiments (seeds ``seed``, ``seed + 1``, ...), each cached on its own."""
    bar = progress(total=cfg.gen_trials * (2 * cfg.gen_attack_iters + cfg.ae_attack_steps), desc="GEN-1 poisons")
    trials = [cache.tensors("gen_attack", _key(cfg, "gen_attack", trial=k),
                            lambda k=k: _gen_trial(cfg, cfg.seed + k, bar)) for k in range(cfg.gen_trials)]
    bar.close()
    return trials



# --------------------------------------------------------------------------- PGAN-1
def pgan_data(cfg) -> dict:
    (Xp, yp), (Xt, yt), source = mnist_pools()
    classes = (cfg.pgan_other_class, cfg.pgan_poison_class)
    rng = np.random.default_rng(cfg.seed)
    pool = rng.permutation(np.flatnonzero(np.isin(yp, classes)))
    need = cfg.pgan_n_train + 2 * cfg.trusted_per_class
    if len(pool) < need:
        raise ValueError(f"pgan_n_train={cfg.pgan_n_train} plus 2 x trusted_per_class={cfg.trusted_per_class} needs "
                         f"{need} training digits {classes}; {source} has {len(pool)}")
    tr = pool[:cfg.pgan_n_train]
    rest = pool[cfg.pgan_n_train:]
    trusted = np.concatenate([rest[yp[rest] == c][:cfg.trusted_per_class] for c in classes])
    test = rng.permutation(np.flatnonzero(np.isin(yt, classes)))[:cfg.pgan_n_test]
    label = lambda y: (y == cfg.pgan_poison_class).astype(np.int64)  # 1: the poisons' class Y_p
    return {"X_tr": Xp[tr], "y_tr": label(yp[tr]), "X_trusted": Xp[trusted], "y_trusted": label(yp[trusted]),
            "X_te": Xt[test], "y_te": label(yt[test]), "source": source}


def _spread(X) -> float:
    """Mean pairwise Euclidean distance: how diverse a set of points is (a collapsed generator: ~0)."""
    X = torch.as_tensor(np.asarray(X, dtype=np.float64))
    return torch.cdist(X, X).mean().item()


def _victim_accuracy(X, y, X_te, y_te) -> float:
    return LogisticRegression(max_iter=500).fit(X, y).score(X_te, y_te)


def _pgan_seed(cfg, seed: int, bar) -> dict:
    """One generator seed: a plain GAN of class Y_p (alpha = 1) pretrained, then pGAN continued
    from it for each alpha. For each: the poisons, the victim's test accuracy with them (labeled
    Y_p), the share the outlier detector flags, D's mean score and the poisons' spread. The data
    and the detector are the same for every seed (``cfg.seed``)."""
    dev = T.default_device()
    d = pgan_data(cfg)
    torch.manual_seed(seed)
    X_tr, y_tr = torch.as_tensor(d["X_tr"], dtype=torch.float32).to(dev), torch.as_tensor(d["y_tr"]).to(dev)
    X_class = X_tr[y_tr == 1]
    model = PGAN(X_tr.shape[1], cfg.pgan_z_dim, cfg.pgan_hidden).to(dev)  # its weights drawn on the CPU
    n_p = int(round(cfg.pgan_fraction * cfg.pgan_n_train))
    det = fit_outlier_detector(d["X_trusted"], d["y_trusted"], quantile=cfg.od_quantile)
    pre = train_pgan(model, X_class, X_tr, y_tr, 1, alpha=1.0, lam=cfg.pgan_lambda, steps=cfg.pgan_pretrain_steps,
                     batch=cfg.pgan_batch, lr=cfg.pgan_lr, seed=seed, bar=bar)
    start = {k: v.clone() for k, v in model.state_dict().items()}
    out = {"clean_accuracy": torch.tensor(_victim_accuracy(d["X_tr"], d["y_tr"], d["X_te"], d["y_te"])),
           "genuine_flagged": torch.tensor(1 - det.keep(d["X_tr"], d["y_tr"]).mean()),
           "genuine_spread": torch.tensor(_spread(d["X_tr"][d["y_tr"] == 1])),
           "pretrain_d_loss": torch.tensor(pre["D"]), "seed": torch.tensor(seed)}
    acc, flagged, d_fool, spread = [], [], [], []
    for i, alpha in enumerate(cfg.pgan_alphas):
        model.load_state_dict(start)
        train_pgan(model, X_class, X_tr, y_tr, 1, alpha=alpha, lam=cfg.pgan_lambda, steps=cfg.pgan_steps,
                   batch=cfg.pgan_batch, lr=cfg.pgan_lr, seed=seed + 1 + i, bar=bar)
        model.eval()
        with torch.no_grad():
            X_p = model.sample(n_p, torch.Generator().manual_seed(seed)).double().cpu().numpy()
            d_fool.append(torch.sigmoid(model.D(torch.as_tensor(X_p, dtype=torch.float32).to(dev))).mean().item())
        y_p = np.ones(n_p, dtype=np.int64)
        acc.append(_victim_accuracy(np.vstack([d["X_tr"], X_p]), np.concatenate([d["y_tr"], y_p]), d["X_te"],
                                    d["y_te"]))
        flagged.append(1 - det.keep(X_p, y_p).mean())
        spread.append(_spread(X_p))
        out[f"poisons/{i}"] = torch.as_tensor(X_p, dtype=torch.float32)
    out.update(accuracy=torch.tensor(acc), flagged=torch.tensor(flagged), d_score=torch.tensor(d_fool),
               spread=torch.tensor(spread))
    return out


def pgan_sweep(cfg, cache: ArtifactCache) -> list[dict]:
    """The alpha sweep for ``pgan_seeds`` generator seeds (``seed + 100 k``: the first is the
    single run of earlier versions), each cached on its own."""
    key = lambda k: _key(cfg, "pgan_sweep", generator=k)
    bar = progress(total=cfg.pgan_seeds * (cfg.pgan_pretrain_steps + len(cfg.pgan_alphas) * cfg.pgan_steps),
                   desc="PGAN-1 games")
    seeds = [cache.tensors("pgan_sweep", key(k), lambda k=k: _pgan_seed(cfg, cfg.seed + 100 * k, bar))
             for k in range(cfg.pgan_seeds)]
    bar.close()
    return seeds


# --------------------------------------------------------------------------- plan
def _plan_row(stage: str, trials: int, flops: float, basis: str) -> dict:
    return {"stage": stage, "trials": int(trials), "flops_per_trial": float(flops), "basis": basis}


def plan(cfg) -> list[dict]:
    """The stages this notebook runs at ``cfg``, for ``make plan``; runs nothing. FLOPs: each
    network's forward pass per 784-pixel digit counted by ``poisonrepro.plan`` (FlopCounterMode),
    x3 for a training step; a back-gradient iteration runs the T inner steps forward and back
    again (x6). The victims' scikit-learn fits are counted as 500 steps of the same learner."""
    P = importlib.import_module("poisonrepro.plan")  # by name: the plan is no part of any stage's code hash
    d, lin = 784, torch.nn.Linear
    n_p = int(round(cfg.gen_fraction * cfg.gen_n_train))
    n = cfg.gen_n_train + n_p
    victim = lin(d, 10)
    direct = P.model_train_flops(victim, (d,), cfg.gen_attack_iters * cfg.gen_inner_steps * n, passes=6.0)
    ae = Autoencoder(d, cfg.ae_code)
    generative = (P.model_train_flops(ae, (d,), cfg.ae_pretrain_steps * 64)
                  + cfg.ae_attack_steps * (P.model_train_flops(ae, (d,), cfg.ae_batch)
                                           + P.model_train_flops(victim, (d,), cfg.gen_inner_steps * n, passes=6.0)))
    victims = 7 * P.model_train_flops(victim, (d,), cfg.gen_train_steps * n)
    rows = [_plan_row("gen_attack", cfg.gen_trials, 2 * direct + generative + victims,
                      f"per trial: the direct method twice ({cfg.gen_attack_iters} iterations, T = {cfg.gen_inner_steps}, "
                      f"{n} digits), the autoencoder's {cfg.ae_pretrain_steps} pretraining and {cfg.ae_attack_steps} "
                      f"attack steps, 7 victims of {cfg.gen_train_steps} steps")]
    gan = PGAN(d, cfg.pgan_z_dim, cfg.pgan_hidden)
    steps = cfg.pgan_pretrain_steps + len(cfg.pgan_alphas) * cfg.pgan_steps
    per_step = (P.model_train_flops(gan.G, (cfg.pgan_z_dim,), 2 * cfg.pgan_batch)
                + P.model_train_flops(gan.D, (d,), 3 * cfg.pgan_batch)
                + P.model_train_flops(gan.C, (d,), 2 * cfg.pgan_batch))
    refits = (len(cfg.pgan_alphas) + 1) * P.model_train_flops(lin(d, 1), (d,), 500 * (cfg.pgan_n_train + n_p))
    rows.append(_plan_row("pgan_sweep", cfg.pgan_seeds, steps * per_step + refits,
                          f"per generator seed: {steps} steps of the game (G, D and C on batches of {cfg.pgan_batch}), "
                          f"a victim refit per alpha"))
    return rows
