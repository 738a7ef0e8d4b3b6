"""Notebook 04's experiments (the from-scratch benchmark of WB-T1): its config refuses bad input
before any compute, the setups follow the benchmark's threat model, the stored poisons keep the
budget, the benchmark's L-inf feature collision and the step schedule behave as documented."""
import pytest
import torch

from poisonrepro import evaluation as EV
from poisonrepro import models as M
from poisonrepro import train as T
from poisonrepro.attacks import feature_collision as FC
from poisonrepro.config import ConfigError, dry_run, load_config
from poisonrepro.config.witches_brew import ATTACKS
from poisonrepro.papers.witches_brew import experiments as E

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.mark.parametrize("change, message", [
    (dict(eps=16), "16/255"),
    (dict(eps=0.0), "eps"),
    (dict(budget=0.0), "budget"),
    (dict(budget=1.0), "budget"),
    (dict(budget=0.5), "bases"),                      # more poisons than a class has images
    (dict(victims=("resnet50",)), "victims"),          # unknown architecture
    (dict(attacks=("poison_ivy",)), "attacks"),        # unknown attack
    (dict(attacks=()), "non-empty"),                   # no attack at all
    (dict(victims=("resnet18", "vgg11_standin")), "stand-ins"),
    (dict(attacks=("convex_polytope", "convex_polytope")), "at most once"),
])
def test_the_config_refuses_bad_input(change, message):
    with pytest.raises(ConfigError, match=message):
        load_config("witches_brew", "cpu", **change)


def test_the_profiles_poison_one_percent_within_8_of_255():
    for profile in ("smoke", "cpu", "paper"):
        cfg = load_config("witches_brew", profile)
        assert cfg.budget == 0.01 and cfg.eps == 8 / 255
        assert cfg.attacks == (ATTACKS if profile == "paper" else ("feature_collision", "gradient_matching_K1"))
    paper = load_config("witches_brew", "paper")
    assert paper.n_poisons == 500 and paper.n_targets == 100 and paper.victims == ("resnet18", "mobilenet_v2", "vgg11")
    cpu = load_config("witches_brew", "cpu")
    assert cpu.n_targets >= 10 and cpu.n_poisons == 500  # issue 23: >= 10 targets, all 50,000 images
    assert cpu.victims == ("convnet_bn",) and cpu.crafting_networks == "convnet_bn"
    assert dry_run(paper).n_poisons == 1


def test_the_plan_counts_a_victim_per_attack_setup_and_architecture():
    cfg = load_config("witches_brew", "cpu", attacks=ATTACKS, victims=("resnet18_standin", "mobilenet_v2_standin",
                                                                      "vgg11_standin"), crafting_networks="standins")
    rows = E.plan(cfg)
    victims = [r for r in rows if r["stage"].startswith("victims")]
    assert [r["trials"] for r in victims] == [(len(ATTACKS) + 1) * cfg.n_targets] * 3  # + a clean victim per setup
    surrogates = [r for r in rows if r["stage"].startswith("surrogate")]
    # ResNet-18 x4 (K=4), VGG-11 x2 and MobileNet-V2 x2 (K=6), the adversarially trained ResNet-18
    assert len(surrogates) == 9 and sum("adversarial" in r["stage"] for r in surrogates) == 1
    adversarial = next(r for r in surrogates if "adversarial" in r["stage"])
    plain = next(r for r in surrogates if r["stage"] == "surrogate resnet18_standin")
    assert adversarial["flops_per_trial"] == pytest.approx(8 * plain["flops_per_trial"])  # 7 PGD steps per batch
    crafting = {r["stage"]: r for r in rows if r["stage"].startswith("craft")}
    assert crafting["craft gradient_matching_K6het"]["flops_per_trial"] > crafting["craft gradient_matching_K1"]["flops_per_trial"]


def test_stored_poisons_keep_an_integer_budget_exactly():
    gen = torch.Generator().manual_seed(0)
    bases = torch.randint(0, 256, (64, 3, 8, 8), generator=gen, dtype=torch.uint8)
    delta = (torch.rand(bases.shape, generator=gen) * 2 - 1) * 8 / 255
    delta[0] = 8 / 255  # the box's corners, where rounding could step over
    delta[1] = -8 / 255
    poisons = (bases.float() / 255 + delta).clamp(0, 1)
    pixels = E.to_pixels(poisons)
    assert pixels.dtype == torch.uint8
    assert (pixels.int() - bases.int()).abs().max() <= 8
    assert (pixels.float() / 255 - poisons).abs().max() <= 0.5 / 255 + 1e-6


