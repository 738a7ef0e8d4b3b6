"""Notebook 06's LF-1 figure, drawn from made-up numbers (no experiment runs)."""
from types import SimpleNamespace

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import torch  # noqa: E402

from poisonrepro.papers.back_gradient import report  # noqa: E402
from poisonrepro.papers.back_gradient.experiments import LF_VARIANTS  # noqa: E402


class _Saved:
    """Stands in for Results: keeps what the figure function saves."""

    def __init__(self):
        self.figures, self.tables = {}, {}

    def save_figure(self, fig, artifact):
        self.figures[artifact] = fig

    def save_table(self, df, artifact):
        self.tables[artifact] = df


def test_lf1_has_one_shared_x_label_and_no_per_panel_ones():
    cfg = SimpleNamespace(lf_fractions=(0.0, 0.1, 0.2), lf_source=3, lf_target=8, lf_n_train=500)
    g = torch.Generator().manual_seed(0)
    shape = (len(LF_VARIANTS), 2, len(cfg.lf_fractions))  # variant x split x fraction
    ln = {"accuracy": torch.rand(shape, generator=g), "source_accuracy": torch.rand(shape, generator=g)}
    res = _Saved()
    fig = report.fig_label_noise(cfg, ln, res)
    try:
        assert res.figures["LF-1"] is fig and "LF-1" in res.tables
        axes = fig.axes
        assert len(axes) == 2
        assert [ax.get_xlabel() for ax in axes] == ["", ""]
        assert fig.get_supxlabel().startswith("poisoned labels (% of the training set")
        assert axes[0].get_ylabel() == "test accuracy"
        assert [ax.get_title() for ax in axes] == ["all ten classes", "test digits 3"]
        assert fig.get_suptitle().startswith("LF-1 label poisoning")
        assert len(axes[0].get_legend().get_texts()) == len(LF_VARIANTS)
    finally:
        plt.close(fig)
