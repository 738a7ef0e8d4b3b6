"""Notebook 07, generative poisoning: experiments, figures and claims.

- GEN-1 (Yang et al. 2017): poisons for a 10-class MNIST logistic regression made three ways,
  as the lecture's three panels: the direct gradient method from real "5"s, the same from
  uniform noise, and the autoencoder-based generative method from the same "5"s; with the
  victim's test accuracy after each set is added, and the time each method took;
- PGAN-1 (Munoz-Gonzalez et al. 2019): pGAN on binary MNIST for a sweep of alpha: a 2-D
  projection of genuine points and generated poisons, and the detectability-effectiveness
  trade-off (the victim's accuracy drop, the share of poisons an outlier detector flags).
"""
from __future__ import annotations

import time

import numpy as np
import pandas as pd
import torch
from sklearn.decomposition import PCA
from sklearn.linear_model import LogisticRegression

from .. import data as D
from .. import plots as P
from ..attacks.back_gradient import DTYPE, Learner, as_tensor, craft_poisons, train_gd, validation_objective
from ..attacks.generative import pretrain_autoencoder, train_generative_poisoner, uniform_noise
from ..attacks.pgan import PGAN, train_pgan
from ..cache import ArtifactCache
from ..config import as_dict, config_hash
from ..defenses.outlier_detection import fit_outlier_detector
from ..results import Results, rank_correlation
from ..train import progress

NOTEBOOK = "07_pgan"
PAPER = "pgan"
CODE_VERSION = "2"
GEN_METHODS = ("direct gradient from real digits", "direct gradient from noise", "generative (autoencoder)")
plt = P.plt


def _key(cfg, prefix, **extra) -> str:
    keys = ["seed"] + [f.name for f in cfg.__dataclass_fields__.values() if f.name.startswith(prefix)]
    return config_hash(as_dict(cfg), keys=keys, extra=dict(extra, code=CODE_VERSION))


def mnist_pools():
    """MNIST training digits (the pool splits come from) and the test set, flat in [0, 1]."""
    (Xp, yp, source), (Xt, yt, _) = D.mnist_flat("train"), D.mnist_flat("test")
    return (Xp, yp), (Xt, yt), source


# --------------------------------------------------------------------------- GEN-1
def generative_attack(cfg, cache: ArtifactCache) -> dict:
    """The three poison sets of GEN-1, the autoencoder's plain reconstructions (a control),
    the victim's test accuracy with each, and the seconds each method took."""
    key = _key(cfg, "gen_", ae=[getattr(cfg, k) for k in ("ae_code", "ae_pretrain_steps", "ae_attack_steps",
                                                            "ae_lr", "ae_recon_weight", "ae_batch")])

    def run():
        (Xp, yp), (Xt, yt), _ = mnist_pools()
        rng = np.random.default_rng(cfg.seed)
        order = rng.permutation(len(yp))
        tr, va = order[:cfg.gen_n_train], order[cfg.gen_n_train:cfg.gen_n_train + cfg.gen_n_val]
        attacker = order[cfg.gen_n_train + cfg.gen_n_val:]  # the attacker's own digits
        te = rng.permutation(len(yt))[:cfg.gen_n_test]
        X_tr, y_tr, X_te, y_te = as_tensor(Xp[tr]), as_tensor(yp[tr]), as_tensor(Xt[te]), torch.as_tensor(yt[te])
        src = attacker[yp[attacker] == cfg.gen_source]
        n_p = int(round(cfg.gen_fraction * cfg.gen_n_train))
        X_src, y_src = as_tensor(Xp[src]), torch.full((len(src),), float(cfg.gen_source), dtype=DTYPE)
        learner = Learner("softmax", Xp.shape[1], n_classes=10, weight_decay=cfg.gen_weight_decay)
        objective = validation_objective(learner, Xp[va], yp[va])
        settings = dict(attack_iters=cfg.gen_attack_iters, attack_step=cfg.gen_attack_step,
                        train_steps=cfg.gen_train_steps, train_lr=cfg.gen_train_lr, inner_steps=cfg.gen_inner_steps,
                        inner_lr=cfg.gen_train_lr)

        def accuracy(X_p):
            w = train_gd(learner, torch.cat([X_tr, X_p]), torch.cat([y_tr, y_src[:len(X_p)]]),
                         steps=cfg.gen_train_steps, lr=cfg.gen_train_lr)
            return 1 - learner.error(w, X_te, y_te)

        bar = progress(total=2 * cfg.gen_attack_iters + cfg.ae_attack_steps, desc="GEN-1 poisons")
        out, seconds = {}, {}
        for name, start in (("direct_data", X_src[:n_p]), ("direct_noise", uniform_noise(n_p, Xp.shape[1], cfg.seed))):
            t0 = time.perf_counter()
            r = craft_poisons(learner, X_tr, y_tr, objective, start, y_src[:n_p], per_round=n_p, bar=bar, **settings)
            seconds[name] = time.perf_counter() - t0
            out[name], out[f"{name}_start"] = r.X_p, start
        t0 = time.perf_counter()
        ae = pretrain_autoencoder(as_tensor(Xp[attacker]), code=cfg.ae_code, steps=cfg.ae_pretrain_steps,
                                  lr=cfg.ae_lr, batch=64, seed=cfg.seed)
        seconds["ae_pretrain"] = time.perf_counter() - t0
        with torch.no_grad():
            out["reconstruction"] = ae(X_src[:n_p])
        ae, values, seconds["ae_attack"] = train_generative_poisoner(
            ae, learner, X_tr, y_tr, X_src, y_src, objective, steps=cfg.ae_attack_steps, lr=cfg.ae_lr,
            recon_weight=cfg.ae_recon_weight, train_steps=cfg.gen_train_steps, train_lr=cfg.gen_train_lr,
            inner_steps=cfg.gen_inner_steps, inner_lr=cfg.gen_train_lr, batch=cfg.ae_batch, seed=cfg.seed, bar=bar)
        bar.close()
        t0 = time.perf_counter()
        with torch.no_grad():
            out["generative"] = ae(X_src[:n_p])
        seconds["ae_generate"] = time.perf_counter() - t0
        out["source"] = X_src[:n_p]
        acc = {"clean": 1 - learner.error(train_gd(learner, X_tr, y_tr, steps=cfg.gen_train_steps,
                                                   lr=cfg.gen_train_lr), X_te, y_te)}
        for name in ("direct_data", "direct_noise", "generative", "reconstruction", "direct_data_start",
                     "direct_noise_start"):
            acc[name] = accuracy(out[name])
        tensors = {k: v.detach().to(torch.float32) for k, v in out.items()}
        tensors.update({f"acc/{k}": torch.tensor(v) for k, v in acc.items()},
                       **{f"seconds/{k}": torch.tensor(v) for k, v in seconds.items()},
                       ae_objective=torch.tensor(values), n_poisons=torch.tensor(n_p))
        return tensors
    return cache.tensors("gen_attack", key, run)


