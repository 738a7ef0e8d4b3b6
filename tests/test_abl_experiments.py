"""Notebook 11's experiments: its config refuses bad input (and fewer than 3 seeds at cpu and paper)
before any compute, each attack's poisoned set poisons exactly the stated share of the stated
classes and never the clean arrays, the Trojan trigger drives its neuron, the clean-label poisons
keep their budget, ABL's phases have the stated recipes, the victim sees the corner where the
triggers sit, and the claims are tested over seeds: the joint headline claim holds only where the
ASR falls *and* clean accuracy is kept, and is untested where the preconditions fail."""
import numpy as np
import pytest
import torch

from poisonrepro import models as M
from poisonrepro import train as T
from poisonrepro.attacks import badnets, trojan
from poisonrepro.config import ConfigError, dry_run, load_config
from poisonrepro.papers.abl import experiments as E
from poisonrepro.papers.abl import report as R


@pytest.mark.parametrize("override, match", [
    ({"poison_rate": 1.0}, "poison_rate"),
    ({"poison_rate": -0.1}, "poison_rate"),
    ({"victim_seeds": 1}, "victim_seeds=1: the claims are tested over victim trainings"),
    ({"victim_seeds": 2}, "needs at least 3"),
    ({"trigger_size": 33}, "does not fit a 32x32"),
    ({"attacks": ("badnets", "wanet")}, "attacks"),
    ({"attacks": ("badnets", "badnets")}, "each attack once"),
    ({"target_class": "unicorn"}, "target_class"),
    ({"isolation_ratio": 0.0}, "isolation_ratio"),
    ({"gamma": -1.0}, "gamma"),
    ({"model": "resnet1000"}, "model"),
    ({"cl_eps": 16.0}, "did you mean"),
])
def test_bad_input_is_refused_by_the_config(override, match):
    with pytest.raises(ConfigError, match=match):
        load_config("abl", "cpu", **override)


def test_cpu_and_paper_run_three_seeds_or_more_smoke_and_a_dry_run_may_run_one():
    assert load_config("abl", "cpu").victim_seeds >= 3 and load_config("abl", "paper").victim_seeds >= 3
    assert load_config("abl", "smoke").victim_seeds == load_config("abl", "cpu").victim_seeds  # the same tables
    assert load_config("abl", "smoke").attacks == load_config("abl", "cpu").attacks
    assert dry_run(load_config("abl", "paper")).victim_seeds == 1
    with pytest.raises(ConfigError, match="paper profile needs at least 3"):
        load_config("abl", "paper", victim_seeds=2)
    # any poisoning rate below 1 suits the clean-label attacks: they poison a share of the target class
    assert load_config("abl", "cpu", poison_rate=0.2).poison_rate == 0.2


def _toy(per_class=20):
    g = torch.Generator().manual_seed(0)
    n = 10 * per_class
    return {"x": torch.randint(0, 256, (n, 3, 32, 32), dtype=torch.uint8, generator=g), "y": torch.arange(n) % 10}


NO_NETWORKS = dict(model="convnet_bn_padded", attacker_key="", surrogate_key="")  # attacks that need none


@pytest.mark.parametrize("attack", ["badnets", "blend", "sig"])
def test_each_attack_poisons_the_stated_share_of_the_stated_classes_and_copies_the_images(attack):
    d = _toy()
    x0, y0 = d["x"].clone(), d["y"].clone()
    s = E.poisoned_set(attack, d["x"], d["y"], rate=0.1, target_class=0, trigger_size=3, seed=1, **NO_NETWORKS)
    apply = E.trigger_of(attack, trigger_size=3, seed=1)[0]
    assert torch.equal(d["x"], x0) and torch.equal(d["y"], y0)
    chosen = s.poisoned
    if attack in E.DIRTY_LABEL:
        assert len(chosen) == 20
        assert (y0[chosen] != 0).all() and (s.labels[chosen] == 0).all()
    else:  # clean label: the target-class images among 20 drawn from all 200 (about 2), labels kept
        assert 0 < len(chosen) < 20
        assert (y0[chosen] == 0).all() and torch.equal(s.labels, y0)
    assert torch.equal(s.images[chosen], apply(x0[chosen], None))
    rest = torch.ones(len(y0), dtype=torch.bool)
    rest[chosen] = False
    assert torch.equal(s.images[rest], x0[rest]) and torch.equal(s.labels[rest], y0[rest])


