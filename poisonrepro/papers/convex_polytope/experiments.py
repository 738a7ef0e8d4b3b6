"""Notebook 02, Convex Polytope (Zhu et al., ICML 2019): the experiments.

The protocol of the authors' code (zhuchen03/ConvexPolytopePosioning): networks pretrained on the
first ``pretrain_per_class`` CIFAR-10 training images of every class; a fine-tuning set of the next
``finetune_per_class`` per class, whose first ``n_poisons`` ship images are the bases and are
replaced by the poisons; frog targets from the training images held out of both (the code's
``others`` split). Poisons are crafted on the substitutes (an ensemble with dropout kept on) and
tested on victims they never saw: gray-box (the substitutes' architectures, other weights) and
black-box (other architectures).

- transfer (Sec. 4.1, Fig. 5): the victim's last layer is fine-tuned on the poisoned set (Adam
  0.1, 60 epochs, batch 64, x0.1 at epochs 30 and 45; not re-initialised), features frozen;
- end-to-end (Sec. 4.2, Fig. 7): every layer is fine-tuned (Adam 1e-4, weight decay 5e-4,
  BatchNorm statistics frozen), with the last-layer poisons and with the multi-layer poisons.

Success: the target is classified as the poison class after fine-tuning. The base rate comes
from the same fine-tuning on the clean set (the bases unperturbed). Pretraining runs as trials
through ``poisonrepro.executor`` (one per network); the other stages are cached under
``cache.stage_key``.
"""
from __future__ import annotations

import copy
import importlib
from functools import lru_cache

import numpy as np
import torch
import torch.nn.functional as F

from ... import data as D
from ... import models as M
from ... import train as T
from ...attacks import convex_polytope as CP
from ...cache import ArtifactCache, stage_key
from ...executor import Trial, run_trials

METHODS = ("clean", "feature_collision", "convex_polytope")


def _key(cfg, stage, **extra) -> str:
    return stage_key(cfg, stage, __name__, **extra)


# --------------------------------------------------------------------------- data
def _test_indices(n: int, count: int) -> np.ndarray:
    """A fixed draw of ``count`` test images (the same for every seed and network)."""
    return np.sort(np.random.default_rng(0).choice(n, count, replace=False))


def _first_per_class(labels: np.ndarray, start: int, count: int) -> np.ndarray:
    """The images ranked start..start+count-1 of every class, in the split's order."""
    return np.sort(np.concatenate([np.flatnonzero(labels == c)[start:start + count] for c in range(10)]))


def prepare_data(cfg) -> dict:
    """The splits of the authors' protocol, drawn in index order (deterministic)."""
    train, test = D.load_cifar10("train"), D.load_cifar10("test")
    t, s = D.class_index(cfg.target_class), D.class_index(cfg.poison_class)
    fine_idx = _first_per_class(train.y, cfg.pretrain_per_class, cfg.finetune_per_class)
    fine_y = torch.as_tensor(train.y[fine_idx]).long()
    base_pos = torch.nonzero(fine_y == s).flatten()[:cfg.n_poisons]  # the first ships of the fine-tuning set
    held = np.flatnonzero(train.y == t)[cfg.pretrain_per_class + cfg.finetune_per_class:]
    target_idx = held[:cfg.n_targets]
    test_idx = _test_indices(len(test.y), cfg.test_images)
    return {
        "source": train.source, "target_label": t, "poison_label": s,
        "fine_x": T.as_nchw(train.x[fine_idx]), "fine_y": fine_y, "base_pos": base_pos,
        "bases": T.to_unit(T.as_nchw(train.x[fine_idx][base_pos.numpy()])),
        "targets": T.to_unit(T.as_nchw(train.x[target_idx])), "target_index": torch.as_tensor(target_idx),
        "test_x": T.as_nchw(test.x[test_idx]), "test_y": torch.as_tensor(test.y[test_idx]).long(),
    }


# --------------------------------------------------------------------------- pretraining (trials)
@lru_cache(maxsize=2)
def _pretraining_set(per_class: int):
    train = D.load_cifar10("train")
    idx = _first_per_class(train.y, 0, per_class)
    return T.as_nchw(train.x[idx]), torch.as_tensor(train.y[idx]).long()


def build_network(arch: str, dropout: float) -> M.Classifier:
    model = M.with_dropout(M.build_model(arch, num_classes=10), dropout)
    model.arch = arch
    return model


