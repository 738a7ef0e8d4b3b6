"""``python -m poisonrepro.bench``: how fast this machine trains victims and crafts poisons.

Everything is timed with ``torch.utils.benchmark`` (warm-up, then repeats until the
measurement is stable; the median is reported), in one run, so the percentages are of the
peak measured on the same machine at the same time:

0. the host: its processor, torch's CPU capability, and the precision ``auto`` trains in
   (``poisonrepro.precision``: bf16 autocast where the processor computes bf16 natively);
1. the matrix-multiply peak (GFLOP/s) in fp32, and in bf16 where it is native: the best of
   square matmuls of 1024-4096;
2. for each victim architecture and precision: training images/s at the recipe's batch size
   (one SGD step of ``train.train_victim``: forward, backward, update, on channels-last
   batches), GFLOP per training image (``torch.utils.flop_counter`` on that step: forward and
   backward), and the percentage of the same precision's peak those make;
3. time to accuracy: ``train.train_victim`` from scratch on all of CIFAR-10 with a stated
   budget of epochs, in each precision, then the test accuracy (flip test-time augmentation)
   on its 10,000 test images; each row is checked against the goals (``GOALS``: >= 80% in
   <= 30 s and >= 85% in <= 120 s on the reference host, an Intel Xeon with AMX whose fp32
   peak is ``REFERENCE_PEAK_GFLOPS``; elsewhere the seconds are scaled by that peak over this
   host's), and each victim's throughput against ``PEAK_SHARE_GOAL`` of the peak;
4. crafting throughput (poison-steps/s) of every attack on ``attacks.crafting.craft_perturbations``,
   each called through its own module: gradient matching (Witches' Brew), convex polytope,
   the clean-label and hidden-trigger backdoors and MetaPoison, on ConvNet-BN surrogates
   (``crafting_throughputs``; plain wall-clock time, a warm-up step first).

``--quick`` shrinks everything to seconds (the tests run it); ``--no-accuracy`` skips 3.
``--many`` times instead ``train.train_many`` against a Python loop of ``train.train_classifier``
on the same work (many linear heads on frozen features; a few small ConvNets). ``--dpa`` times
Deep Partition Aggregation's batched training of base classifiers against the same partitions
trained one at a time, on notebook 10's ``cpu`` workload (one pass of partitions, one epoch).
"""
from __future__ import annotations

import argparse
import copy
import os
import time

import torch
import torch.nn.functional as F
import torch.utils.benchmark as benchmark
from torch.utils.flop_counter import FlopCounterMode

from . import models
from . import train as T
from .precision import describe, native_bf16

#: the victims of the deep-net notebooks at the ``cpu`` profile (stand-ins) and their budgets
#: (epochs) for the time-to-accuracy rows
VICTIMS = ("convnet_bn", "resnet18_standin", "mobilenet_v2_standin", "vgg11_standin",
           "efficientnet_b1_standin", "regnetx_1_6gf_standin")
#: the goals of issue 23 on the reference host: (seconds, test accuracy) for a from-scratch
#: CIFAR-10 victim on all 50,000 images, and the share of the peak a victim's training should use
GOALS = ((30.0, 0.80), (120.0, 0.85))
PEAK_SHARE_GOAL = 0.5
#: the fp32 matmul peak of the host the goals were set on (Intel Xeon with AVX-512 and AMX, 2
#: cores, measured by this bench on 2026-11-23)
REFERENCE_PEAK_GFLOPS = 431.0


def _timer(stmt, glob, min_run_time):
    return benchmark.Timer(stmt=stmt, globals=glob, num_threads=torch.get_num_threads()).blocked_autorange(
        min_run_time=min_run_time)


def matmul_peak(sizes=(1024, 2048, 4096), min_run_time: float = 1.0, device: str = "cpu",
                dtype: torch.dtype = torch.float32) -> dict:
    """The best GFLOP/s of ``a @ b`` in ``dtype`` over square sizes (2 n^3 FLOPs each)."""
    best = {"gflops": 0.0, "n": 0}
    for n in sizes:
        a, b = (torch.randn(n, n, device=device).to(dtype) for _ in range(2))
        m = _timer("a @ b", {"a": a, "b": b}, min_run_time)
        g = 2 * n ** 3 / m.median / 1e9
        if g > best["gflops"]:
            best = {"gflops": g, "n": n}
    return best


