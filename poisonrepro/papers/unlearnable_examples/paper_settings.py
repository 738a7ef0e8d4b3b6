"""``make plan`` rows for notebook 12 before it is built: the settings that Huang et al. 2021,
"Unlearnable Examples: Making Personal Data Unexploitable" (ICLR 2021), and its code
(HanxunH/Unlearnable-Examples) state. Once the notebook exists, ``experiments.plan(cfg)`` replaces
these rows (``poisonrepro.plan.paper_settings``)."""
from ...plan import settings_row

#: a cost the rows leave out (the hours are shown as a lower bound)
PARTIAL = "crafting (rounds until train error < 0.01), RN-50, DN-121 and the other datasets of UE-3"

ROWS = [settings_row(f"victims {arch}, CIFAR-10", 3, model=arch, images=60 * 50_000,
                     basis=f"Huang et al. 2021 (UE), Table 1: {arch} on clean, sample-wise and class-wise CIFAR-10; "
                           "60 epochs (HanxunH/Unlearnable-Examples)")
        for arch in ("resnet18", "vgg11")]