def pretrain_trial(*, arch: str, dropout: float, seed: int, per_class: int, epochs: float, test_images: int) -> dict:
    """One network trained from scratch on the pretraining split (``train.train_victim``); its
    weights and its clean accuracy on the notebook's test images."""
    x, y = _pretraining_set(per_class)
    model = build_network(arch, dropout).to(T.default_device())
    T.train_victim(model, x, y, T.VictimRecipe(epochs=epochs), seed=seed, desc=f"pretrain {arch}")
    test = D.load_cifar10("test")
    idx = _test_indices(len(test.y), test_images)
    acc = T.victim_accuracy(model, T.as_nchw(test.x[idx]), torch.as_tensor(test.y[idx]))
    model = model.cpu().to(memory_format=torch.contiguous_format)
    return {**{f"state.{k}": v.contiguous() for k, v in model.state_dict().items()}, "test_accuracy": torch.tensor(acc)}


def network_specs(cfg) -> list[dict]:
    """Every network of the notebook: role, architecture, dropout and seed. Substitutes: each
    architecture at each dropout; victims without dropout, on seeds the substitutes do not use."""
    specs = [{"role": "substitute", "arch": a, "dropout": p, "seed": cfg.seed + 100 + 10 * i + j}
             for i, a in enumerate(cfg.substitutes) for j, p in enumerate(cfg.dropouts)]
    specs += [{"role": "gray-box", "arch": a, "dropout": 0.0, "seed": cfg.seed + 1000 + i}
              for i, a in enumerate(cfg.graybox_victims)]
    specs += [{"role": "black-box", "arch": a, "dropout": 0.0, "seed": cfg.seed + 2000 + i}
              for i, a in enumerate(cfg.blackbox_victims)]
    return specs


def pretrain_trials(cfg) -> list[Trial]:
    fn = f"{__name__}:pretrain_trial"
    return [Trial("pretrain", fn, {"arch": s["arch"], "dropout": s["dropout"], "seed": s["seed"],
                                                   "per_class": cfg.pretrain_per_class,
                                                   "epochs": cfg.pretrain_epochs, "test_images": cfg.test_images})
            for s in network_specs(cfg)]


def pretrain(cfg, cache: ArtifactCache) -> list[dict]:
    """The networks (``spec`` + ``model`` in eval mode + ``test_accuracy``), pretrained as trials."""
    specs = network_specs(cfg)
    results = run_trials(pretrain_trials(cfg), cache, desc="pretrain networks")
    out = []
    for spec, res in zip(specs, results):
        model = build_network(spec["arch"], spec["dropout"])
        model.load_state_dict({k[len("state."):]: v for k, v in res.items() if k.startswith("state.")})
        out.append({**spec, "model": model.eval(), "test_accuracy": float(res["test_accuracy"])})
    return out


# --------------------------------------------------------------------------- crafting
def _substitutes(networks):
    return [n["model"] for n in networks if n["role"] == "substitute"]


def _multi_layer(model) -> tuple:
    return ("penultimate", M.MID_LAYERS[model.arch])


def _budget(poisons: torch.Tensor, bases: torch.Tensor) -> torch.Tensor:
    """The measured L-inf distance of every poison from its base, [T, k]."""
    return (poisons - bases.unsqueeze(0)).abs().flatten(2).amax(2)


def craft(cfg, data, networks, cache: ArtifactCache) -> dict:
    """Feature-collision and convex-polytope poisons for every target, on the penultimate
    features of the substitutes (the transfer attack)."""
    def run():
        out = {}
        for name in ("feature_collision", "convex_polytope"):
            poisons, result, obj = CP.craft_poisons(
                _substitutes(networks), data["bases"], data["targets"], eps=cfg.eps, steps=cfg.craft_steps,
                lr=cfg.craft_lr, objective=name, seed=cfg.seed, desc=f"craft {name.replace('_', ' ')} poisons")
            out[f"{name}.poisons"] = poisons
            out[f"{name}.loss"] = result.loss_history[0]
            out[f"{name}.linf"] = _budget(poisons, data["bases"])
        return out
    return cache.tensors("craft", _key(cfg, "craft"), run)


def craft_end_to_end(cfg, data, networks, cache: ArtifactCache) -> dict:
    """Multi-layer convex-polytope poisons (Fig. 7) for the first ``e2e_targets`` targets."""
    def run():
        targets = data["targets"][:cfg.e2e_targets]
        poisons, result, _ = CP.craft_poisons(
            _substitutes(networks), data["bases"], targets, eps=cfg.eps, steps=cfg.craft_steps, lr=cfg.craft_lr,
            layers=_multi_layer, seed=cfg.seed, desc="craft multi-layer poisons")
        return {"poisons": poisons, "loss": result.loss_history[0], "linf": _budget(poisons, data["bases"])}
    return cache.tensors("craft_e2e", _key(cfg, "craft_e2e"), run)


