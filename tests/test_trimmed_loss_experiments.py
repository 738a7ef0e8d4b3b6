"""Notebook 09's experiments: its config refuses bad input before any compute, the bad sets spoil
exactly what they say and never the clean arrays, and one ITLM trial on a tiny CIFAR-10 subset
keeps the stated share and records what the report reads."""
import numpy as np
import pytest
import torch

from poisonrepro.config import ConfigError, load_config
from poisonrepro.papers.trimmed_loss import experiments as E
from poisonrepro.papers.trimmed_loss import report as R


@pytest.mark.parametrize("override, match", [
    ({"alphas": (0.0, 0.6)}, r"alphas: 0.0 is outside \(0, 1\]"),
    ({"alphas": (1.2,)}, r"alphas|max"),
    ({"trigger_size": 33}, "does not fit a 32x32"),
    ({"systematic_rate": 1.0}, "systematic_rate"),
    ({"random_rate": -0.1}, "random_rate"),
    ({"backdoor_rate": 0.0}, "backdoor_rate=0.0"),
    ({"target_class": "unicorn"}, "target_class"),
    ({"model": "resnet1000"}, "model"),
    ({"kinds": ("random", "badnets")}, "must include 'systematic'"),
    ({"kinds": ("systematic", "systematic")}, "each kind once"),
    ({"kinds": ("systematic", "gaussian")}, "kinds"),
])
def test_bad_input_is_refused_by_the_config(override, match):
    with pytest.raises(ConfigError, match=match):
        load_config("trimmed_loss", "cpu", **override)


def _toy(n=200):
    g = torch.Generator().manual_seed(0)
    return torch.randint(0, 256, (n, 3, 32, 32), dtype=torch.uint8, generator=g), torch.arange(n) % 10


def test_systematic_noise_moves_exactly_the_share_to_the_next_class_and_leaves_the_input_clean():
    x, y = _toy()
    before = y.clone()
    b = dict(zip(("x", "y", "bad"), E.bad_set(x, y, kind="systematic", rate=0.4, seed=3)))
    assert torch.equal(y, before)
    assert int(b["bad"].sum()) == 80
    assert torch.equal(b["y"][b["bad"]], (y[b["bad"]] + 1) % 10)
    assert torch.equal(b["y"][~b["bad"]], y[~b["bad"]])


def test_random_noise_counts_only_changed_labels_as_bad():
    x, y = _toy()
    b = dict(zip(("x", "y", "bad"), E.bad_set(x, y, kind="random", rate=0.4, seed=3)))
    assert torch.equal(b["bad"], b["y"] != y)
    assert 50 <= int(b["bad"].sum()) <= 80   # a tenth of the 80 redrawn keep their class, on average


def test_badnets_set_carries_the_trigger_and_the_target_label_and_copies_the_images():
    x, y = _toy()
    x0 = x.clone()
    b = dict(zip(("x", "y", "bad"), E.bad_set(x, y, kind="badnets", rate=0.1, seed=3, target_class=0, trigger_size=3)))
    assert torch.equal(x, x0)
    assert int(b["bad"].sum()) == 20 and (b["y"][b["bad"]] == 0).all() and (y[b["bad"]] != 0).all()
    assert (b["x"][b["bad"]][..., -3:, -3:] != x[b["bad"]][..., -3:, -3:]).any()
    assert torch.equal(b["x"][~b["bad"]], x[~b["bad"]])
    with pytest.raises(ValueError, match="unknown bad-data kind"):
        E.bad_set(x, y, kind="label_smoothing", rate=0.1, seed=0)


def test_an_itlm_trial_keeps_alpha_n_and_records_rounds_and_scores(mirror, isolated_artifacts):
    """Through the shared evaluation trial: the bad set is the producer's, ITLM and plain training
    are its learners, and their diagnostics come back with the scores."""
    from poisonrepro.evaluation import evaluation_trial
    cfg = load_config("trimmed_loss", "smoke", kinds=("systematic", "badnets"), train_per_class=12, test_per_class=4,
                      epochs=1, rounds=2, round_epochs=1)
    trial = E.victim_trial(cfg, "itlm", "badnets", 101, alpha=0.9)
    assert "poisonrepro.papers.trimmed_loss.experiments" in trial.spec["code"]   # a change to ITLM retrains
    out = evaluation_trial(**trial.spec)
    n = 120
    assert out["round_loss"].shape == (2, n) and out["kept"].shape == (3, n)
    assert out["kept"][0].all() and int(out["kept"][1].sum()) == int(out["kept"][2].sum()) == 108
    # what was kept has the lowest loss of its round
    loss, kept = out["round_loss"][0], out["kept"][1]
    assert loss[kept].max() <= loss[~kept].min()
    assert 0 <= float(out["attack_success_rate"]) <= 1 and int(out["bad"].sum()) == 12
    precision, recall = R.trim_scores(out)
    assert 0 <= precision <= 1 and 0 <= recall <= 1
    plain = evaluation_trial(**E.victim_trial(cfg, "plain", "systematic", 101).spec)
    assert plain["epoch_loss"].shape == (1, n) and plain["epoch_fitted"].dtype == torch.bool
    assert int(plain["bad"].sum()) == 48                                          # 40% of 120, relabelled
    clean = evaluation_trial(**E.victim_trial(cfg, "clean", "systematic", 101).spec)
    assert not clean["bad"].any() and "attack_success_rate" in clean             # the trigger's base rate


