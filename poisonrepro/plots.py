"""Plot helpers shared by the notebooks (matplotlib + seaborn, PNG output)."""
from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np
import seaborn as sns
import torch

sns.set_theme(context="notebook", style="whitegrid")
plt.rcParams["figure.constrained_layout.use"] = True  # room for suptitles and stand-in notes


def to_image(x: torch.Tensor) -> np.ndarray:
    """A CHW image -> an HWC float array in [0, 1] for imshow: uint8 pixels (0-255, as the data
    sets and the backdoor attacks store them) are divided by 255, floats taken on the [0, 1]
    scale (clamping uint8 to [0, 1] instead showed every image black)."""
    x = torch.as_tensor(x).detach().cpu()
    if x.dtype == torch.uint8:
        x = x.float() / 255
    elif x.is_floating_point():
        x = x.float()
    else:
        raise ValueError(f"to_image: an image is uint8 (0-255) or float ([0, 1]), not {x.dtype}")
    return x.permute(1, 2, 0).clamp(0, 1).numpy()


def image_row(axes, images, titles):
    for ax, img, title in zip(axes, images, titles):
        ax.imshow(to_image(img), interpolation="nearest")
        ax.set_title(title, fontsize=9)
        ax.axis("off")


def amplified(delta: torch.Tensor) -> torch.Tensor:
    """A perturbation scaled to fill [0, 1] around grey, for display."""
    scale = delta.abs().max().clamp_min(1e-8)
    return 0.5 + 0.5 * delta / scale


def tight(fig):
    """``fig.tight_layout()`` without matplotlib's notice that the layout changed (it would land in
    the notebook's outputs as a warning)."""
    import warnings
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="The figure layout has changed to tight")
        fig.tight_layout()


def standin_note(fig, text: str):
    """Every figure made with a stand-in says so on the figure itself."""
    fig.text(0.01, -0.02, text, fontsize=8, color="firebrick", ha="left", va="top")


def finish(fig, res, artifact: str, title: str, standin: str):
    """A notebook figure's last steps: its title, the layout, the stand-in label, saved by ``res``
    (a ``results.Results``) as ``artifact``."""
    fig.suptitle(title, fontsize=9)
    tight(fig)
    standin_note(fig, standin)
    res.save_figure(fig, artifact)
    return fig


def projection_basis(class0: torch.Tensor, class1: torch.Tensor, direction: torch.Tensor | None = None):
    """An orthonormal pair (u, v) and origin: u joins the two class centroids; v is the part
    of ``direction`` (e.g. a head's weight difference) orthogonal to u, else the first
    principal direction of the remaining spread."""
    m0, m1 = class0.mean(0), class1.mean(0)
    u = (m1 - m0) / (m1 - m0).norm()
    if direction is None:
        allc = torch.cat([class0 - m0, class1 - m1])
        resid = allc - (allc @ u)[:, None] * u
        direction = torch.linalg.svd(resid, full_matrices=False).Vh[0]
    v = direction - (direction @ u) * u
    v = v / v.norm().clamp_min(1e-12)
    return (m0 + m1) / 2, u, v


def project(feats: torch.Tensor, origin, u, v) -> np.ndarray:
    c = feats - origin
    return torch.stack([c @ u, c @ v], 1).numpy()


def error_bars(values, lows, highs) -> np.ndarray:
    """``yerr`` for ``errorbar`` from an interval: never negative (a bound a rounding error
    away on the wrong side of its value counts as touching it) and 0 where undefined."""
    values, lows, highs = (np.asarray(a, float) for a in (values, lows, highs))
    below, above = np.nan_to_num(values - lows), np.nan_to_num(highs - values)
    return np.stack([np.clip(below, 0, None), np.clip(above, 0, None)])


def success_curve(ax, x, rates, lows, highs, label, marker="o"):
    x, rates = np.asarray(x), np.asarray(rates, float)
    ax.errorbar(x, rates, yerr=error_bars(rates, lows, highs), marker=marker, capsize=3, label=label)
    ax.set_ylim(-0.02, 1.02)


def success_curves(ax, table, by: str, x: str, label):
    """One ``success_curve`` per value of the index level ``by`` of a table with columns
    success_rate, ci_low, ci_high, against its index level ``x``; ``label(value)`` names it."""
    for value, part in table.groupby(level=by):
        success_curve(ax, part.index.get_level_values(x), part.success_rate, part.ci_low, part.ci_high, label(value))