# --------------------------------------------------------------------------- victims
def _poisoned_sets(cfg, data, poisons: torch.Tensor) -> torch.Tensor:
    """[T, N, C, H, W] floats: the fine-tuning set with the bases replaced by each target's poisons."""
    fine = T.to_unit(data["fine_x"])
    sets = fine.unsqueeze(0).repeat(len(poisons), 1, 1, 1, 1)
    sets[:, data["base_pos"]] = poisons
    return sets


def _milestones(epochs: int) -> list[int]:
    # the authors' decay at epochs 30 and 45 of 60, scaled to other lengths
    return [max(1, round(epochs * 0.5)), max(1, round(epochs * 0.75))]


def finetune_heads(weight: torch.Tensor, bias, feats: torch.Tensor, labels: torch.Tensor, *, epochs: int,
                   lr: float, batch_size: int, seed: int):
    """The transfer setting for T poisoned sets at once: the victim's last layer (``weight``
    [C, D], ``bias`` [C] or None; not re-initialised) fine-tuned on each set's frozen features
    ``feats`` [T, N, D] with Adam, x0.1 at half and three quarters of the epochs. Returns the
    fine-tuned (weights [T, C, D], biases [T, C] or None)."""
    n_sets, n = feats.shape[:2]
    w = weight.detach().unsqueeze(0).repeat(n_sets, 1, 1).requires_grad_(True)
    b = None if bias is None else bias.detach().unsqueeze(0).repeat(n_sets, 1).requires_grad_(True)
    params = [w] + ([b] if b is not None else [])
    opt = torch.optim.Adam(params, lr=lr)
    sched = torch.optim.lr_scheduler.MultiStepLR(opt, _milestones(epochs), 0.1)
    gen = torch.Generator().manual_seed(seed)
    for _ in range(epochs):
        order = torch.randperm(n, generator=gen)
        for start in range(0, n, batch_size):
            idx = order[start:start + batch_size]
            logits = torch.einsum("tbd,tcd->tbc", feats[:, idx], w) + (0 if b is None else b[:, None])
            loss = F.cross_entropy(logits.flatten(0, 1), labels[idx].repeat(n_sets)) * n_sets
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
        sched.step()
    return w.detach(), None if b is None else b.detach()


def _head(model):
    head = model.head[-1] if isinstance(model.head, torch.nn.Sequential) else model.head
    return head.weight, head.bias


def transfer(cfg, data, networks, poisons: dict, cache: ArtifactCache) -> dict:
    """Every network's last layer fine-tuned on the clean set and on each target's poisoned sets:
    the victims, and the substitutes themselves (white-box, dropout off: does the attack work
    where it was crafted?), in the order of ``networks``.

    Returns ``success`` [networks, methods, T] (target classified as the poison class),
    ``test_accuracy`` [networks, methods, T] of the fine-tuned network, and ``poison_prob``."""
    victims = networks

    def run():
        k = len(data["targets"])
        success = torch.zeros(len(victims), len(METHODS), k, dtype=torch.bool)
        acc = torch.zeros(len(victims), len(METHODS), k)
        prob = torch.zeros(len(victims), len(METHODS), k)
        bar = T.progress(total=len(victims), desc="fine-tune victims' last layer")
        for vi, victim in enumerate(victims):
            model = victim["model"]
            f_fine = T.extract_features(model, T.to_unit(data["fine_x"]))
            f_targets = T.extract_features(model, data["targets"])
            f_test = T.extract_features(model, T.to_unit(data["test_x"]))
            weight, bias = _head(model)
            for mi, method in enumerate(METHODS):
                if method == "clean":
                    feats = f_fine.unsqueeze(0)  # one clean set: the same for every target
                else:
                    p = poisons[f"{method}.poisons"]
                    feats = f_fine.unsqueeze(0).repeat(k, 1, 1)
                    feats[:, data["base_pos"]] = T.extract_features(model, p.flatten(0, 1)).view(k, len(data["base_pos"]), -1)
                w, b = finetune_heads(weight, bias, feats, data["fine_y"], epochs=cfg.retrain_epochs, lr=cfg.retrain_lr,
                                      batch_size=cfg.retrain_batch, seed=cfg.seed + vi)
                logits_t = torch.einsum("td,scd->stc", f_targets, w) + (0 if b is None else b[:, None])
                logits_test = torch.einsum("nd,scd->snc", f_test, w) + (0 if b is None else b[:, None])
                if method == "clean":
                    logits_t = logits_t.expand(k, -1, -1).clone()
                    logits_test = logits_test.expand(k, -1, -1)
                own = logits_t[torch.arange(k), torch.arange(k)] if method != "clean" else logits_t[0]
                success[vi, mi] = own.argmax(-1) == data["poison_label"]
                prob[vi, mi] = own.softmax(-1)[:, data["poison_label"]]
                acc[vi, mi] = (logits_test.argmax(-1) == data["test_y"]).float().mean(-1)
            bar.update(1)
        bar.close()
        return {"success": success, "test_accuracy": acc, "poison_prob": prob}
    return cache.tensors("transfer", _key(cfg, "transfer"), run)