def fig_generative(cfg, gen, res: Results):
    """GEN-1: the three panels (eight poisons each) with the source digits above."""
    n = min(8, int(gen["n_poisons"]))
    rows = [("source digits", gen["source"]), (GEN_METHODS[0], gen["direct_data"]),
            (GEN_METHODS[1], gen["direct_noise"]), (GEN_METHODS[2], gen["generative"])]
    fig = plt.figure(figsize=(1.2 * n, 1.6 * len(rows)))
    acc = {"source digits": None, GEN_METHODS[0]: "direct_data", GEN_METHODS[1]: "direct_noise",
           GEN_METHODS[2]: "generative"}
    for r, (sub, (name, images)) in enumerate(zip(fig.subfigures(len(rows), 1), rows)):
        axes = sub.subplots(1, n, squeeze=False)[0]
        for c in range(n):
            axes[c].imshow(images[c].view(28, 28).numpy(), cmap="gray", vmin=0, vmax=1)
            axes[c].axis("off")
        k = acc[name]
        title = name if k is None else f"({'abc'[r - 1]}) {name}: victim accuracy {float(gen['acc/' + k]):.3f}"
        sub.suptitle(title, fontsize=9, x=0.01, ha="left")
    fig.suptitle(f"GEN-1 poisons labeled '{cfg.gen_source}' ({int(gen['n_poisons'])} = {100 * cfg.gen_fraction:.0f}% "
                 f"of {cfg.gen_n_train} training digits); clean accuracy {float(gen['acc/clean']):.3f}", fontsize=10)
    res.save_figure(fig, "GEN-1")
    return fig


def table_generative(cfg, gen, res: Results) -> pd.DataFrame:
    n = int(gen["n_poisons"])
    s = {k.split("/", 1)[1]: float(v) for k, v in gen.items() if k.startswith("seconds/")}
    nan = float("nan")
    rows = {GEN_METHODS[0]: ("direct_data", s["direct_data"], nan),
            GEN_METHODS[1]: ("direct_noise", s["direct_noise"], nan),
            GEN_METHODS[2]: ("generative", s["ae_generate"], s["ae_pretrain"] + s["ae_attack"]),
            "start (a): the source digits unchanged": ("direct_data_start", nan, nan),
            "start (b): uniform noise": ("direct_noise_start", nan, nan),
            "start (c): autoencoder reconstructions": ("reconstruction", nan, s["ae_pretrain"])}
    clean = float(gen["acc/clean"])
    table = pd.DataFrame([{"method": m, "victim_accuracy": float(gen[f"acc/{k}"]),
                           "accuracy_drop": clean - float(gen[f"acc/{k}"]),
                           "seconds_per_poison": sec / n, "training_seconds": train}
                          for m, (k, sec, train) in rows.items()]).set_index("method")
    res.save_table(table, "GEN-1")
    return table


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