def test_the_setups_follow_the_benchmarks_threat_model(mirror):
    cfg = load_config("witches_brew", "smoke", n_targets=6)
    setups = E.make_setups(cfg)
    _, y = EV.cifar10_training_set(cfg.train_per_class)
    assert (setups["adversarial"] != setups["target_label"]).all()
    for t in range(cfg.n_targets):
        assert (y[setups["base_pos"][t]] == int(setups["adversarial"][t])).all()     # bases: adversarial class
        assert (y[setups["source_pos"][t]] == int(setups["target_label"][t])).all()  # HTBD sources: target class
        assert len(set(setups["base_pos"][t].tolist())) == cfg.n_poisons
    again = E.make_setups(cfg)
    assert all((again[k] == setups[k]).all() for k in setups)
    other = E.make_setups(load_config("witches_brew", "smoke", n_targets=6, seed=1))
    assert (other["target_index"] != setups["target_index"]).any()


def test_a_victim_without_its_poisons_in_the_cache_says_so(mirror, isolated_artifacts):
    cfg = load_config("witches_brew", "smoke")
    trial = E.victim_spec(cfg, "convnet_bn", 0, [0], attack="gradient_matching_K1", setup=0, data=E.make_setups(cfg))
    with pytest.raises(FileNotFoundError, match="crafting stage"):
        EV.evaluation_trial(**trial.spec)


def test_the_benchmarks_linf_feature_collision_keeps_the_budget_and_collides():
    torch.manual_seed(0)
    net = M.build_model("convnet").eval()  # without batch norm: an untrained net's features still differ
    gen = torch.Generator().manual_seed(1)
    bases, target = torch.rand(4, 3, 32, 32, generator=gen), torch.rand(1, 3, 32, 32, generator=gen)
    eps = 8 / 255
    poisons, history = FC.craft_poisons(net, bases, target, beta=0.0, iters=40, lr=0.01, opacity=0.3, eps=eps)
    assert (poisons - bases).abs().max() <= eps + 1e-6 and poisons.min() >= 0 and poisons.max() <= 1
    with torch.no_grad():
        start = (bases + (FC.watermark(bases, target, 0.3) - bases).clamp(-eps, eps)).clamp(0, 1)
        dist = lambda x: ((net.features(x) - net.features(target)) ** 2).flatten(1).sum(1)  # noqa: E731
        assert (dist(poisons) < 0.95 * dist(start)).all()  # every pair moved towards the target
    with pytest.raises(ValueError, match="beta=0"):
        FC.craft_poisons(net, bases, target, beta=0.1, iters=1, lr=0.01, eps=eps)
    with pytest.raises(ValueError, match="8/255"):
        FC.craft_poisons(net, bases, target, beta=0.0, iters=1, lr=0.01, eps=8)


def test_the_step_schedule_and_the_linear_one():
    steps = T.VictimRecipe(schedule="steps", milestones=(0.5, 0.75), warmup=0.0)
    assert T.VictimRecipe(schedule="steps", warmup=0.1).lr_factor(90, 100) == 1.0  # no milestones: constant
    assert [steps.lr_factor(s, 100) for s in (0, 49, 50, 74, 75, 99)] == pytest.approx([1, 1, 0.1, 0.1, 0.01, 0.01])
    linear = T.VictimRecipe(warmup=0.2)
    assert linear.lr_factor(0, 100) == pytest.approx(0.1) and linear.lr_factor(20, 100) == pytest.approx(1.0)
    assert linear.lr_factor(60, 100) == pytest.approx(0.5) and linear.lr_factor(100, 100) == 0
    for bad in (dict(schedule="steps", milestones=(0.75, 0.5)), dict(schedule="steps", milestones=(1.5,)),
                dict(lr_decay=0.0), dict(milestones=(0.5,)), dict(schedule="cosine")):
        with pytest.raises(ValueError, match="milestones|lr_decay|schedule"):
            T.VictimRecipe(**bad)


def test_the_paper_recipe_is_the_benchmarks():
    fields = E.recipe_fields(load_config("witches_brew", "paper"), 200)
    recipe = EV.recipe_from(fields)
    assert (recipe.batch_size, recipe.lr, recipe.weight_decay, recipe.epochs) == (128, 0.1, 2e-4, 200)
    assert recipe.milestones == (0.5, 0.75) and recipe.lr_decay == 0.1  # epochs 100 and 150 of 200
    assert recipe.label_smoothing == 0 and not recipe.nesterov and recipe.crop_pad == 4


def _fake_imagenet(root, classes=3, train=6, val=2, size=40):
    """A tiny ImageNet as torchvision's loader expects it (meta.bin, train/ and val/ folders)."""
    from PIL import Image
    root.mkdir(parents=True, exist_ok=True)
    wnids = [f"n{i:08d}" for i in range(classes)]
    torch.save(({w: (f"class {i}",) for i, w in enumerate(wnids)}, [w for w in wnids for _ in range(val)]),
               root / "meta.bin")
    gen = torch.Generator().manual_seed(0)
    for split, count in (("train", train), ("val", val)):
        for i, w in enumerate(wnids):
            (root / split / w).mkdir(parents=True)
            for j in range(count):
                img = (torch.rand(size, size, 3, generator=gen) * 80 + 60 * i).clamp(0, 255).to(torch.uint8)
                Image.fromarray(img.numpy()).save(root / split / w / f"{w}_{j}.JPEG")


