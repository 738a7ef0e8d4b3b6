"""Figures and tables legible in the book (issue 24 section 1): every saved figure's text is at
least 9 px tall once the book scales it to its 672 px column (``Results.save_figure`` raises
otherwise, so no figure can go stale), the figures named in the issue drawn as it asks, and tables
shown in words and plain numbers while their CSVs stay machine-readable."""
from types import SimpleNamespace

import matplotlib
import matplotlib.text

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402

from poisonrepro import plots as P  # noqa: E402
from poisonrepro import results as R  # noqa: E402
from poisonrepro.results import Results  # noqa: E402


@pytest.fixture
def res(isolated_artifacts):
    return Results("test_figures", "smoke", "witches_brew")


def _shown_px(path, fig) -> float:
    """The smallest drawn text of ``fig`` in px once its saved PNG is shown 672 px wide."""
    width = R.png_width(path.read_bytes())
    return min(size for _, size in R.drawn_texts(fig)) * R.FIGURE_DPI / 72 * min(1.0, R.COLUMN_PX / width)


def test_save_figure_refuses_an_illegible_figure_and_writes_nothing(res):
    fig, axes = plt.subplots(1, 3, figsize=(13, 3))  # the old WB-T1's width, its 7-pt legend
    axes[0].plot([0, 1], label="a curve")
    axes[0].legend(fontsize=7)
    with pytest.raises(ValueError, match=r"figure WB-X: the text 'a curve' \(7 pt\).*672 px column \(minimum 9 px\)"
                                         r".*at most 7\.3 in wide"):
        res.save_figure(fig, "WB-X")
    assert not (res.out_dir / "WB-X.png").exists()
    plt.close(fig)


def test_hidden_text_does_not_count(res):
    fig, (a, b) = plt.subplots(1, 2, figsize=(6, 3))
    a.plot([0, 1])
    b.text(0.5, 0.5, "tiny", fontsize=3)
    b.set_visible(False)  # a hidden cell of a grid (P.panels)
    res.save_figure(fig, "OK-1")
    plt.close(fig)


def test_column_sized_figure_with_long_texts_stays_legible(res):
    """A long title and stand-in note are wrapped to the figure's width: unwrapped, they widen the
    saved figure (bbox "tight") and shrink every text in the column."""
    fig, axes = P.panels(3, 2.5, sharey=True)
    for ax in axes:
        ax.plot([0, 1], [0, 1], label="a curve with a long name")
        P.title(ax, "a panel title long enough to run into its neighbour's", fontsize=P.SMALL)
    axes[0].legend(fontsize=P.SMALL)
    P.suptitle(fig, "X-1 " + "a suptitle that goes on and on " * 6)
    P.standin_note(fig, "STAND-IN: " + "a long description of the stand-in networks and data " * 4)
    path = res.save_figure(fig, "X-1")
    assert R.png_width(path.read_bytes()) <= (P.WIDTH + 0.6) * R.FIGURE_DPI
    assert _shown_px(path, fig) >= R.MIN_TEXT_PX
    plt.close(fig)


# --------------------------------------------------------------------------- the figures named in the issue
ATTACKS = ["feature_collision", "convex_polytope", "gradient_matching_K1", "gradient_matching_K4",
           "gradient_matching_K6het"]


def _wb_cfg():
    return SimpleNamespace(attacks=ATTACKS, n_poisons=5, eps=8 / 255, n_targets=10, budget=0.01,
                           victims=["convnet_bn", "resnet18"], train_per_class=5000, victim_epochs=8)


def _texts(fig) -> list[str]:
    """The figure's texts with their line breaks as spaces (a wrapped label reads as one)."""
    return [" ".join(t.get_text().split()) for t in fig.findobj(matplotlib.text.Text) if t.get_visible()]