def test_early_auroc_reads_bad_samples_with_higher_loss_as_separated():
    bad = torch.tensor([False] * 8 + [True] * 2)
    result = {"bad": bad, "round_loss": torch.tensor([[0.1] * 8 + [3.0] * 2])}
    assert R.early_auroc(result) == 1.0
    result["round_loss"] = torch.tensor([[3.0] * 8 + [0.1] * 2])
    assert R.early_auroc(result) == 0.0
    assert np.isnan(R.early_auroc({"bad": torch.zeros(4, dtype=torch.bool), "round_loss": torch.ones(1, 4)}))


def _victims(clean, plain, itlm, seeds=3, kinds=E.KINDS):
    """Victims of every kind and arm whose test accuracy is the given one, give or take a point,
    with first-round losses that put the bad samples last."""
    bad = torch.tensor([False] * 8 + [True] * 2)
    jitter = (0.0, 0.01, -0.01, 0.02, -0.02)[:seeds]

    def one(acc, j):
        return {"test_accuracy": torch.tensor(acc + j), "bad": bad, "round_loss": torch.tensor([[0.1] * 8 + [3.0] * 2])}
    arms = {"clean": clean, "plain": plain, "itlm": itlm}
    return {kind: {arm: [one(acc, j) for j in jitter] for arm, acc in arms.items()} for kind in kinds}


def _claims(vic, **cfg):
    from poisonrepro.results import Results
    res = Results("09_trimmed_loss", "cpu", "trimmed_loss")
    cfg.setdefault("kinds", tuple(vic))
    R.record_claims(load_config("trimmed_loss", "cpu", victim_seeds=len(vic["systematic"]["plain"]), **cfg), vic, res)
    return {c["id"]: c for c in res.claims_frame().to_dict("records")}


HEADLINE = "TL-1:test-accuracy-itlm-plain"


def test_the_headline_is_itlm_against_plain_training_under_systematic_noise(isolated_artifacts):
    c = _claims(_victims(clean=0.9, plain=0.7, itlm=0.85))
    assert [i for i, r in c.items() if r["role"] == "headline"] == [HEADLINE]
    assert c[HEADLINE]["verdict"] == "holds" and c[HEADLINE]["n"] == 3          # the unit: a seed
    assert set(c[HEADLINE]["requires"].split()) == {"TL-1:clean-label-test-accuracy",
                                                    "TL-1:test-accuracy-clean-labels-plain"}
    assert c["TL-1:clean-label-test-accuracy"]["paper"] == 0.9                  # measured beside the paper's
    assert {f"TL-1:auroc-of-the-first-round-s-losses-bad-vs-clean:{k}" for k in E.KINDS} <= set(c)
    assert _claims(_victims(clean=0.9, plain=0.7, itlm=0.72))[HEADLINE]["verdict"] == "fails"


def test_the_headline_is_untested_below_the_accuracy_floor_or_where_the_noise_costs_nothing(isolated_artifacts):
    weak = _claims(_victims(clean=0.46, plain=0.3, itlm=0.18))                  # the cpu stand-in's numbers
    assert weak["TL-1:clean-label-test-accuracy"]["verdict"] == "fails"
    assert weak[HEADLINE]["verdict"] == "untested" and "clean-label-test-accuracy" in weak[HEADLINE]["reason"]
    harmless = _claims(_victims(clean=0.9, plain=0.9, itlm=0.9))
    assert harmless["TL-1:test-accuracy-clean-labels-plain"]["verdict"] != "holds"
    assert harmless[HEADLINE]["verdict"] == "untested"


def test_kinds_cut_from_a_profile_are_listed_as_not_run(isolated_artifacts):
    from poisonrepro.results import Results
    cfg = load_config("trimmed_loss", "cpu")
    assert cfg.kinds == ("systematic",)
    vic = _victims(clean=0.9, plain=0.7, itlm=0.85, kinds=cfg.kinds)
    for arm in vic["systematic"].values():
        for r in arm:
            r.update(kept=torch.tensor([[True] * 10, [True] * 8 + [False] * 2]))
    table = R.accuracy_table(cfg, vic, Results("09_trimmed_loss", "cpu", "trimmed_loss"))
    assert (table.loc[R.LABEL["badnets"], "seeds"] == 0).all()
    assert table.loc[R.LABEL["random"], "note"].str.contains("not run at cpu").all()
    assert (table.loc[R.LABEL["systematic"], "seeds"] == 3).all()