def test_the_trojan_trigger_drives_its_neuron_and_stays_in_its_mask():
    torch.manual_seed(0)
    net = M.build_model("convnet_bn_padded").eval()
    apply, trigger = E.trigger_of("trojan", trigger_size=3, seed=0, network=net, trojan_steps=60)
    mask = trojan.mask_at((32, 32), 3, E.trojan_location(3))
    assert E.trojan_location(3) == (25, 25)  # ABL: rows and columns 25-27
    assert (trigger[:, ~mask] == 0).all()
    neuron = trojan.select_neurons(net.head.weight, 1)
    grey = torch.full((1, 3, 32, 32), 127, dtype=torch.uint8)
    noise = torch.randint(0, 256, (3, 32, 32), generator=torch.Generator().manual_seed(1), dtype=torch.uint8)
    with torch.no_grad():
        driven = net.features(T.to_unit(apply(grey, None)))[0, neuron]
        other = net.features(T.to_unit(trojan.apply_trigger(grey, noise.float() / 255, mask)))[0, neuron]
    assert float(driven) > float(other)


def test_clean_label_poisons_keep_the_budget_outside_the_visible_trigger():
    torch.manual_seed(0)
    surrogate = M.build_model("convnet_bn_padded").eval()
    d = _toy(4)
    eps = 8 / 255
    craft = E.clean_label_apply(surrogate, target_class=0, trigger_size=3, eps=eps, steps=3, seed=0)
    s = E.BP.poison_training_set(d["x"], d["y"], craft, rate=0.5, target_class=0, clean_label=True, seed=0)
    assert len(s.poisoned) > 0
    base, poison = d["x"][s.poisoned].float(), s.images[s.poisoned].float()
    assert (d["y"][s.poisoned] == 0).all() and torch.equal(s.labels, d["y"])
    outside = torch.ones(32, 32, dtype=torch.bool)
    outside[-3:, -3:] = False
    assert (poison - base)[..., outside].abs().max() <= 8 + 0.5  # eps on 0-255, one rounding
    assert (poison - base)[..., outside].abs().max() > 0          # PGD moved them
    assert torch.equal(s.images[s.poisoned][..., -3:, -3:],
                       badnets.checkerboard(3).expand(len(s.poisoned), 3, 3, 3))