def _training_step(model, recipe: T.VictimRecipe, batch, precision: str | None = None):
    """One step of ``train_victim`` (``train.victim_step``) on a fixed uint8 batch."""
    gen = torch.Generator().manual_seed(0)
    if recipe.channels_last:
        model = model.to(memory_format=torch.channels_last)
    model.train()
    opt = T._victim_optimizer(model, recipe)
    return lambda: T.victim_step(model, opt, *batch, recipe, gen, precision=precision)


def training_flops_per_image(model, batch) -> float:
    """FLOPs of one forward and backward pass, per image (``FlopCounterMode``)."""
    xb, yb = batch
    with FlopCounterMode(display=False) as counter:
        F.cross_entropy(model(T.to_unit(xb)), yb).backward()
    model.zero_grad(set_to_none=True)
    return counter.get_total_flops() / len(yb)


def victim_throughput(name: str, recipe: T.VictimRecipe, peak_gflops: float, min_run_time: float = 2.0,
                      device: str = "cpu", precision: str = "fp32") -> dict:
    torch.manual_seed(0)
    model = models.build_model(name).to(device)
    gen = torch.Generator().manual_seed(0)
    batch = (torch.randint(0, 256, (recipe.batch_size, 3, 32, 32), dtype=torch.uint8, generator=gen).to(device),
             torch.randint(0, 10, (recipe.batch_size,), generator=gen).to(device))
    flops = training_flops_per_image(model, batch)
    step = _training_step(model, recipe, batch, precision)
    for _ in range(3):  # warm-up (oneDNN picks its kernels on the first calls)
        step()
    m = _timer("step()", {"step": step}, min_run_time)
    ips = recipe.batch_size / m.median
    return {"victim": models.display_name(name), "precision": precision, "images_per_s": ips,
            "gflop_per_image": flops / 1e9, "gflops": ips * flops / 1e9,
            "pct_of_peak": 100 * ips * flops / 1e9 / peak_gflops}


def time_to_accuracy(name: str, recipe: T.VictimRecipe, train_set, test_set, seed: int = 0,
                     model_kwargs: dict | None = None, precision: str = "fp32") -> dict:
    """Wall time of ``train_victim`` from scratch with ``recipe`` (data already in memory) in
    ``precision``, and the test accuracy it reaches."""
    torch.manual_seed(seed)
    model = models.build_model(name, **(model_kwargs or {}))
    t0 = _clock()
    T.train_victim(model, *train_set, recipe, seed=seed, precision=precision)
    seconds = _clock() - t0
    return {"victim": models.display_name(name), "epochs": recipe.epochs, "batch_size": recipe.batch_size,
            "whitened": recipe.whiten, "precision": precision, "seconds": seconds,
            "test_accuracy": T.victim_accuracy(model, *test_set)}


def goal_checks(result: dict) -> list[str]:
    """Each goal, met or missed by a stated margin: for each accuracy goal the fastest row that
    reaches it (or the best accuracy reached), and for the victims the share of the peak."""
    scale = REFERENCE_PEAK_GFLOPS / result["peak"]["gflops"]
    lines = [f"goals (issue 23), seconds scaled by the reference host's fp32 peak over this host's: x{scale:.2f}"]
    rows = result.get("accuracy", [])
    for seconds, acc in GOALS:
        budget = seconds * scale
        reached = [r for r in rows if r["test_accuracy"] >= acc]
        if reached:
            best = min(reached, key=lambda r: r["seconds"])
            verdict = "met" if best["seconds"] <= budget else "missed"
            lines.append(f"- >= {acc:.0%} in <= {budget:.0f} s: {verdict} ({best['victim']}, {best['epochs']:g} epochs, "
                         f"{best['precision']}: {100 * best['test_accuracy']:.1f}% in {best['seconds']:.0f} s, "
                         f"{best['seconds'] - budget:+.0f} s against the goal)")
        elif rows:
            best = max(rows, key=lambda r: r["test_accuracy"])
            lines.append(f"- >= {acc:.0%} in <= {budget:.0f} s: missed (no budget reached it; the best: "
                         f"{100 * best['test_accuracy']:.1f}% in {best['seconds']:.0f} s)")
    for r in result["throughput"]:
        share = r["pct_of_peak"] / 100
        lines.append(f"- {r['victim']} ({r['precision']}) at >= {PEAK_SHARE_GOAL:.0%} of the {r['precision']} peak: "
                     f"{'met' if share >= PEAK_SHARE_GOAL else 'missed'} ({share:.0%})")
    return lines