def test_wb_a_runs_through_torchvisions_imagenet_loader_and_is_cached(tmp_path, isolated_artifacts, monkeypatch):
    from poisonrepro.cache import ArtifactCache
    from poisonrepro.papers.witches_brew import imagenet as I
    _fake_imagenet(tmp_path / "imagenet")
    cfg = load_config("witches_brew", "smoke", imagenet_budget=0.1)  # 2 of the 18 training images
    settings = dict(n_targets=1, victims_per_setup=1, steps=2, restarts=1, image_size=32, victim_epochs=1,
                    surrogate_epochs=1, batch_size=6, workers=0)
    row = I.wb_a(cfg, ArtifactCache(), root=str(tmp_path / "imagenet"), settings=settings)
    assert row["run"] and row["setups"] == 1 and row["victims"] == 1 and 0 <= row["success_rate"] <= 1
    assert row["max_linf_255"] <= 255 * cfg.imagenet_eps + 1e-6
    monkeypatch.setattr(I, "run", lambda *a, **k: pytest.fail("recomputed instead of loading the cache"))
    again = I.wb_a(cfg, ArtifactCache(), root=str(tmp_path / "imagenet"), settings=settings)
    assert again == row
    status = I.wb_a(cfg, ArtifactCache())  # no ImageNet at the default root: not run, and why
    assert not status["run"] and "POISONREPRO_IMAGENET" in status["why_not"]


# --------------------------------------------------------------------------- the victim-strength diagnostic
def test_the_victim_strength_diagnostic_refuses_bad_input_before_any_compute(isolated_artifacts):
    from poisonrepro.papers.witches_brew import victim_strength as VS
    with pytest.raises(ConfigError, match="epochs"):
        VS.main(["--epochs", "3", "0", "--out", str(isolated_artifacts / "vs.json")])
    with pytest.raises(ConfigError, match="n_targets"):
        VS.main(["--targets", "0", "--out", str(isolated_artifacts / "vs.json")])
    with pytest.raises(ConfigError, match="clean-victims"):
        VS.main(["--clean-victims", "0", "--out", str(isolated_artifacts / "vs.json")])
    assert not (isolated_artifacts / "vs.json").exists() and not (isolated_artifacts / "artifacts").exists()


def test_the_victim_strength_diagnostic_measures_fit_and_counts(mirror, isolated_artifacts):
    import json

    from poisonrepro.papers.witches_brew import victim_strength as VS
    out = isolated_artifacts / "vs.json"
    rows = VS.main(["--profile", "smoke", "--epochs", "1", "--targets", "2", "--clean-victims", "1", "--out", str(out)])
    assert json.loads(out.read_text()) == rows and len(rows) == 1
    r = rows[0]
    assert (r["success_n"], r["base_n"]) == (2, 2) and 0 <= r["success"] <= 2 and 0 <= r["base"] <= 2
    assert 0 <= r["poison_fit"] <= 1 and 0 <= r["poisoned_train_accuracy"] <= 1
    # the poisons each victim fits are the ones the craft stage stored for its setup
    cfg = VS.strength_config(1, 2, "smoke")
    data = E.prepare_data(cfg)
    one = EV.evaluation_trial(**E.victim_spec(cfg, "convnet_bn", 0, [int(data["target_index"][0])],
                                              attack=VS.ATTACK, setup=0, data=data, fit=True, epochs=1).spec)
    assert float(one["poison_fit"]) in {k / cfg.n_poisons for k in range(cfg.n_poisons + 1)}
    clean = EV.evaluation_trial(**E.victim_spec(cfg, "convnet_bn", 0, [0], fit=True, epochs=1).spec)
    assert torch.isnan(clean["poison_fit"])


def test_the_victim_strength_verdicts():
    from poisonrepro.papers.witches_brew import victim_strength as VS
    row = dict(epochs=40, wb_steps=250, wb_restarts=1, poisoned_train_accuracy=1.0, clean_train_accuracy=1.0, poison_fit=1.0,
               poisoned_test_accuracy=0.5, clean_test_accuracy=0.5, surrogate_test_accuracy=0.5)
    table = VS.summarize([{**row, "success": 12, "success_n": 20, "base": 8, "base_n": 160},
                          {**row, "success": 1, "success_n": 20, "base": 8, "base_n": 160},
                          {**row, "success": 0, "success_n": 20, "base": 80, "base_n": 160}])
    assert table["verdict"].tolist() == ["holds", "inconclusive", "fails"]
