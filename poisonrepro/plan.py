"""``make plan PROFILE=paper``: each notebook's trials and an estimate of its GPU hours.

GPU hours come from FLOPs and one stated throughput:

- **FLOPs per trial.** A notebook that is built says what it runs: its experiments module's
  ``plan(cfg)`` returns one row per stage, ``{"stage", "trials", "flops_per_trial", "basis"}``.
  For a notebook not built yet, its paper's own package may hold the rows of the paper's settings
  as the paper and its official code give them (each row cites its table or repository):
  ``poisonrepro/papers/<paper>/paper_settings.py`` with ``ROWS`` (each made by ``settings_row``)
  and, where the rows leave a cost out, ``PARTIAL``. It is found by name, so that adding or
  building a paper never edits this module; once the notebook exists its ``plan(cfg)`` takes
  over. A settings row counts the
  architecture's FLOPs per image, counted here with ``torch.utils.flop_counter.FlopCounterMode``
  on the project's model (``poisonrepro.models``) at 32x32, times 3 for a forward and backward
  pass, times the images each trial processes. Where neither gives a setting, the row says
  ``unknown``; a notebook whose rows leave out a known cost shows its hours as a lower bound
  (``>=``).
- **Throughput of one modern GPU.** airbench94 (K. Jordan, "94% on CIFAR-10 in 3.29 Seconds on
  a Single GPU", arXiv:2404.00498, 2024) trains its 8-layer network to 94% on CIFAR-10 in
  3.29 s on one NVIDIA A100 (its repository's README puts that run at 0.36 PFLOPs). That
  network is defined here (``airbench94_net``) and counted the same way as every other
  (``model_train_flops``: 9.9 epochs of 50,000 images); its FLOPs over 3.29 s are the sustained
  throughput assumed for every trial. airbench's pipeline is tuned to the limit (fp16,
  channels-last, data on the GPU, torch.compile): ordinary training code reaches a fraction of
  it, so these hours are a floor, not a forecast. ``python -m poisonrepro.bench --plan-check``
  measures how far: on an H100 (README, "How long the paper profile takes") ResNet-18 and VGG-11
  trained at 0.2-0.4 of this rate, the small and depthwise networks at batch 128 at 0.01-0.03.

Totals are given for 1 GPU and for 64: the 64-GPU time is the 1-GPU total over 64, but never
less than the longest chain of trials that must run one after another. The chain assumes each
stage of a notebook may need the previous stage's results, so a notebook's chain is the sum of
its stages' longest trials.
"""
from __future__ import annotations

import argparse
import importlib
import importlib.util
import sys
from dataclasses import dataclass

import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from . import catalog
from .config import ConfigError, check_profile, load_config

CIFAR_IMAGE = (3, 32, 32)
TRAIN_PASSES = 3.0  # a backward pass costs about twice the forward


# --------------------------------------------------------------------------- counting
def model_forward_flops(model: nn.Module, input_shape: tuple) -> float:
    """FLOPs of one forward pass of one image (``FlopCounterMode``: a multiply-add counts 2;
    convolutions and matrix products, which dominate, and nothing else)."""
    was_training = model.training
    model.eval()  # batch norm with a batch of one
    try:
        with torch.no_grad(), FlopCounterMode(display=False) as counter:
            model(torch.zeros(1, *input_shape))
    finally:
        model.train(was_training)
    return float(counter.get_total_flops())


def model_train_flops(model: nn.Module, input_shape: tuple, images: float, *, passes: float = TRAIN_PASSES) -> float:
    """FLOPs of training on ``images`` images (epochs x images per epoch): forward x ``passes``."""
    return model_forward_flops(model, input_shape) * passes * images


# --------------------------------------------------------------------------- the throughput
class _ConvBlock(nn.Sequential):
    """airbench94's block: conv, max-pool 2, batch norm, GELU, conv, batch norm, GELU."""

    def __init__(self, c_in: int, c_out: int):
        super().__init__(nn.Conv2d(c_in, c_out, 3, padding=1, bias=False), nn.MaxPool2d(2), nn.BatchNorm2d(c_out),
                         nn.GELU(), nn.Conv2d(c_out, c_out, 3, padding=1, bias=False), nn.BatchNorm2d(c_out), nn.GELU())