def _clock() -> float:
    """``time.perf_counter`` after the GPU's queued work, if any, has finished."""
    if torch.cuda.is_initialized():
        torch.cuda.synchronize()
    return time.perf_counter()


def _timed(craft, n_poisons: int, steps: int, name: str) -> dict:
    """Poison-steps/s of ``craft(steps)``: one step first as a warm-up, then ``steps`` timed."""
    craft(1)
    t0 = _clock()
    craft(steps)
    seconds = _clock() - t0
    return {"objective": name, "poisons": n_poisons, "steps": steps, "seconds": seconds,
            "poison_steps_per_s": n_poisons * steps / seconds}


def crafting_throughputs(n_poisons: int = 250, steps: int = 8, batch_size: int = 125, quick: bool = False) -> list[dict]:
    """Poison-steps/s of every attack on the crafting loop, each called through its own module
    with its paper's step rule, on untrained ConvNet-BN surrogates in eval mode and random
    CIFAR-size images (timing only). One poison-step: one poison through one step of its
    objective, for every surrogate the attack uses here (one, or three for Convex Polytope as in
    notebook 02's ``cpu`` profile; MetaPoison: K = 2 unrolled steps on M = 2 staggered members
    and their advance by one epoch)."""
    from .attacks import clean_label_backdoor as CLBD, convex_polytope as CP, hidden_trigger_backdoor as HTBD
    from .attacks import metapoison as MP, witches_brew as WB
    from .triggers import make_patch
    torch.manual_seed(0)
    net = models.build_model("convnet_bn").eval()
    gen = torch.Generator().manual_seed(0)
    x = torch.rand(n_poisons, 3, 32, 32, generator=gen)
    y = torch.full((n_poisons,), 8)
    targets = torch.rand(max(1, n_poisons // 5), 3, 32, 32, generator=gen)
    patch = make_patch(5, seed=0)
    rows = [
        _timed(lambda k: WB.craft_poisons([net], x, y, targets[:1], 3, eps=16 / 255, steps=k, restarts=1,
                                          batch_size=batch_size, seed=0), n_poisons, steps,
               "gradient matching (Witches' Brew), 1 surrogate"),
        _timed(lambda k: CP.craft_poisons([net, copy.deepcopy(net), copy.deepcopy(net)], x[:5], targets,
                                          steps=k), 5 * len(targets), steps,
               "convex polytope (Zhu et al.), 3 surrogates"),
        _timed(lambda k: CLBD.craft_poisons(net, x, y, patch, steps=k), n_poisons, steps,
               "clean-label backdoor (PGD), 1 surrogate"),
        _timed(lambda k: HTBD.craft_poisons(net, x, targets.repeat(5, 1, 1, 1)[:n_poisons], patch, steps=k,
                                            step_rule="pgd", lr=1 / 255), n_poisons, steps,
               "hidden-trigger backdoor, 1 surrogate"),
    ]
    n_train = 250 if quick else 2500
    images = torch.randint(0, 256, (n_train, 3, 32, 32), generator=gen, dtype=torch.uint8)
    labels = torch.arange(n_train) % 10
    n_mp = min(n_poisons, 25)
    poison_idx = (labels == 5).nonzero().flatten()[:n_mp]

    def metapoison(k):  # fresh, untrained members (no staggered pretraining: timing only)
        ensemble = MP.StaggeredEnsemble(models.convnet_bn, images, labels, members=2, poison_indices=poison_idx,
                                        pretrain=False, seed=0)
        MP.metapoison(images, labels, poison_idx, targets[0], target_class=2, ensemble=ensemble, unroll_steps=2,
                      steps=k, seed=0)
    rows.append(_timed(metapoison, n_mp, max(1, steps // 4), "MetaPoison, K = 2, M = 2 staggered surrogates"))
    return rows


def _cifar(quick: bool):
    from . import data as D
    tr, te = D.load_cifar10("train"), D.load_cifar10("test")
    if quick:
        return (tr.x[::25], tr.y[::25]), (te.x[::10], te.y[::10]), tr.source  # every class
    return (tr.x, tr.y), (te.x, te.y), tr.source


def precisions() -> tuple[str, ...]:
    """The precisions this host can train in at speed: fp32, and bf16 where it is native."""
    return ("fp32", "bf16") if native_bf16("cpu") else ("fp32",)


def run(quick: bool = False, accuracy: bool = True, victims=VICTIMS) -> dict:
    from .notebook import cpu_model
    os.environ["POISONREPRO_PROGRESS"] = "0"  # bars would cost time
    recipe = T.VictimRecipe()
    mrt = 0.2 if quick else 2.0
    sizes = (256, 512) if quick else (1024, 2048, 4096)
    peak = matmul_peak(sizes, min_run_time=mrt)
    peaks = {"fp32": peak}
    if "bf16" in precisions():
        peaks["bf16"] = matmul_peak(sizes, min_run_time=mrt, dtype=torch.bfloat16)
    out = {"threads": torch.get_num_threads(), "peak": peak, "peaks": peaks, "cpu": cpu_model(),
           "precision": describe("cpu"),
           "throughput": [victim_throughput(v, recipe, peaks[p]["gflops"], mrt, precision=p)
                          for v in victims for p in precisions()],
           "crafting": crafting_throughputs(*((20, 2, 10) if quick else (250, 8, 125)), quick=quick)}
    if accuracy:
        train_set, test_set, source = _cifar(quick)
        out["data"] = source
        out["accuracy"] = [time_to_accuracy(v, _recipe(r, quick), train_set, test_set, model_kwargs=m, precision=p)
                           for v, m, r in VICTIM_BUDGETS if v in victims for p in precisions()]
    return out


#: (victim, model kwargs, recipe kwargs): the ConvNet-BN at budgets around the two goals (the
#: short one whitened, with batches of 128: more steps in one epoch), each stand-in at one epoch
SHORT = dict(epochs=1.0, batch_size=128, whiten=True)
VICTIM_BUDGETS = (("convnet_bn", dict(stem=24), SHORT), ("convnet_bn", {}, dict(epochs=4.0)),
                  ("convnet_bn", {}, dict(epochs=10.0)),
                  *((v, {}, dict(epochs=1.0)) for v in VICTIMS[1:]))


def _recipe(kwargs: dict, quick: bool) -> T.VictimRecipe:
    return T.VictimRecipe(**dict(kwargs, epochs=0.05) if quick else kwargs)


def report(result: dict) -> str:
    lines = [f"{result['cpu']}; torch {torch.__version__}, {result['threads']} threads",
             f"training precision in force: {result['precision']}",
             "matmul peak: " + ", ".join(f"{k} {v['gflops']:.0f} GFLOP/s (n = {v['n']})"
                                         for k, v in result["peaks"].items()), "",
             "| victim | precision | images/s | GFLOP per training image | GFLOP/s | % of that precision's peak |",
             "|---|---|---|---|---|---|"]
    for r in result["throughput"]:
        lines.append(f"| {r['victim']} | {r['precision']} | {r['images_per_s']:,.0f} | "
                     f"{r['gflop_per_image']:.3f} | {r['gflops']:.0f} | {r['pct_of_peak']:.0f}% |")
    lines += ["", "crafting (ConvNet-BN surrogates, untrained; timing only):", "",
              "| attack | poisons | steps | poison-steps/s |", "|---|---|---|---|"]
    for c in result["crafting"]:
        lines.append(f"| {c['objective']} | {c['poisons']} | {c['steps']} | {c['poison_steps_per_s']:,.1f} |")
    if "accuracy" in result:
        lines += ["", f"time to accuracy, from scratch on all of {result['data']}, test accuracy with flip TTA:", "",
                  "| victim | precision | epochs | batch | seconds | test accuracy |", "|---|---|---|---|---|---|"]
        for r in result["accuracy"]:
            name = r["victim"] + (" (whitened stem)" if r["whitened"] else "")
            lines.append(f"| {name} | {r['precision']} | {r['epochs']:g} | {r['batch_size']} | "
                         f"{r['seconds']:.0f} | {100 * r['test_accuracy']:.1f}% |")
    lines += ["", *goal_checks(result)]
    return "\n".join(lines)


#: the full-size victims of the ``paper`` profiles
PAPER_VICTIMS = ("convnet_bn", "resnet18", "mobilenet_v2", "vgg11", "efficientnet_b1", "regnetx_1_6gf")
#: the victim recipe of "Just How Toxic" (from scratch): batch 128, lr 0.1, wd 2e-4, crop with
#: 4-pixel padding and flips; our schedule (linear) and label smoothing in place of its steps
JUST_HOW_TOXIC = dict(batch_size=128, lr=0.1, weight_decay=2e-4, crop_pad=4, label_smoothing=0.0)


def plan_check(device: str = "cuda", victims=PAPER_VICTIMS, epochs: float = 0.0, quick: bool = False) -> dict:
    """What ``make plan`` assumes against what this machine does, for the ``paper`` profiles:

    - each full-size victim's training images/s (``train_victim``'s step at batch 128) against
      the plan's rate, its sustained FLOP/s over 3 x the forward FLOPs per image;
    - gradient matching (Witches' Brew, ResNet-18, 500 poisons in one batch as in the benchmark)
      in poison-steps/s against the plan's rate (4 passes per poison-step);
    - with ``epochs`` > 0: ResNet-18 trained from scratch on all of CIFAR-10 with the
      "Just How Toxic" recipe for that many epochs, the wall time and the test accuracy.
    The ratio measured / assumed is how far the plan's hours are from this machine's."""
    from . import plan as P
    from .attacks import witches_brew as WB
    os.environ["POISONREPRO_PROGRESS"] = "0"
    fps = P.gpu_throughput().flops_per_second
    mrt = 0.2 if quick else 2.0
    peak = matmul_peak((256,) if quick else (4096, 8192), min_run_time=mrt, device=device)
    recipe = T.VictimRecipe(**JUST_HOW_TOXIC)
    rows = []
    for name in victims:
        r = victim_throughput(name, recipe, peak["gflops"], mrt, device=device)
        forward = P.model_forward_flops(models.build_model(name), P.CIFAR_IMAGE)
        assumed = fps / (P.TRAIN_PASSES * forward)
        rows.append(dict(r, assumed_images_per_s=assumed, ratio=r["images_per_s"] / assumed))
    torch.manual_seed(0)
    net = models.build_model("resnet18").to(device).eval()
    n = 20 if quick else 500
    gen = torch.Generator().manual_seed(0)
    x, y = torch.rand(n, 3, 32, 32, generator=gen), torch.full((n,), 8)
    target = torch.rand(1, 3, 32, 32, generator=gen)
    steps = 1 if quick else 4
    craft = _timed(lambda k: WB.craft_poisons([net], x, y, target, 3, eps=8 / 255, steps=k, restarts=1,
                                              batch_size=n, seed=0), n, steps, "gradient matching, ResNet-18")
    resnet18_forward = P.model_forward_flops(models.build_model("resnet18"), P.CIFAR_IMAGE)
    assumed = fps / (4 * resnet18_forward)
    craft.update(assumed_poison_steps_per_s=assumed, ratio=craft["poison_steps_per_s"] / assumed)
    out = {"device": torch.cuda.get_device_name(device) if device.startswith("cuda") else device,
           "torch": torch.__version__, "assumed_tflops": fps / 1e12, "peak": peak, "victims": rows, "crafting": craft}
    if epochs:
        train_set, test_set, source = _cifar(quick)
        model = models.build_model("resnet18").to(device)
        t0 = _clock()
        T.train_victim(model, *train_set, T.VictimRecipe(epochs=epochs, **JUST_HOW_TOXIC), seed=0)
        seconds = _clock() - t0
        out["training"] = {"victim": "ResNet-18", "data": source, "epochs": epochs, "images": len(train_set[1]),
                           "seconds": seconds, "test_accuracy": T.victim_accuracy(model, *test_set),
                           "assumed_seconds": P.TRAIN_PASSES * resnet18_forward * epochs * len(train_set[1]) / fps}
        out["paper_stage"] = paper_stage_check(epochs, fps, quick)
    return out


def paper_stage_check(epochs: float, fps: float, quick: bool = False) -> dict:
    """Part of notebook 02's ``paper`` profile on ``train.default_device()``: its first
    pretraining trial (ResNet-18, 4,800 images per class) for ``epochs`` of its 300 epochs,
    against ``make plan``'s row for that stage scaled to the same epochs."""
    from .config import load_config
    from .papers.convex_polytope import experiments as E
    cfg = load_config("convex_polytope", "paper")
    spec = E.network_specs(cfg)[0]
    per_class = 50 if quick else cfg.pretrain_per_class
    t0 = _clock()
    res = E.pretrain_trial(arch=spec["arch"], dropout=spec["dropout"], seed=spec["seed"], per_class=per_class,
                           epochs=epochs, test_images=cfg.test_images)
    seconds = _clock() - t0
    rows = E.plan(cfg)
    out = {"stage": rows[0]["stage"], "notebook": "02_convex_polytope", "epochs": epochs,
           "paper_epochs": cfg.pretrain_epochs, "per_class": per_class, "seconds": seconds,
           "assumed_seconds": rows[0]["flops_per_trial"] * (epochs / cfg.pretrain_epochs)
                              * (per_class / cfg.pretrain_per_class) / fps,
           "test_accuracy": float(res["test_accuracy"])}
    # the crafting stage: its 9 substitutes (untrained: timing only), all targets at once as the
    # notebook crafts them, random images
    from .attacks import convex_polytope as CP
    device = T.default_device()
    subs = [E.build_network(a, p).to(device) for a in cfg.substitutes for p in cfg.dropouts]
    gen = torch.Generator().manual_seed(0)
    n_targets = 2 if quick else cfg.n_targets
    bases, targets = torch.rand(cfg.n_poisons, 3, 32, 32, generator=gen), torch.rand(n_targets, 3, 32, 32, generator=gen)
    steps = 2 if quick else 20
    timed = _timed(lambda k: CP.craft_poisons(subs, bases, targets, eps=cfg.eps, steps=k, lr=cfg.craft_lr),
                   n_targets * cfg.n_poisons, steps, "convex polytope")
    craft_row = next(r for r in rows if r["stage"].startswith("craft ("))
    out["craft"] = {"stage": craft_row["stage"], "targets": n_targets, "steps": steps,
                    "paper_steps": cfg.craft_steps, "substitutes": len(subs), "seconds": timed["seconds"],
                    "assumed_seconds": craft_row["flops_per_trial"] * n_targets * steps / cfg.craft_steps / fps}
    return out


def plan_check_report(r: dict) -> str:
    lines = [f"{r['device']}, torch {r['torch']}: fp32 matmul peak {r['peak']['gflops'] / 1e3:.1f} TFLOP/s; "
             f"`make plan` assumes {r['assumed_tflops']:.0f} TFLOP/s sustained", "",
             "| victim (batch 128) | images/s measured | images/s assumed by the plan | measured / assumed |",
             "|---|---|---|---|"]
    lines += [f"| {v['victim']} | {v['images_per_s']:,.0f} | {v['assumed_images_per_s']:,.0f} | {v['ratio']:.2f} |"
              for v in r["victims"]]
    c = r["crafting"]
    lines += ["", "| crafting | poison-steps/s measured | assumed | measured / assumed |", "|---|---|---|---|",
              f"| {c['objective']} ({c['poisons']} poisons, {c['steps']} steps) | {c['poison_steps_per_s']:,.0f} | "
              f"{c['assumed_poison_steps_per_s']:,.0f} | {c['ratio']:.2f} |"]
    if "training" in r:
        t = r["training"]
        lines += ["", f"{t['victim']} from scratch on {t['data']} ({t['images']:,} images), {t['epochs']:g} epochs "
                      f"(Just How Toxic recipe): {t['seconds']:.1f} s measured, {t['assumed_seconds']:.1f} s assumed "
                      f"by the plan; test accuracy {100 * t['test_accuracy']:.1f}%"]
    if "paper_stage" in r:
        t = r["paper_stage"]
        lines += ["", f"`{t['notebook']}` at `paper`, stage {t['stage']}: {t['epochs']:g} of its {t['paper_epochs']} "
                      f"epochs on {10 * t['per_class']:,} images: {t['seconds']:.1f} s measured (data loading "
                      f"included), {t['assumed_seconds']:.1f} s assumed by the plan; test accuracy "
                      f"{100 * t['test_accuracy']:.1f}%"]
        c = t["craft"]
        lines += ["", f"`{t['notebook']}` at `paper`, stage {c['stage']} (convex polytope): {c['steps']} of its "
                      f"{c['paper_steps']:,} steps for {c['targets']} targets x 5 poisons on {c['substitutes']} "
                      f"substitutes: {c['seconds']:.1f} s measured, {c['assumed_seconds']:.2f} s assumed by the plan"]
    return "\n".join(lines)


def bench_many_case(name, make, x, y, k, epochs, batch_size, lr=1e-3) -> dict:
    """``train_many`` of k models against a loop of ``train_classifier`` on the same work."""
    def clock(fn):
        t0 = time.perf_counter()
        fn()
        return time.perf_counter() - t0
    torch.manual_seed(0)
    nets = [make() for _ in range(k)]
    sets = [torch.arange(len(y))] * k
    t_many = clock(lambda: T.train_many(nets, x, y, sets, epochs=epochs, lr=lr, batch_size=batch_size))
    t_loop = clock(lambda: [T.train_classifier(copy.deepcopy(n), x, y, epochs=epochs, lr=lr,
                                               batch_size=batch_size) for n in nets])
    return {"case": name, "models": k, "loop_s": t_loop, "train_many_s": t_many, "speed_up": t_loop / t_many}


def run_many(quick: bool = False) -> str:
    os.environ["POISONREPRO_PROGRESS"] = "0"
    n, epochs = (300, 2) if quick else (1000, 5)
    torch.manual_seed(0)
    feats, yb = torch.randn(n, 2048), torch.randint(0, 2, (n,))
    imgs, y10 = torch.rand(n, 3, 32, 32), torch.randint(0, 10, (n,))
    rows = [bench_many_case("linear heads on 2048-d features, batch 32", lambda: torch.nn.Linear(2048, 2),
                            feats, yb, 50, epochs, 32, lr=0.01),
            bench_many_case("ConvNet-16 on 32x32 images, batch 128", lambda: models.convnet(10, width=16),
                            imgs, y10, 4, epochs, 128)]
    lines = [f"torch threads: {torch.get_num_threads()}; {n} examples, {epochs} epochs",
             "| case | models | Python loop (s) | train_many (s) | speed-up |", "|---|---|---|---|---|"]
    lines += [f"| {r['case']} | {r['models']} | {r['loop_s']:.2f} | {r['train_many_s']:.2f} | {r['speed_up']:.2f}x |"
              for r in rows]
    return "\n".join(lines)


def dpa_case(dataset: str, k: int, epochs: int = 1, quick: bool = False) -> dict:
    """One batched pass of notebook 10's ``cpu`` workload (its first ``images_per_pass`` worth of
    partitions) against the same partitions trained alone in a loop: the same computation, each
    base classifier a function of its own partition (``dpa.train_base_classifiers``). Timed with
    ``torch.utils.benchmark`` (one run each: a run is seconds long)."""
    from .config import load_config
    from .defenses import dpa
    from .papers.dpa import experiments as E
    cfg = load_config("dpa", "smoke" if quick else "cpu")
    spec = E._spec(cfg, dataset, k)
    d = E.dataset(dataset, spec["n_train"], spec["n_test"])
    parts = dpa.partitions(d["x"], d["y"], k)
    r = E.recipe(epochs, spec["batch_size"], spec["lr"], dataset)
    per_step = min(r.batch_size, max(len(p) for p in parts))
    ids = list(range(min(k, max(1, spec["images_per_pass"] // per_step))))
    make = lambda: E.base_network(d["x"].shape[1], spec["width"])  # noqa: E731
    glob = {"dpa": dpa, "make": make, "x": d["x"], "y": d["y"], "parts": parts, "r": r, "ids": ids}
    batched = benchmark.Timer("dpa.train_base_classifiers(make, x, y, parts, r, ids=ids)", globals=glob).timeit(1).median
    loop = benchmark.Timer("[dpa.train_base_classifiers(make, x, y, parts, r, ids=[i]) for i in ids]",
                           globals=glob).timeit(1).median
    return {"case": f"{dataset} k={k}", "partitions": len(ids), "images": sum(len(parts[i]) for i in ids),
            "epochs": epochs, "loop_s": loop, "batched_s": batched, "speed_up": loop / batched}


def run_dpa(quick: bool = False) -> str:
    os.environ["POISONREPRO_PROGRESS"] = "0"
    cases = [("cifar", 2), ("mnist", 2)] if quick else [("cifar", 50), ("cifar", 1000), ("mnist", 100)]
    rows = [dpa_case(d, k, quick=quick) for d, k in cases]
    lines = [f"torch threads: {torch.get_num_threads()}",
             "| workload | partitions in the pass | images | Python loop (s) | batched (s) | speed-up |",
             "|---|---|---|---|---|---|"]
    lines += [f"| {r['case']}, {r['epochs']} epoch | {r['partitions']} | {r['images']:,} | {r['loop_s']:.2f} | "
              f"{r['batched_s']:.2f} | {r['speed_up']:.2f}x |" for r in rows]
    return "\n".join(lines)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="tiny sizes (seconds; numbers mean nothing)")
    ap.add_argument("--no-accuracy", action="store_true", help="skip the time-to-accuracy runs")
    ap.add_argument("--victims", default=",".join(VICTIMS), help="comma-separated victim names")
    ap.add_argument("--many", action="store_true", help="train_many against a loop of train_classifier")
    ap.add_argument("--dpa", action="store_true", help="DPA's batched base classifiers against a loop (notebook 10)")
    ap.add_argument("--plan-check", action="store_true",
                    help="the paper profiles' victims and crafting on --device against make plan's assumed rate")
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu", help="for --plan-check")
    ap.add_argument("--epochs", type=float, default=0.0,
                    help="for --plan-check: also train a ResNet-18 victim on CIFAR-10 for this many epochs")
    args = ap.parse_args(argv)
    if args.plan_check:
        result = plan_check(args.device, epochs=args.epochs, quick=args.quick)
        print(plan_check_report(result))
        return result
    if args.many:
        print(run_many(args.quick))
        return None
    if args.dpa:
        print(run_dpa(args.quick))
        return None
    victims = tuple(v for v in args.victims.split(",") if v)
    unknown = [v for v in victims if v not in models.MODELS]
    if unknown:
        ap.error(f"unknown victim(s) {', '.join(unknown)}; allowed: {', '.join(VICTIMS)}")
    result = run(quick=args.quick, accuracy=not args.no_accuracy, victims=victims)
    print(report(result))
    return result


if __name__ == "__main__":
    main()
