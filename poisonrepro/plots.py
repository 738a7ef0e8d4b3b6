"""Plot helpers shared by the notebooks (matplotlib + seaborn, PNG output)."""
from __future__ import annotations

import textwrap

import matplotlib.pyplot as plt
import numpy as np
import seaborn as sns
import torch

sns.set_theme(context="paper", style="whitegrid")  # 8.8-9.6 pt: sized for 7.5 in figures
plt.rcParams["figure.constrained_layout.use"] = True  # room for suptitles and stand-in notes

#: the widest a figure should be, in inches: the book shows it in a 672 px column, where an 8-pt
#: text of a 7.5 in figure is 10 px tall (``results.check_legible`` raises under 9 px)
WIDTH = 7.5
#: the smallest font size of any text on a figure, in points
SMALL = 8


def wrap(text: str, width_in: float, fontsize: float = 10) -> str:
    """``text`` broken into lines that fit ``width_in`` inches at ``fontsize`` points (an estimate:
    0.6 em a character), its own line breaks kept; a long title would otherwise widen the saved
    figure past its size (``bbox_inches="tight"``) and shrink every text in the book's column."""
    chars = max(12, int(width_in * 72 / (0.6 * fontsize)))
    return "\n".join(textwrap.fill(line, chars, break_on_hyphens=False) if line else line
                     for line in str(text).split("\n"))


def suptitle(fig, text: str, fontsize: float = 10):
    """``fig.suptitle`` wrapped to the figure's width."""
    return fig.suptitle(wrap(text, fig.get_figwidth(), fontsize), fontsize=fontsize)


def title(ax, text: str, fontsize: float = 10, **kw):
    """``ax.set_title`` wrapped to the axes' width (titles of neighbouring panels must not overlap)."""
    return ax.set_title(wrap(text, axes_width(ax), fontsize), fontsize=fontsize, **kw)


def axes_width(ax) -> float:
    """The width of ``ax`` in inches as the layout will make it: its share of its grid's columns
    (the positions before the figure is drawn are matplotlib's defaults, narrower), less a margin
    for the tick labels."""
    spec = ax.get_subplotspec()
    if spec is None:
        return ax.get_position().width * ax.figure.get_figwidth()
    grid = spec.get_gridspec()
    ratios = np.asarray(grid.get_width_ratios() or [1] * grid.ncols, float)
    share = ratios[spec.colspan.start:spec.colspan.stop].sum() / ratios.sum()
    return 0.85 * share * ax.figure.get_figwidth()


def panels(n: int, height: float = 3.0, cols: int = 2, width: float = WIDTH, **kw):
    """``n`` panels in rows of at most ``cols``, the figure ``width`` inches wide (more rows rather
    than a row too wide for the book's column), each row ``height`` inches; the grid's unused
    cells hidden. Returns the figure and the ``n`` axes in reading order."""
    cols = max(1, min(cols, n))
    rows = -(-n // cols)
    fig, axes = plt.subplots(rows, cols, figsize=(width, height * rows), squeeze=False, **kw)
    flat = list(axes.flat)
    for ax in flat[n:]:
        ax.set_visible(False)
    return fig, flat[:n]


def first_in_row(axes, cols: int = 2):
    """The axes of ``panels`` that start a row (where a shared y label goes)."""
    return axes[::max(1, min(cols, len(axes)))]


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


def image_row(axes, images, titles, fontsize: float = 9):
    for ax, img, text in zip(axes, images, titles):
        ax.imshow(to_image(img), interpolation="nearest")
        ax.set_title(text, fontsize=fontsize)
        ax.axis("off")


def row_label(ax, text: str, fontsize: float = SMALL, width_in: float = 1.0):
    """Name an image row on its first image's left (as a y label: the image axes keeps no frame
    or ticks), so that the titles above the images can stay short and never overlap."""
    ax.axis("on")
    ax.set_xticks([]), ax.set_yticks([])
    ax.grid(False)
    for spine in ax.spines.values():
        spine.set_visible(False)
    ax.set_ylabel(wrap(text, width_in, fontsize), fontsize=fontsize)


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
    fig.text(0.01, -0.02, wrap(text, 0.98 * fig.get_figwidth(), SMALL), fontsize=SMALL, color="firebrick",
             ha="left", va="top")


def finish(fig, res, artifact: str, title: str, standin: str):
    """A notebook figure's last steps: its title, the layout, the stand-in label, saved by ``res``
    (a ``results.Results``) as ``artifact``."""
    suptitle(fig, title, fontsize=9)
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