def pgan_sweep(cfg, cache: ArtifactCache) -> dict:
    """A plain GAN of class Y_p (alpha = 1) pretrained once; from it, pGAN for each alpha. For
    each: the poisons, the victim's test accuracy with them (labeled Y_p), and the share the
    outlier detector flags."""
    key = _key(cfg, "pgan_", od=[cfg.trusted_per_class, cfg.od_quantile])

    def run():
        d = pgan_data(cfg)
        torch.manual_seed(cfg.seed)
        X_tr, y_tr = torch.as_tensor(d["X_tr"], dtype=torch.float32), torch.as_tensor(d["y_tr"])
        X_class = X_tr[y_tr == 1]
        model = PGAN(X_tr.shape[1], cfg.pgan_z_dim, cfg.pgan_hidden)
        n_p = int(round(cfg.pgan_fraction * cfg.pgan_n_train))
        det = fit_outlier_detector(d["X_trusted"], d["y_trusted"], quantile=cfg.od_quantile)
        bar = progress(total=cfg.pgan_pretrain_steps + len(cfg.pgan_alphas) * cfg.pgan_steps, desc="PGAN-1 games")
        pre = train_pgan(model, X_class, X_tr, y_tr, 1, alpha=1.0, lam=cfg.pgan_lambda, steps=cfg.pgan_pretrain_steps,
                         batch=cfg.pgan_batch, lr=cfg.pgan_lr, seed=cfg.seed, bar=bar)
        start = {k: v.clone() for k, v in model.state_dict().items()}
        out = {"clean_accuracy": torch.tensor(_victim_accuracy(d["X_tr"], d["y_tr"], d["X_te"], d["y_te"])),
               "genuine_flagged": torch.tensor(1 - det.keep(d["X_tr"], d["y_tr"]).mean()),
               "pretrain_d_loss": torch.tensor(pre["D"])}
        acc, flagged, d_fool, spread = [], [], [], []
        out["genuine_spread"] = torch.tensor(_spread(d["X_tr"][d["y_tr"] == 1]))
        for i, alpha in enumerate(cfg.pgan_alphas):
            model.load_state_dict(start)
            train_pgan(model, X_class, X_tr, y_tr, 1, alpha=alpha, lam=cfg.pgan_lambda, steps=cfg.pgan_steps,
                       batch=cfg.pgan_batch, lr=cfg.pgan_lr, seed=cfg.seed + 1 + i, bar=bar)
            model.eval()
            with torch.no_grad():
                X_p = model.sample(n_p, torch.Generator().manual_seed(cfg.seed)).double().numpy()
                d_fool.append(torch.sigmoid(model.D(torch.as_tensor(X_p, dtype=torch.float32))).mean().item())
            y_p = np.ones(n_p, dtype=np.int64)
            acc.append(_victim_accuracy(np.vstack([d["X_tr"], X_p]), np.concatenate([d["y_tr"], y_p]), d["X_te"],
                                        d["y_te"]))
            flagged.append(1 - det.keep(X_p, y_p).mean())
            spread.append(_spread(X_p))
            out[f"poisons/{i}"] = torch.as_tensor(X_p, dtype=torch.float32)
        bar.close()
        out.update(accuracy=torch.tensor(acc), flagged=torch.tensor(flagged), d_score=torch.tensor(d_fool),
                   spread=torch.tensor(spread))
        return out
    return cache.tensors("pgan_sweep", key, run)