def airbench94_net(widths: tuple = (64, 256, 256)) -> nn.Module:
    """The network of airbench94 (Jordan 2024, Sec. 3): a 2x2 patch-whitening convolution to
    24 channels (without padding), three blocks of widths 64, 256, 256, a 3x3 max-pool and a
    linear layer to 10 classes."""
    whiten = 2 * 3 * 2 ** 2
    return nn.Sequential(nn.Conv2d(3, whiten, 2, padding=0), nn.GELU(), _ConvBlock(whiten, widths[0]),
                         _ConvBlock(widths[0], widths[1]), _ConvBlock(widths[1], widths[2]), nn.MaxPool2d(3),
                         nn.Flatten(), nn.Linear(widths[2], 10, bias=False))


AIRBENCH = {"seconds": 3.29, "epochs": 9.9, "images": 50_000, "gpu": "NVIDIA A100",
            "source": 'Jordan 2024, "94% on CIFAR-10 in 3.29 Seconds on a Single GPU" (arXiv:2404.00498): '
                      "airbench94 reaches 94% in 3.29 s on one A100, 9.9 epochs of 50,000 images"}


@dataclass(frozen=True)
class Throughput:
    flops_per_second: float
    forward_flops: float
    train_flops: float

    def basis(self) -> str:
        return (f"{AIRBENCH['source']}; its network counted with FlopCounterMode: "
                f"{self.forward_flops / 1e9:.3f} GFLOP forward per image x {TRAIN_PASSES:g} (forward + backward) "
                f"x {AIRBENCH['epochs']:g} epochs x {AIRBENCH['images']:,} images = {self.train_flops / 1e15:.2f} PFLOP "
                f"(the airbench README: 0.36 PFLOPs) in {AIRBENCH['seconds']} s = "
                f"{self.flops_per_second / 1e12:.0f} TFLOP/s sustained on one {AIRBENCH['gpu']}; a tuned pipeline, "
                "so the hours are a floor")


def extractor_plan(cfg) -> tuple[nn.Module, str, int, list[dict]]:
    """(extractor, its name, feature dim, [the stand-in's training row]) of an ``ExtractorConfig``
    (notebooks 01 and 08): InceptionV3 at 299x299 (the architecture only; weights are not needed
    to count FLOPs), or the ConvNet stand-in, whose own training is one more stage."""
    if cfg.extractor == "inception_v3_imagenet":
        import torchvision
        net = torchvision.models.inception_v3(weights=None, aux_logits=False, init_weights=False)
        net.fc = nn.Identity()
        return nn.Sequential(nn.Upsample(size=(299, 299), mode="bilinear"), net), "InceptionV3 at 299x299", 2048, []
    from . import models
    extractor = models.convnet(num_classes=8, width=cfg.standin_width)
    name = f"ConvNet-{cfg.standin_width} stand-in"
    images = 8 * cfg.standin_per_class * cfg.standin_epochs
    row = {"stage": "standin_extractor", "trials": 1,
           "flops_per_trial": model_train_flops(extractor, (3, 32, 32), images),
           "basis": f"{name} trained on 8 classes x {cfg.standin_per_class} images x {cfg.standin_epochs} "
                    "epochs, forward x3"}
    return extractor, name, extractor.feature_dim, [row]


def gpu_throughput() -> Throughput:
    """The sustained FLOP/s of one modern GPU assumed for every trial (airbench94 on an A100)."""
    net = airbench94_net()
    forward = model_forward_flops(net, CIFAR_IMAGE)
    train = model_train_flops(net, CIFAR_IMAGE, AIRBENCH["epochs"] * AIRBENCH["images"])
    return Throughput(train / AIRBENCH["seconds"], forward, train)


# --------------------------------------------------------------------------- papers not built yet
def settings_row(stage, trials, *, model=None, images=None, passes=TRAIN_PASSES, basis, flops=None) -> dict:
    """A row of a paper's reported settings (for its ``paper_settings.ROWS``): ``trials`` trials
    (None: unknown), each processing ``images`` images with ``model`` (a name of
    ``poisonrepro.models``; ``passes`` x its forward FLOPs per image), or ``flops`` per trial;
    hours unknown without either. ``basis`` cites the table or repository the settings come from."""
    if not (isinstance(basis, str) and basis.strip()):
        raise ValueError(f"settings_row({stage!r}): basis must cite the paper's table or code, got {basis!r}")
    if trials is not None and (not isinstance(trials, int) or trials < 1):
        raise ValueError(f"settings_row({stage!r}): trials={trials!r}: must be an integer >= 1, or None (unknown)")
    return {"stage": stage, "trials": trials, "model": model, "images": images, "passes": passes, "basis": basis,
            "flops_per_trial": flops}


