"""`make plan`: FLOP counting, the stated GPU throughput, the plan hooks agreeing with the
trials the notebooks really run, and the totals for 1 and 64 GPUs."""
import subprocess
import sys

import pytest
import torch

from poisonrepro import catalog
from poisonrepro import plan as PL
from poisonrepro.config import load_config


def test_flops_are_counted_for_one_image():
    assert PL.model_forward_flops(torch.nn.Linear(10, 5), (10,)) == 2 * 10 * 5
    conv = torch.nn.Conv2d(3, 8, 3, padding=1)
    assert PL.model_forward_flops(conv, (3, 8, 8)) == 2 * 3 * 8 * 9 * 8 * 8
    assert PL.model_train_flops(conv, (3, 8, 8), 100) == 3 * 100 * 2 * 3 * 8 * 9 * 8 * 8
    assert PL.model_train_flops(conv, (3, 8, 8), 100, passes=1) == 100 * 2 * 3 * 8 * 9 * 8 * 8


def test_the_throughput_is_airbench94s_counted_flops_over_its_time():
    t = PL.gpu_throughput()
    # the net defined in plan.py is airbench94's: its training run within 5% of the 0.36 PFLOPs airbench states
    assert abs(t.train_flops - 0.36e15) / 0.36e15 < 0.05
    assert t.flops_per_second == pytest.approx(t.train_flops / 3.29)
    assert "arXiv:2404.00498" in t.basis() and "3.29 s" in t.basis()


@pytest.mark.parametrize("profile", ["smoke", "cpu", "paper"])
def test_biggio_plan_counts_the_trials_the_notebook_runs(profile):
    from poisonrepro.papers.biggio_svm import experiments as B
    cfg = load_config("biggio_svm", profile)
    rows = {r["stage"]: r for r in B.plan(cfg)}
    for trials in (B.toy_trials(cfg), B.single_point_trials(cfg), B.multi_point_trials(cfg)):
        assert rows[trials[0].stage]["trials"] == len(trials)
    assert all(r["flops_per_trial"] > 0 and r["basis"] for r in rows.values())


def test_totals_for_64_gpus_never_beat_the_longest_chain():
    fps = 1e12
    short = PL.NotebookPlan("a", [{"stage": "s", "trials": 6400, "flops_per_trial": 1e12, "basis": ""}], "plan(cfg)")
    long = PL.NotebookPlan("b", [{"stage": "craft", "trials": 1, "flops_per_trial": 1e15, "basis": ""},
                                 {"stage": "victims", "trials": 10, "flops_per_trial": 1e15, "basis": ""}], "plan(cfg)")
    t = PL.totals([short], fps)
    assert t["one_gpu"] == 6400 and t["gpus_64"] == 100 and not t["incomplete"]
    t = PL.totals([short, long], fps)
    assert t["one_gpu"] == 6400 + 11000 and t["chain"] == 2000 and t["gpus_64"] == 2000
    unknown = PL.NotebookPlan("c", [{"stage": "s", "trials": None, "flops_per_trial": None, "basis": ""}], "x")
    assert PL.totals([short, unknown], fps)["incomplete"] == ["c"]


def test_the_plan_lists_every_notebook_with_its_basis():
    text = PL.report("paper")
    table = [line for line in text.split("## Stages")[0].splitlines() if line.startswith("| `")]
    assert [line.split("`")[1] for line in table] == [p.notebook for p in catalog.PAPERS]
    biggio = next(line for line in table if "05_biggio_svm" in line)
    assert "| 92 |" in biggio and "plan(cfg)" in biggio  # 2 toy + 3 pairs x 2 kernels x 10 splits + 3 x 10
    assert "arXiv:2404.00498" in text
    # a notebook not built yet: the rows of its own package's paper_settings, where it has them
    for paper in catalog.PAPERS:
        settings = PL.paper_settings(paper.name)
        if catalog.status(paper.notebook) != "done" and settings is not None:
            assert "paper settings" in next(line for line in table if f"`{paper.notebook}`" in line)
            assert all(r["basis"] in text for r in settings["rows"]), paper.notebook
    witches = next(line for line in table if "04_witches_brew" in line)
    assert "plan(cfg)" in witches  # built: its own stages
    assert "Total on 1 GPU:" in text and "On 64 GPUs:" in text and "longest chain" in text


def test_a_paper_not_built_yet_brings_its_rows_in_its_own_package(tmp_path, monkeypatch):
    """The hook is found by name: a new module gives a not-built notebook its rows, no list in plan.py."""
    (tmp_path / "zz_hook_demo.py").write_text(
        "from poisonrepro.plan import settings_row\n"
        "PARTIAL = 'crafting'\n"
        "ROWS = [settings_row('victims', 4, flops=2e15, basis='Demo et al., Table 9')]\n")
    (tmp_path / "zz_hook_broken.py").write_text("ROWS = [{'stage': 'victims'}]\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setattr(PL, "SETTINGS_HOOK", "zz_hook_{}")
    p = PL.notebook_plan("99_demo", "paper")  # no notebook 99_demo: not built
    assert (p.source, p.partial, p.trials) == ("paper settings", "crafting", 4)
    assert p.seconds(1e15) == 8 and p.rows[0]["basis"] == "Demo et al., Table 9"
    assert PL.paper_settings("absent") is None
    with pytest.raises(ValueError, match=r"zz_hook_broken.ROWS: must be a non-empty list of plan.settings_row"):
        PL.notebook_plan("99_broken", "paper")
    with pytest.raises(ValueError, match=r"settings_row\('x'\): basis must cite"):
        PL.settings_row("x", 1, basis=" ")
    with pytest.raises(ValueError, match=r"trials=0: must be an integer >= 1"):
        PL.settings_row("x", 0, basis="b")


def test_the_command_rejects_an_unknown_profile():
    r = subprocess.run([sys.executable, "-m", "poisonrepro.plan", "--profile", "fast"], capture_output=True, text=True)
    assert r.returncode == 2 and "unknown profile" in r.stderr