def fig_projection(cfg, sweep, res: Results):
    """PGAN-1: genuine points of both classes and the poisons in the first two principal
    components of the genuine training data, for three values of alpha."""
    d = pgan_data(cfg)
    pca = PCA(2, random_state=cfg.seed).fit(d["X_tr"])
    Z = pca.transform(d["X_tr"])
    alphas = list(cfg.pgan_alphas)
    shown = sorted({0, len(alphas) // 2, len(alphas) - 1})
    fig, axes = plt.subplots(1, len(shown), figsize=(4.4 * len(shown), 4), squeeze=False, sharex=True, sharey=True)
    for ax, i in zip(axes[0], shown):
        ax.scatter(*Z[d["y_tr"] == 0].T, s=6, c="tab:green", alpha=0.5,
                   label=f"genuine '{cfg.pgan_other_class}' (target class)")
        ax.scatter(*Z[d["y_tr"] == 1].T, s=6, c="tab:blue", alpha=0.5, label=f"genuine '{cfg.pgan_poison_class}'")
        Zp = pca.transform(sweep[f"poisons/{i}"].double().numpy())
        ax.scatter(*Zp.T, s=14, c="tab:red", marker="x", label=f"pGAN poisons (label '{cfg.pgan_poison_class}')")
        ax.set_title(f"alpha = {alphas[i]:g}: accuracy {float(sweep['accuracy'][i]):.3f}, "
                     f"flagged {float(sweep['flagged'][i]):.2f}", fontsize=9)
        ax.set_xlabel("PC 1")
    axes[0, 0].set_ylabel("PC 2")
    axes[0, 0].legend(fontsize=7, loc="best")
    fig.suptitle(f"PGAN-1 genuine digits and pGAN poisons ({100 * cfg.pgan_fraction:.0f}% of the training set), "
                 "2-D PCA of the genuine training data", fontsize=10)
    res.save_figure(fig, "PGAN-1")
    return fig


def fig_tradeoff(cfg, sweep, res: Results):
    alphas = np.asarray(cfg.pgan_alphas)
    drop = float(sweep["clean_accuracy"]) - sweep["accuracy"].numpy()
    fig, ax = plt.subplots(figsize=(5.5, 3.6))
    ax.plot(alphas, drop, "o-", color="tab:red", label="victim accuracy drop (effectiveness)")
    ax.plot(alphas, sweep["flagged"].numpy(), "s-", color="tab:blue", label="poisons flagged by the outlier detector")
    ax.plot(alphas, sweep["d_score"].numpy(), "^--", color="tab:gray", label="mean D(poison) (the game's own critic)")
    ax.axhline(float(sweep["genuine_flagged"]), color="tab:blue", ls=":", lw=1, label="genuine points flagged")
    ax.set_xlabel("alpha (1: plain GAN, only detectability)")
    ax.legend(fontsize=7)
    ax.set_title("PGAN-1b detectability vs effectiveness over alpha", fontsize=10)
    res.save_figure(fig, "PGAN-1b")
    table = pd.DataFrame({"victim_accuracy": sweep["accuracy"].numpy(), "accuracy_drop": drop,
                          "poisons_flagged": sweep["flagged"].numpy(), "mean_D_score": sweep["d_score"].numpy(),
                          "poison_spread": sweep["spread"].numpy(),
                          "genuine_spread": float(sweep["genuine_spread"])},
                         index=pd.Index(alphas, name="alpha"))
    res.save_table(table, "PGAN-1")
    return table


def record_claims(cfg, gen, sweep, res: Results, source: str):
    setting = f"10-class MNIST logistic regression, {100 * cfg.gen_fraction:.0f}% poisons ({source})"
    # each method against the poisons it started from: unmodified '5's, uniform noise, the autoencoder's
    # plain reconstructions (labeled '5' too); what the optimisation adds, not what any extra point does
    for name, k, start in zip(GEN_METHODS, ("direct_data", "direct_noise", "generative"),
                              ("direct_data_start", "direct_noise_start", "reconstruction")):
        res.claim("GEN-1", f"{name}: the optimised poisons lower the victim's accuracy more than their starting points",
                  "accuracy with starting points minus with poisons", float(gen[f"acc/{start}"]) - float(gen[f"acc/{k}"]),
                  "> 0.01", setting=setting)
    per_poison = float(gen["seconds/direct_data"]) / int(gen["n_poisons"])
    train = float(gen["seconds/ae_pretrain"]) + float(gen["seconds/ae_attack"])
    res.claim("GEN-1", "once trained, the generative method makes poisons far faster than the direct method",
              "direct seconds per poison / generative seconds per poison",
              per_poison / max(float(gen["seconds/ae_generate"]) / int(gen["n_poisons"]), 1e-9), ">= 10",
              setting=f"generator training took {train:.0f} s (break-even after {train / per_poison:.0f} poisons)")
    drop = float(sweep["clean_accuracy"]) - sweep["accuracy"].numpy()
    setting = f"MNIST {cfg.pgan_poison_class} vs {cfg.pgan_other_class}, {100 * cfg.pgan_fraction:.0f}% poisons"
    res.claim("PGAN-1", "lower alpha, more effective poisons", "spearman(alpha, accuracy drop)",
              rank_correlation(cfg.pgan_alphas, drop), "< 0", setting=setting)
    res.claim("PGAN-1", "lower alpha, more detectable poisons", "spearman(alpha, share flagged)",
              rank_correlation(cfg.pgan_alphas, sweep["flagged"].numpy()), "< 0", setting=setting)
    hidden = sweep["flagged"].numpy() <= 0.5
    res.claim("PGAN-1", "some alpha makes poisons that are effective and mostly undetected",
              "largest accuracy drop among alphas with at most half the poisons flagged",
              float(drop[hidden].max()) if hidden.any() else float("nan"), ">= 0.01", setting=setting)