SETTINGS_HOOK = "poisonrepro.papers.{}.paper_settings"


def paper_settings(paper: str) -> dict | None:
    """``{"rows", "partial"}`` from ``poisonrepro.papers.<paper>.paper_settings`` (``ROWS``, ``PARTIAL``),
    or None where the paper's package has no such module."""
    name = SETTINGS_HOOK.format(paper)
    try:
        if importlib.util.find_spec(name) is None:
            return None
    except ModuleNotFoundError as exc:  # no package of this paper; an error inside a module is raised
        if exc.name is None or not name.startswith(exc.name):
            raise
        return None
    module = importlib.import_module(name)
    rows = getattr(module, "ROWS", None)
    keys = set(settings_row("s", None, basis="b"))
    if not rows or not all(isinstance(r, dict) and set(r) == keys for r in rows):
        raise ValueError(f"{name}.ROWS: must be a non-empty list of plan.settings_row(...) rows, got {rows!r}")
    return {"rows": list(rows), "partial": getattr(module, "PARTIAL", "")}


def _flops_of_settings(row: dict, forward_cache: dict) -> float | None:
    if row["flops_per_trial"] is not None:
        return row["flops_per_trial"]
    if row["model"] is None or row["images"] is None:
        return None
    if row["model"] not in forward_cache:
        from . import models
        forward_cache[row["model"]] = model_forward_flops(models.build_model(row["model"]), CIFAR_IMAGE)
    return forward_cache[row["model"]] * row["passes"] * row["images"]


# --------------------------------------------------------------------------- per notebook
def paper_of(stem: str) -> str:
    """The paper's name: the notebook stem without its number (``05_biggio_svm`` -> ``biggio_svm``)."""
    return stem.split("_", 1)[1]


def experiments_module(paper: str):
    """``poisonrepro.papers.<paper>.experiments``, else ``poisonrepro.papers.<paper>``; None if neither."""
    for name in (f"poisonrepro.papers.{paper}.experiments", f"poisonrepro.papers.{paper}"):
        try:
            if importlib.util.find_spec(name) is not None:
                return importlib.import_module(name)
        except ModuleNotFoundError as exc:  # the parent package is missing; an error inside a module is raised
            if exc.name is None or not name.startswith(exc.name):
                raise
    return None


@dataclass
class NotebookPlan:
    notebook: str
    rows: list          # {"stage", "trials", "flops_per_trial" (None: unknown), "basis"}
    source: str         # "plan(cfg)", "paper settings", "no trials", "plan() not yet defined"
    partial: str = ""   # a cost the rows leave out

    @property
    def trials(self) -> int | None:
        counts = [r["trials"] for r in self.rows]
        return None if any(c is None for c in counts) else int(sum(counts))

    def seconds(self, flops_per_second: float) -> float | None:
        """GPU seconds; None where any row's FLOPs are unknown."""
        if any(r["trials"] is None or r["flops_per_trial"] is None for r in self.rows):
            return None
        return sum(r["trials"] * r["flops_per_trial"] for r in self.rows) / flops_per_second

    def known_seconds(self, flops_per_second: float) -> float:
        return sum(r["trials"] * r["flops_per_trial"] for r in self.rows
                   if r["trials"] is not None and r["flops_per_trial"] is not None) / flops_per_second

    def chain_seconds(self, flops_per_second: float) -> float:
        """The longest trial of each stage, one stage after another."""
        return sum(r["flops_per_trial"] for r in self.rows if r["flops_per_trial"]) / flops_per_second


def notebook_plan(stem: str, profile: str) -> NotebookPlan:
    paper = paper_of(stem)
    entry = paper_settings(paper) if catalog.status(stem) != "done" else None
    if entry is not None:
        cache = {}
        rows = [dict(stage=r["stage"], trials=r["trials"], flops_per_trial=_flops_of_settings(r, cache),
                     basis=r["basis"]) for r in entry["rows"]]
        return NotebookPlan(stem, rows, "paper settings", entry["partial"])
    if importlib.util.find_spec(f"poisonrepro.config.{paper}") is None:
        return NotebookPlan(stem, [], "no trials" if catalog.status(stem) == "done" else "not built, no settings")
    module = experiments_module(paper)
    if module is None or not hasattr(module, "plan"):
        return NotebookPlan(stem, [{"stage": "all", "trials": None, "flops_per_trial": None,
                                    "basis": "its experiments module defines no plan(cfg) yet"}], "plan() not yet defined")
    rows = [dict(r, flops_per_trial=float(r["flops_per_trial"]) or None) for r in module.plan(load_config(paper, profile))]
    return NotebookPlan(stem, rows, "plan(cfg)")


