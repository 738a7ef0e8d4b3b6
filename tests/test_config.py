import dataclasses

import pytest

from poisonrepro.config import (PROFILE_NAMES, ConfigError, as_dict, config_hash, dry_run, load_config,
                                profile_sources)


@pytest.mark.parametrize("profile", PROFILE_NAMES)
def test_every_profile_validates(profile):
    cfg = load_config("poison_frogs", profile)
    assert cfg.profile == profile


def test_unknown_profile_names_the_allowed_ones():
    with pytest.raises(ConfigError, match="unknown profile 'fast'.*smoke, cpu, paper"):
        load_config("poison_frogs", "fast")


def test_unknown_paper():
    with pytest.raises(ConfigError, match="unknown paper 'frogs'"):
        load_config("frogs", "smoke")


def test_unknown_key_names_key_and_allowed_keys():
    with pytest.raises(ConfigError, match="unknown config key.*n_poisons.*allowed keys:.*n_targets"):
        load_config("poison_frogs", "smoke", n_poisons=3)


def test_epsilon_on_the_wrong_scale_is_refused():
    with pytest.raises(ConfigError, match=r"evasion_eps=8.*did you mean 8/255"):
        load_config("poison_frogs", "smoke", evasion_eps=8)
    assert load_config("poison_frogs", "smoke", evasion_eps=8 / 255).evasion_eps == 8 / 255


@pytest.mark.parametrize("key,value,pattern", [
    ("n_targets", -1, r"n_targets=-1: must lie in \[1"),
    ("n_targets", 2.5, "expected int, got float"),
    ("head_lr", "0.01", "expected float, got str"),
    ("e2e_opacities", (0.3, 1.5), r"e2e_opacities=1.5: must lie in \[0, 1\]"),
    ("e2e_poison_counts", (), "non-empty tuple"),
    ("transfer_class_a", "fish", "allowed values are 'airplane'"),
    ("e2e_num_classes", 3, "allowed values are 2, 10"),
    ("head_lr", float("nan"), "finite"),
    ("seed", True, "expected int, got bool"),
])
def test_bad_values_are_rejected_with_the_key_named(key, value, pattern):
    with pytest.raises(ConfigError, match=pattern):
        load_config("poison_frogs", "smoke", **{key: value})


def test_cross_field_checks():
    with pytest.raises(ConfigError, match="must differ"):
        load_config("poison_frogs", "smoke", transfer_class_a="frog", transfer_class_b="frog")
    with pytest.raises(ConfigError, match="n_targets=500"):
        load_config("poison_frogs", "smoke", n_targets=500)


def test_dry_run_runs_every_loop_once():
    cfg = dry_run(load_config("poison_frogs", "paper"))
    assert cfg.craft_iters == cfg.head_epochs == cfg.e2e_craft_iters == cfg.e2e_finetune_epochs == 1
    assert cfg.e2e_poison_counts == (1,) and len(cfg.beta_sweep) == 1
    # what is not a loop keeps the published setting
    assert cfg.extractor == "inception_v3_imagenet" and cfg.e2e_model == "alexnet_cifar"
    assert cfg.e2e_finetune_lr == 1.85e-5


def test_paper_profile_cites_its_sources():
    sources = profile_sources("poison_frogs", "paper")
    assert "beta0" in sources and "Sec. 4.1" in sources["beta0"]


def test_config_hash_depends_on_the_selected_keys_only():
    a = load_config("poison_frogs", "smoke")
    b = dataclasses.replace(a, n_targets=3)
    assert config_hash(a, keys=["seed", "craft_iters"]) == config_hash(b, keys=["seed", "craft_iters"])
    assert config_hash(a) != config_hash(b)
    assert config_hash(as_dict(a)) == config_hash(a)