def test_abl_phases_have_the_stated_recipes():
    common = dict(recipe_name="fast", isolation_epochs=5, finetune_epochs=10, unlearning_lr=5e-4, gamma=0.5,
                  isolation_ratio=0.01, isolation_batch=64, isolated=50, unlearning_steps=32)
    repo = E.schedule(isolation="repository", **common)
    assert (repo.isolation.lr, repo.isolation.batch_size, repo.isolation.weight_decay) == (0.1, 64, 1e-4)
    assert repo.isolation.lr_factor(0, 100) == repo.isolation.lr_factor(99, 100) == 1  # constant
    victim = E.schedule(isolation="victim", **common)
    assert victim.isolation.batch_size == T.VictimRecipe().batch_size
    for s in (repo, victim):
        assert (s.isolation.crop_pad, s.isolation.flip, s.isolation.label_smoothing) == (0, False, 0.0)
        assert s.unlearning.lr == 5e-4 and s.unlearning.lr_factor(31, 32) == 1
        assert round(s.unlearning.epochs * max(1, 50 // s.unlearning.batch_size)) == 32
        assert s.finetune.crop_pad > 0 and s.finetune.epochs == 10
    with pytest.raises(ValueError, match="unknown isolation recipe"):
        E.schedule(isolation="flooding", **common)


def test_the_victim_sees_the_corner_that_convnet_bn_cuts_off():
    """The triggers sit in the bottom-right corner, which ConvNet-BN's unpadded stem and floor pooling
    all but drop; the padded stem sees it as well as the top-left one."""
    def corner_ratio(name):
        torch.manual_seed(0)
        m = M.build_model(name).eval()
        x = torch.rand(8, 3, 32, 32, requires_grad=True)
        m.body[:-2](m.normalize(x)).sum().backward()
        g = x.grad.abs().mean((0, 1))
        return float(g[-3:, -3:].mean() / g[:3, :3].mean())
    assert corner_ratio("convnet_bn") < 0.3
    assert corner_ratio("convnet_bn_padded") > 0.6


def test_early_auroc_reads_lower_poison_losses_as_above_half():
    r = {"bad": torch.tensor([True, True, False, False, False, False]),
         "epoch_loss": torch.tensor([[0.1, 0.2, 2.0, 2.1, 1.9, 2.2]])}
    assert R.early_auroc(r) == 1.0
    r["epoch_loss"] = -r["epoch_loss"]
    assert R.early_auroc(r) == 0.0
    r["isolated"] = torch.tensor([0, 3])
    assert R.isolation_precision([r, r]).tolist() == [0.5, 0.5]
    assert R.poisoned_share([r]).tolist() == [pytest.approx(1 / 3)]
    assert np.isnan(R.early_auroc({**r, "bad": torch.zeros(6, dtype=torch.bool)}))


# --------------------------------------------------------------------------- claims over seeds
def _victim(correct, hits, *, tested=100, triggered=90, isolated=(0, 1), poisoned=(0, 1, 2, 3, 4), n=50):
    bad = torch.zeros(n, dtype=torch.bool)
    bad[list(poisoned)] = True
    return {"test_accuracy": torch.tensor(correct / tested), "attack_success_rate": torch.tensor(hits / triggered),
            "isolated": torch.tensor(isolated), "bad": bad}


def _claims(plain, abl, seeds=3, **cfg):
    """The claims of one attack whose plain and ABL victims score ``plain``/``abl`` = (correct of
    100, hits of 90) on every seed, give or take one."""
    from poisonrepro.results import Results
    cfg = load_config("abl", "cpu", attacks=("badnets",), train_per_class=5, **cfg)
    jitter = (0, 1, -1, 2, -2)[:seeds]
    vic = {"badnets": {"plain": [_victim(plain[0] + j, plain[1] - abs(j)) for j in jitter],
                       "abl": [_victim(abl[0] - j, abl[1] + abs(j)) for j in jitter]}}
    res = Results("11_abl", "cpu", "abl")
    R.record_claims(cfg, vic, res)
    return {c["id"]: c for c in res.claims}


def test_the_headline_claim_holds_only_where_the_asr_falls_and_clean_accuracy_is_kept(isolated_artifacts):
    ok = _claims(plain=(88, 89), abl=(87, 1))
    assert ok["ABL-2:joint:badnets"]["role"] == "headline" and ok["ABL-2:joint:badnets"]["verdict"] == "holds"
    assert all(c["role"] == "supporting" for i, c in ok.items() if i != "ABL-2:joint:badnets")
    assert ok["ABL-2:clean-accuracy-without-abl:badnets"]["n"] == 3          # the unit: a seed, not a test image
    assert ok["ABL-2:isolation-precision-poisoned-share:badnets"]["verdict"] == "holds"
    # the ASR falls because the network collapsed: the joint claim fails on its clean-accuracy part
    collapsed = _claims(plain=(88, 89), abl=(20, 1))
    assert collapsed["ABL-2:attack-success-rate-with-abl:badnets"]["verdict"] == "holds"
    assert collapsed["ABL-2:clean-accuracy-without-abl-with-abl:badnets"]["verdict"] == "fails"
    assert collapsed["ABL-2:joint:badnets"]["verdict"] == "fails"


def test_the_headline_claim_is_untested_below_the_accuracy_floor_or_without_a_learned_backdoor(isolated_artifacts):
    weak = _claims(plain=(60, 89), abl=(59, 1))                              # the cpu stand-in's 60%
    assert weak["ABL-2:clean-accuracy-without-abl:badnets"]["verdict"] == "fails"
    assert weak["ABL-2:joint:badnets"]["verdict"] == "untested"
    unlearned = _claims(plain=(88, 3), abl=(87, 2))
    assert unlearned["ABL-2:attack-success-rate-without-abl:badnets"]["verdict"] == "fails"
    assert unlearned["ABL-2:attack-success-rate-with-abl:badnets"]["verdict"] == "untested"
    assert unlearned["ABL-2:joint:badnets"]["verdict"] == "untested"


def test_one_seed_decides_nothing(isolated_artifacts):
    """A smoke run (one seed): the thousand test images of one training do not make it a test."""
    one = _claims(plain=(88, 89), abl=(87, 1), seeds=1, victim_seeds=3)
    assert one["ABL-2:clean-accuracy-without-abl:badnets"]["verdict"] == "inconclusive"
    assert one["ABL-2:joint:badnets"]["verdict"] == "untested"


def test_a_victim_pair_runs_through_the_shared_evaluation(mirror, isolated_artifacts):
    """On a tiny set: the poisoned set is the producer's (10% relabelled to the target), the
    trigger probe scores the ASR, the plain learner records every sample's loss per epoch, and
    the ABL learner its isolated 1%, its LGA losses and the scores after its phases."""
    from poisonrepro.cache import ArtifactCache
    from poisonrepro.evaluation import evaluation_trial
    cfg = load_config("abl", "smoke", train_per_class=20, test_per_class=5, epochs=1, isolation_epochs=1,
                      finetune_epochs=1, unlearning_steps=1, isolation_ratio=0.05, track_sample=50)
    assert len(E.attacker_trials(cfg)) == 1 and E.attacker_keys(cfg)[1] == ""   # no surrogate without CL
    E.attackers(cfg, ArtifactCache())
    keys = E.attacker_keys(cfg)
    plain = evaluation_trial(**E.victim_trial(cfg, "plain", "badnets", 100, keys).spec)
    ablr = evaluation_trial(**E.victim_trial(cfg, "abl", "badnets", 100, keys).spec)
    for r in (plain, ablr):
        assert int(r["bad"].sum()) == 20 and 0 <= float(r["attack_success_rate"]) <= 1
    assert plain["epoch_loss"].shape == (1, 50) and ablr["lga_loss"].shape == (1, 50)   # a sample of 50 tracked
    assert torch.equal(plain["tracked"], ablr["tracked"]) and ablr["isolation_loss"].shape == (200,)
    assert len(ablr["isolated"]) == 10
    assert R._poison_mask(plain).shape == (50,) and R._poison_mask(plain).sum() == plain["bad"][plain["tracked"]].sum()
    assert {"isolation.test_accuracy", "finetune.attack_success_rate"} <= set(ablr)
    look = E.attack_trial(per_class=20, test_per_class=5, clean_network_key=keys[0],
                          **E._producer_args(cfg, "badnets", 100, keys))
    assert int(look["poisons"]) == 20 and look["examples"].shape == (2, 3, 32, 32)
    assert 0 <= float(look["clean_asr"]) <= 1


def test_the_paper_only_attacks_run_through_the_shared_evaluation_and_repeat_exactly(mirror, isolated_artifacts):
    """Trojan and CL (the paper profile's): the surrogate is trained only for CL, each attack's
    victims carry only the networks it uses in their keys, the probe's trigger is the producer's,
    and a Trojan victim is the same whether or not its trigger was cached in the process (the
    trigger's optimisation leaves the global generators alone)."""
    from poisonrepro.cache import ArtifactCache
    from poisonrepro.evaluation import evaluation_trial, poisoned_training_set
    cfg = load_config("abl", "smoke", attacks=("badnets", "trojan", "clean_label"), train_per_class=20,
                      test_per_class=5, epochs=0.5, surrogate_epochs=0.2, trojan_steps=3, cl_steps=1)
    assert len(E.attacker_trials(cfg)) == 2
    E.attackers(cfg, ArtifactCache())
    keys = E.attacker_keys(cfg)
    trojan, cl, badnets_ = (E.victim_trial(cfg, "plain", a, 100, keys) for a in ("trojan", "clean_label", "badnets"))
    assert trojan.spec["poisons"]["args"]["attacker_key"] == keys[0] and not trojan.spec["poisons"]["args"]["surrogate_key"]
    assert cl.spec["poisons"]["args"]["surrogate_key"] == keys[1] and not cl.spec["poisons"]["args"]["attacker_key"]
    assert not badnets_.spec["poisons"]["args"]["attacker_key"] and not badnets_.spec["poisons"]["args"]["surrogate_key"]
    x, y, positions = poisoned_training_set(trojan.spec["dataset"], trojan.spec["poisons"])
    probe = trojan.spec["probes"]["trigger"]
    clean_x = E.EV.cifar10_training_set(20)[0][positions]
    assert torch.equal(x[positions], E.apply_test_trigger(clean_x, None, **probe["args"]))  # train = test trigger
    E._trigger.cache_clear()
    from poisonrepro.executor import execute_trial
    import json
    first = execute_trial(trojan.fn, json.dumps(trojan.spec), 1)
    second = execute_trial(trojan.fn, json.dumps(trojan.spec), 1)  # the trigger now cached in the process
    assert float(first["test_accuracy"]) == float(second["test_accuracy"])
    assert torch.equal(first["epoch_loss"], second["epoch_loss"])
    out = evaluation_trial(**cl.spec)
    assert int(out["bad"].sum()) > 0 and 0 <= float(out["attack_success_rate"]) <= 1