# --------------------------------------------------------------------------- the report
def _hours(seconds: float | None, lower_bound: bool = False) -> str:
    if seconds is None:
        return "unknown"
    h = seconds / 3600
    text = "<0.01" if h < 0.01 else f"{h:,.2f}" if h < 100 else f"{h:,.0f}"
    return f">= {text}" if lower_bound and h >= 0.01 else text


def totals(plans: list[NotebookPlan], flops_per_second: float) -> dict:
    """GPU seconds on 1 GPU (of what is known), the longest chain, and on 64 GPUs: the total
    over 64 but never less than the longest chain."""
    one = sum(p.known_seconds(flops_per_second) for p in plans)
    chain = max((p.chain_seconds(flops_per_second) for p in plans), default=0.0)
    return {"one_gpu": one, "chain": chain, "gpus_64": max(one / 64, chain),
            "incomplete": [p.notebook for p in plans if p.partial or (p.rows and p.seconds(flops_per_second) is None)]}


def report(profile: str, flops_per_second: float | None = None) -> str:
    """The markdown plan of every notebook at ``profile``."""
    throughput = gpu_throughput()
    fps = flops_per_second or throughput.flops_per_second
    plans = [notebook_plan(stem, profile) for stem, *_ in catalog.PAPERS]
    lines = [f"# Plan: profile `{profile}`", "",
             f"GPU hours on one modern GPU at {fps / 1e12:.0f} TFLOP/s sustained. Basis: {throughput.basis()}.", "",
             "| notebook | trials | GPU hours | basis |", "|---|---|---|---|"]
    for p in plans:
        if not p.rows:
            lines.append(f"| `{p.notebook}` | 0 | 0 | {p.source} |")
            continue
        seconds = p.seconds(fps)
        partial = bool(p.partial) or (seconds is None and p.known_seconds(fps) > 0)
        hours = _hours(p.known_seconds(fps) if partial else seconds, lower_bound=partial)
        trials = "unknown" if p.trials is None else f"{p.trials:,}"
        basis = p.source + (f"; not counted: {p.partial}" if p.partial else "")
        lines.append(f"| `{p.notebook}` | {trials} | {hours} | {basis} |")
    t = totals(plans, fps)
    bound = ">= " if t["incomplete"] else ""
    lines += ["", f"Total on 1 GPU: {bound}{_hours(t['one_gpu'])} GPU hours"
                  + (f" (leaving out what is unknown or not counted in {', '.join(t['incomplete'])})"
                     if t["incomplete"] else "") + ".",
              f"On 64 GPUs: {bound}{_hours(t['gpus_64'])} hours: the total over 64, but not less than the longest "
              f"chain of trials that must run one after another ({_hours(t['chain'])} h; each notebook's stages taken "
              "as sequential, the trials of a stage as parallel).", "",
              "## Stages", "", "| notebook | stage | trials | GFLOP per trial | GPU hours | basis |",
              "|---|---|---|---|---|---|"]
    for p in plans:
        for r in p.rows:
            flops = r["flops_per_trial"]
            gflop = "unknown" if flops is None else f"{flops / 1e9:,.3g}"
            secs = None if flops is None or r["trials"] is None else r["trials"] * flops / fps
            trials = "unknown" if r["trials"] is None else f"{r['trials']:,}"
            lines.append(f"| `{p.notebook}` | {r['stage']} | {trials} | {gflop} | {_hours(secs)} | {r['basis']} |")
    return "\n".join(lines)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m poisonrepro.plan", description=__doc__.split("\n")[0])
    parser.add_argument("--profile", default="paper", help="smoke | cpu | paper (default: paper)")
    args = parser.parse_args(argv)
    try:
        check_profile(args.profile)
    except ConfigError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(report(args.profile))
    return 0


if __name__ == "__main__":
    sys.exit(main())
