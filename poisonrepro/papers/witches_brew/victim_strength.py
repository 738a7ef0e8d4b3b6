"""Notebook 04's diagnostic: is gradient matching's null result at ``cpu`` the victims' weakness?

At the ``cpu`` profile (1,000 training images, 3 epochs) the stand-in victims reach 25-35% test
accuracy and fit well under half of their own training set, and every attack of WB-T1 lands at
the clean victims' base rate. The hypothesis, stated before this experiment ran (2026-11-23):
*victims that do not fit their training set cannot carry a 1% poison effect*. Its prediction:
with the ``cpu`` profile's data, setups, budget and crafting (gradient matching K = 1, 30 steps,
1 restart), but with the attacker's network and the victims trained long enough to fit their
training set, K = 1 beats the clean base rate; at 3 epochs it does not.

Design: one attack (K = 1), one architecture (the ResNet-18 stand-in, the one the attack crafts
on), ``n_targets`` setups; for each epoch count E the surrogate and every victim train E epochs
(the ``cpu`` recipe otherwise); clean victims (the same training without poisons) give the base
rate over every setup. Each victim also reports its accuracy on its own training set and on its
poisons (labelled with the adversarial class, as the victim sees them). The decision is Fisher's
exact test of the success rate against the base rate (``stats.rate_difference_test``).

Too slow for 2 cores at useful E (the surrogate and 40 victims of 40 epochs), so it is not part of
the notebook: ``python -m poisonrepro.papers.witches_brew.victim_strength --epochs 3 40`` runs it
(on ``POISONREPRO_DEVICE``), writes the raw counts as JSON, and ``summarize`` decides them. The
README reports the run ("04 at cpu: why the attacks fail").
"""
from __future__ import annotations

import argparse
import json
import os
import time

import torch

from ... import train as T
from ...cache import ArtifactCache
from ...config import ConfigError, load_config
from ...executor import run_trials
from . import experiments as E

ATTACK, ARCH = "gradient_matching_K1", "resnet18_standin"


def strength_config(epochs: float, n_targets: int, profile: str = "cpu", wb_steps: int | None = None):
    """``profile``'s config of notebook 04, narrowed to K = 1 and the ResNet-18 stand-in, with
    the surrogates and the victims trained ``epochs`` epochs and, if given, ``wb_steps`` crafting
    steps (validated before any compute)."""
    steps = {} if wb_steps is None else {"wb_steps": wb_steps}
    return load_config("witches_brew", profile, attacks=(ATTACK,), victims=(ARCH,), n_targets=n_targets,
                       surrogate_epochs=float(epochs), victim_epochs=float(epochs), **steps)


def run(cfg, cache: ArtifactCache, clean_victims: int) -> dict:
    """The experiment at one config with ``clean_victims`` clean victims (each calls every
    setup's target): counts and mean accuracies (JSON-able)."""
    data = E.prepare_data(cfg)
    nets = E.surrogates(cfg, cache)
    E.craft(cfg, data, nets, ATTACK, cache)
    # the shared evaluation trial, with how well each victim fits its own training set and its poisons
    targets = data["target_index"].tolist()
    clean = [E.victim_spec(cfg, ARCH, E._victim_seed(cfg, 0, j, clean=True), targets, fit=True, stage="strength")
             for j in range(clean_victims)]
    poisoned = [E.victim_spec(cfg, ARCH, E._victim_seed(cfg, 0, t), [targets[t]], attack=ATTACK, setup=t, data=data,
                              fit=True, stage="strength") for t in range(cfg.n_targets)]
    results = run_trials(clean + poisoned, cache, desc=f"victims, {cfg.victim_epochs} epochs")
    adv = torch.as_tensor(data["adversarial"])
    clean_r, poisoned_r = results[:len(clean)], results[len(clean):]
    base = torch.stack([r["prediction"] == adv for r in clean_r])  # [clean victims, setups]
    success = torch.stack([r["prediction"][0] == adv[t] for t, r in enumerate(poisoned_r)])
    mean = lambda rs, k: float(torch.stack([r[k] for r in rs]).float().mean())  # noqa: E731
    return {"epochs": cfg.victim_epochs, "wb_steps": cfg.wb_steps, "wb_restarts": cfg.wb_restarts, "setups": cfg.n_targets, "clean_victims": clean_victims,
            "surrogate_test_accuracy": nets[0]["test_accuracy"],
            "success": int(success.sum()), "success_n": int(success.numel()),
            "base": int(base.sum()), "base_n": int(base.numel()),
            "poisoned_test_accuracy": mean(poisoned_r, "test_accuracy"),
            "poisoned_train_accuracy": mean(poisoned_r, "train_accuracy"),
            "poison_fit": mean(poisoned_r, "poison_fit"),
            "clean_test_accuracy": mean(clean_r, "test_accuracy"),
            "clean_train_accuracy": mean(clean_r, "train_accuracy")}


def summarize(rows: list[dict]):
    """One row per epoch count with the decision of "K = 1 beats the clean base rate"."""
    import pandas as pd

    from ... import stats as S
    out = []
    for r in rows:
        d = S.rate_difference_test(r["success"], r["success_n"], r["base"], r["base_n"])
        out.append({"epochs": r["epochs"], "crafting steps x restarts": f"{r['wb_steps']} x {r['wb_restarts']}",
                    "K=1 success": f"{r['success']}/{r['success_n']}",
                    "base rate": f"{r['base']}/{r['base_n']}", "difference": round(d.measured, 3),
                    "one-sided 95% bounds": f"[{d.ci_low:.2f}, {d.ci_high:.2f}]", "Fisher p": f"{d.p:.2g}",
                    "verdict": d.verdict, "victims' train acc. (poisoned / clean)":
                    f"{r['poisoned_train_accuracy']:.2f} / {r['clean_train_accuracy']:.2f}",
                    "poisons fitted": round(r["poison_fit"], 2),
                    "test acc. (poisoned / clean)": f"{r['poisoned_test_accuracy']:.2f} / {r['clean_test_accuracy']:.2f}",
                    "surrogate test acc.": round(r["surrogate_test_accuracy"], 2)})
    return pd.DataFrame(out)


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--epochs", type=float, nargs="+", default=[3.0, 40.0])
    p.add_argument("--targets", type=int, default=30)
    p.add_argument("--clean-victims", type=int, default=10)
    p.add_argument("--wb-steps", type=int, default=None, help="gradient-matching steps (default: the profile's)")
    p.add_argument("--profile", default="cpu", help="the notebook-04 profile narrowed (smoke: a plumbing check)")
    p.add_argument("--out", default="victim_strength.json")
    args = p.parse_args(argv)
    configs = [strength_config(e, args.targets, args.profile, args.wb_steps) for e in args.epochs]  # bad input fails here
    if not 1 <= args.clean_victims <= 100:
        raise ConfigError(f"--clean-victims={args.clean_victims}: need 1 to 100 clean victims")
    cache = ArtifactCache()
    rows = []
    for cfg in configs:
        t0 = time.perf_counter()
        rows.append({**run(cfg, cache, args.clean_victims), "seconds": round(time.perf_counter() - t0, 1),
                     "device": str(T.default_device()), "torch": torch.__version__})
        tmp = args.out + ".tmp"
        with open(tmp, "w") as f:
            json.dump(rows, f, indent=1)
        os.replace(tmp, args.out)  # atomic: a reader never sees half a file
        print(json.dumps(rows[-1]), flush=True)
    return rows


if __name__ == "__main__":
    main()