def test_wb_t1_paper_values_are_hollow_diamonds_in_the_legend(res):
    from poisonrepro.papers.witches_brew import report
    g = torch.Generator().manual_seed(0)
    vic = {"success": torch.rand(len(ATTACKS), 2, 10, generator=g) < 0.3,
           "clean_success": torch.rand(2, 10, generator=g) < 0.1,
           "clean_patched_success": torch.rand(2, 2, 10, generator=g) < 0.1}
    fig = report.fig_t1(_wb_cfg(), report.table_t1(_wb_cfg(), vic, res), res)
    ax = fig.axes[0]
    paper = [c for c in ax.collections if c.get_label() == "paper"]
    assert len(paper) == 1 and "paper" in [t.get_text() for t in ax.get_legend().get_texts()]
    marker = paper[0].get_paths()[0].vertices
    assert np.ptp(marker[:, 0]) > 0 and np.ptp(marker[:, 1]) > 0  # an area, not a line like an error cap
    assert all(c[3] == 0 for c in paper[0].get_facecolors())  # hollow
    assert _shown_px(res.out_dir / "WB-T1.png", fig) >= R.MIN_TEXT_PX
    plt.close(fig)


def test_wb_t1d_names_every_row_in_full_with_its_k(res):
    from poisonrepro.papers.witches_brew import report
    k, g = 5, torch.Generator().manual_seed(0)
    images = lambda n: torch.randint(0, 256, (n, 3, 32, 32), generator=g, dtype=torch.uint8)  # noqa: E731
    data = {"train_x": images(20), "base_pos": [list(range(k))], "targets": images(1), "target_label": [4],
            "adversarial": [0]}
    poisons = {a: {"poisons": [images(k)]} for a in ATTACKS}
    fig = report.fig_poisons(_wb_cfg(), data, poisons, res)
    shown = " | ".join(_texts(fig))
    for attack in ATTACKS:
        assert report.LABELS[attack] in shown, (attack, shown)
    assert _shown_px(res.out_dir / "WB-T1d.png", fig) >= R.MIN_TEXT_PX
    plt.close(fig)


def test_cp_2b_titles_do_not_overlap(res):
    from poisonrepro.papers.convex_polytope import report
    k, g = 5, torch.Generator().manual_seed(0)
    images = lambda n: torch.rand(n, 3, 32, 32, generator=g)  # noqa: E731
    data = {"targets": images(1), "bases": images(k)}
    poisons = {"feature_collision.poisons": [images(k)], "convex_polytope.poisons": [images(k)]}
    cfg = SimpleNamespace(target_class="frog", poison_class="ship", eps=0.1)
    fig = report.fig_poisons(cfg, data, poisons, res)
    renderer = fig.canvas.get_renderer()
    boxes = [ax.title.get_window_extent(renderer) for ax in fig.axes if ax.get_title().strip()]
    assert len(boxes) > 1
    overlapping = [(i, j) for i in range(len(boxes)) for j in range(i + 1, len(boxes)) if boxes[i].overlaps(boxes[j])]
    assert not overlapping
    assert _shown_px(res.out_dir / "CP-2b.png", fig) >= R.MIN_TEXT_PX
    plt.close(fig)


# --------------------------------------------------------------------------- tables
def _raw() -> pd.DataFrame:
    return pd.DataFrame({"beta_01": [7225.0, 1.538e-05], "ci_low": [np.nan, 0.0123456], "kept": [True, False],
                         "targets": [3, 40000], "clean_label_ci_high": [0.5, 0.25], "note": ["a", None]},
                        index=pd.Index([0.01, 0.1], name="poison_fraction"))


def test_readable_table_words_and_plain_numbers():
    shown = R.readable_table(_raw())
    assert list(shown.columns) == ["beta (pixels on the 0-1 scale)", "95% CI low", "kept", "targets",
                                   "clean label 95% CI high", "note"]
    assert shown.index.name == "poisoned share" and list(shown.index) == ["0.01", "0.1"]
    assert shown.iloc[1].tolist() == ["0.0000154", "0.0123", "no", "40,000", "0.25", ""]
    text = shown.to_html()
    assert "NaN" not in text and "None" not in text and "e-05" not in text


def test_notebooks_show_tables_readable_and_save_them_machine_readable(res):
    from IPython.core.formatters import DisplayFormatter
    shell = SimpleNamespace(display_formatter=DisplayFormatter())
    assert R.register_readable_tables(shell)
    shown, _ = shell.display_formatter.format(_raw())
    assert "95% CI low" in shown["text/html"] and "NaN" not in shown["text/html"]
    assert "95% CI low" in shown["text/plain"] and "e-05" not in shown["text/plain"]
    saved = pd.read_csv(res.save_table(_raw(), "T-1"), index_col=0)
    assert list(saved.columns) == list(_raw().columns) and saved.beta_01.iloc[1] == pytest.approx(1.538e-05)