def finetune_end_to_end(model: M.Classifier, images: torch.Tensor, labels: torch.Tensor, *, epochs: int, lr: float,
                        weight_decay: float, batch_size: int, seed: int) -> M.Classifier:
    """The end-to-end setting: every layer fine-tuned with Adam, BatchNorm statistics frozen
    (the authors' network stays in eval mode), x0.1 at half and three quarters of the epochs."""
    model = copy.deepcopy(model).eval()
    T.unfreeze(model)
    opt = torch.optim.Adam(model.parameters(), lr=lr, weight_decay=weight_decay)
    sched = torch.optim.lr_scheduler.MultiStepLR(opt, _milestones(epochs), 0.1)
    gen = torch.Generator().manual_seed(seed)
    for _ in range(epochs):
        order = torch.randperm(len(labels), generator=gen)
        for start in range(0, len(labels), batch_size):
            idx = order[start:start + batch_size]
            loss = F.cross_entropy(model(images[idx]), labels[idx])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
        sched.step()
    return model.eval()


E2E_METHODS = ("clean", "convex_polytope", "multi_layer")


def end_to_end(cfg, data, networks, poisons: dict, e2e_poisons: dict, cache: ArtifactCache) -> dict:
    """Every layer of each ``e2e_victims`` network fine-tuned on the clean set (once), with the
    last-layer poisons and with the multi-layer poisons of the first ``e2e_targets`` targets."""
    victims = [n for n in networks if n["role"] != "substitute" and n["arch"] in cfg.e2e_victims]

    def run():
        k = cfg.e2e_targets
        success = torch.zeros(len(victims), len(E2E_METHODS), k, dtype=torch.bool)
        acc = torch.zeros(len(victims), len(E2E_METHODS), k)
        sets = {"convex_polytope": _poisoned_sets(cfg, data, poisons["convex_polytope.poisons"][:k]),
                "multi_layer": _poisoned_sets(cfg, data, e2e_poisons["poisons"])}
        kw = dict(epochs=cfg.e2e_epochs, lr=cfg.e2e_lr, weight_decay=cfg.e2e_weight_decay,
                  batch_size=cfg.retrain_batch)
        test_x = T.to_unit(data["test_x"])
        bar = T.progress(total=len(victims) * (1 + 2 * k), desc="fine-tune victims end to end")
        for vi, victim in enumerate(victims):
            clean = finetune_end_to_end(victim["model"], T.to_unit(data["fine_x"]), data["fine_y"],
                                        seed=cfg.seed + vi, **kw)
            pred = T.predict_logits(clean, data["targets"][:k]).argmax(-1)
            success[vi, 0] = pred == data["poison_label"]
            acc[vi, 0] = T.evaluate(clean, test_x, data["test_y"])
            bar.update(1)
            for mi, method in enumerate(E2E_METHODS[1:], start=1):
                for ti in range(k):
                    model = finetune_end_to_end(victim["model"], sets[method][ti], data["fine_y"],
                                                seed=cfg.seed + vi, **kw)
                    success[vi, mi, ti] = int(T.predict_logits(model, data["targets"][ti:ti + 1]).argmax(-1)) \
                        == data["poison_label"]
                    acc[vi, mi, ti] = T.evaluate(model, test_x, data["test_y"])
                    bar.update(1)
        bar.close()
        return {"success": success, "test_accuracy": acc}
    return cache.tensors("end_to_end", _key(cfg, "end_to_end"), run)


# --------------------------------------------------------------------------- the 2-D toy (CP-1)
class Points(torch.nn.Module):
    """The identity feature map of the 2-D toy: its "features" are the points themselves."""
    dropout = 0.0

    def features(self, x):
        return x.flatten(1)


def toy(cfg, k: int = 5, eps: float = 0.1, steps: int = 150) -> dict:
    """Fig. 1 as an experiment: two Gaussian classes in the unit square, a linear SVM; for each of
    ``toy_instances`` random targets of class 0 near the boundary, the k nearest class-1 points
    are the bases, crafted into collision and polytope poisons (L-inf budget ``eps``); the SVM is
    refit on the clean points plus the poisons (labelled 1)."""
    from sklearn.svm import SVC
    rng = np.random.default_rng(cfg.seed)
    x0 = rng.normal([0.38, 0.5], 0.05, size=(60, 2))
    x1 = rng.normal([0.62, 0.5], 0.05, size=(60, 2))
    X, y = np.clip(np.vstack([x0, x1]), 0, 1), np.r_[np.zeros(60), np.ones(60)]
    svm = SVC(kernel="linear", C=100).fit(X, y)
    targets = []
    while len(targets) < cfg.toy_instances:
        t = rng.uniform([0.3, 0.35], [0.55, 0.65])
        if svm.predict(t[None])[0] == 0 and -1.5 < svm.decision_function(t[None])[0] < 0:
            targets.append(t)
    targets = np.array(targets)
    bases = np.stack([x1[np.argsort(((x1 - t) ** 2).sum(1))[:k]] for t in targets])
    tt = torch.tensor(targets, dtype=torch.float32)[:, :, None, None]
    bb = torch.tensor(bases, dtype=torch.float32)[:, :, :, None, None]
    out = {"X": X, "y": y, "targets": targets, "bases": bases, "eps": eps, "svm": svm}
    for name in ("feature_collision", "convex_polytope"):
        poisons, _, _ = CP.craft_poisons(Points(), bb, tt, eps=eps, steps=steps, lr=eps / 10, objective=name,
                                         desc=f"toy {name.replace('_', ' ')}")
        poisons = poisons[:, :, :, 0, 0].numpy()
        fits = [SVC(kernel="linear", C=100).fit(np.vstack([X, p]), np.r_[y, np.ones(k)]) for p in poisons]
        out[name] = {"poisons": poisons, "svms": fits,
                     "flipped": np.array([f.predict(t[None])[0] == 1 for f, t in zip(fits, targets)])}
    return out


# --------------------------------------------------------------------------- plan
def plan(cfg) -> list[dict]:
    """The stages this notebook runs at ``cfg``, for ``make plan``; runs nothing. FLOPs from
    ``poisonrepro.plan`` (FlopCounterMode on one 32x32 image, forward and backward)."""
    P = importlib.import_module("poisonrepro.plan")
    shape = (3, 32, 32)
    rows = []
    n_pre = 10 * cfg.pretrain_per_class
    for spec in network_specs(cfg):
        model = build_network(spec["arch"], spec["dropout"])
        rows.append({"stage": f"pretrain ({spec['role']} {spec['arch']})", "trials": 1,
                     "flops_per_trial": float(P.model_train_flops(model, shape, n_pre * cfg.pretrain_epochs)),
                     "basis": f"{n_pre} images x {cfg.pretrain_epochs} epochs"})
    subs = [build_network(a, 0.0) for a in cfg.substitutes for _ in cfg.dropouts]
    per_step = sum(P.model_train_flops(m, shape, cfg.n_poisons) for m in subs)
    rows.append({"stage": "craft (collision and polytope)", "trials": 2 * cfg.n_targets,
                 "flops_per_trial": float(per_step * cfg.craft_steps),
                 "basis": f"per target: {cfg.craft_steps} steps on {cfg.n_poisons} poisons x {len(subs)} substitutes"})
    if cfg.e2e_targets:
        rows.append({"stage": "craft_e2e (multi-layer)", "trials": cfg.e2e_targets,
                     "flops_per_trial": float(per_step * cfg.craft_steps), "basis": "as craft"})
        n_fine = 10 * cfg.finetune_per_class
        for arch in cfg.e2e_victims:
            rows.append({"stage": f"end_to_end ({arch})", "trials": 1 + 2 * cfg.e2e_targets,
                         "flops_per_trial": float(P.model_train_flops(build_network(arch, 0.0), shape,
                                                                      n_fine * cfg.e2e_epochs)),
                         "basis": f"{n_fine} images x {cfg.e2e_epochs} epochs, every layer"})
    return rows
