"""Bad input is refused at config time, before any compute, by a message that names the key and
its real allowed range (issue 24, §4)."""
import dataclasses

import numpy as np
import pytest
import torch

from poisonrepro import data as D
from poisonrepro.config import SEED_MAX, ConfigError, known_papers, load_config
from poisonrepro.config import _module as config_module


def _refused(paper, match, profile="smoke", **overrides):
    with pytest.raises(ConfigError, match=match):
        load_config(paper, profile, **overrides)


# --------------------------------------------------------------------------- seeds
@pytest.mark.parametrize("seed", [2 ** 70, 2 ** 64, SEED_MAX + 1, -1])
def test_a_seed_out_of_range_is_refused_naming_the_seed_and_its_range(seed):
    _refused("abl", rf"seed={seed}: must lie in \[0, 4294967295\]", seed=seed)


def test_the_seed_bound_is_the_one_numpys_legacy_seeding_takes():
    """scikit-learn's ``random_state`` (notebook 07's PCA) seeds numpy's legacy RandomState, which
    takes [0, 2**32 - 1]: the config's bound, no tighter."""
    np.random.RandomState(SEED_MAX)
    torch.Generator().manual_seed(SEED_MAX)
    with pytest.raises(ValueError):
        np.random.RandomState(SEED_MAX + 1)
    assert load_config("pgan", "smoke", seed=SEED_MAX).seed == SEED_MAX


def test_dpa_refuses_a_seed_whose_partition_generators_torch_cannot_take():
    from poisonrepro.defenses import dpa
    cfg = load_config("dpa", "paper")
    top = cfg.seed_max()
    k, epochs = max(cfg.cifar_ks + cfg.mnist_ks), max(cfg.cifar_epochs, cfg.mnist_epochs)
    dpa._generator(top, k - 1, epochs - 1)  # the largest seed the last partition's last epoch needs
    with pytest.raises((ValueError, RuntimeError, OverflowError)):
        dpa._generator(top + 1, k - 1, epochs - 1)
    _refused("dpa", rf"seed={top + 1}: .*2\*\*64 - 1.*must lie in \[0, {top}\]", profile="paper", seed=top + 1)
    assert load_config("dpa", "paper", seed=top).seed == top


# --------------------------------------------------------------------------- DPA's mnist_ks
def test_mnist_ks_larger_than_mnists_training_set_is_refused():
    _refused("dpa", r"mnist_ks=70000: must lie in \[1, 60000\]", mnist_ks=(8, 70_000))


def test_mnist_ks_larger_than_mnist_train_is_refused_at_config_time():
    # smoke trains on the first 400 digits: 500 partitions of them would leave 100 empty
    _refused("dpa", r"mnist_ks: k=500 is larger than the training set \(mnist_train=400\)", mnist_ks=(8, 500))


def _mirror_of(n):
    """A stand-in for the offline mirror's MNIST training set, of ``n`` digits."""
    def load(split="test", data_dir=None, download=True):
        size = n if split == "train" else 100
        return D.ArrayDataset(np.zeros((size, 28, 28), np.uint8), np.arange(size) % 10,
                              tuple(str(i) for i in range(10)), f"MNIST {split} stand-in of {size:,}")
    return load


@pytest.fixture
def offline_mirror(monkeypatch):
    from poisonrepro.papers.dpa import experiments as E
    E.dataset.cache_clear()
    monkeypatch.setattr(D, "load_mnist", _mirror_of(5000))
    yield E
    E.dataset.cache_clear()


def test_mnist_ks_larger_than_the_set_found_names_the_key_at_load_time(offline_mirror):
    """The cpu profile trains on every digit found: 60,000 from torchvision, 5,000 from the offline
    mirror, known only once loaded."""
    cfg = load_config("dpa", "cpu", mnist_ks=(25, 6000), planted_k=25)
    with pytest.raises(ConfigError, match=r"mnist_ks: k=6000 is larger than the MNIST training set \(5000 digits.*"
                                          r"must lie in \[1, 5000\]"):
        offline_mirror.check_sizes(cfg)
    offline_mirror.check_sizes(load_config("dpa", "cpu"))  # the committed k fit the mirror


def test_mnist_train_larger_than_the_set_found_names_the_key(offline_mirror):
    cfg = load_config("dpa", "cpu", mnist_train=6000)
    with pytest.raises(ConfigError, match=r"mnist_train=6000: the MNIST training set found has 5000 digits"):
        offline_mirror.check_sizes(cfg)


# --------------------------------------------------------------------------- the profile
@pytest.mark.parametrize("profile", ["", " "])
def test_an_empty_profile_is_an_error_naming_the_allowed_ones(profile):
    with pytest.raises(ConfigError, match=r"profile=.*is empty; allowed profiles: smoke, cpu, paper"):
        load_config("abl", profile)


def test_an_empty_profile_variable_is_an_error_and_an_unset_one_the_default(monkeypatch):
    monkeypatch.setenv("POISONREPRO_PROFILE", "")
    with pytest.raises(ConfigError, match=r"POISONREPRO_PROFILE='' is empty; allowed profiles: smoke, cpu, paper"):
        load_config("abl")
    monkeypatch.setenv("POISONREPRO_PROFILE", "cpu")
    assert load_config("abl").profile == "cpu"
    monkeypatch.delenv("POISONREPRO_PROFILE")
    assert load_config("abl").profile == "smoke"


# --------------------------------------------------------------------------- fractions and counts
@pytest.mark.parametrize("rate", [0.0, 1.0, -0.1])
def test_abl_needs_a_poison_rate_in_the_open_unit_interval(rate):
    _refused("abl", rf"poison_rate={rate}: must lie in \(0, 1\)", poison_rate=rate)


@pytest.mark.parametrize("paper, key, value, interval", [
    ("back_gradient", "poison_fractions", (-0.1, 0.1), "[0, 1)"),
    ("back_gradient", "mc_fractions", (-0.1,), "[0, 1)"),
    ("back_gradient", "lf_fractions", (-0.1,), "[0, 1)"),
    ("metapoison", "budgets", (-0.1,), "[1e-05, 1)"),
    ("metapoison", "finetune_budget", 0.0, "[1e-05, 1)"),
    ("metapoison", "color_eps", -0.1, "[0, 1)"),
    ("witches_brew", "budget", -0.1, "[0.0001, 1)"),
    ("witches_brew", "imagenet_budget", -0.1, "[1e-05, 1)"),
    ("trimmed_loss", "systematic_rate", -0.1, "(0, 1)"),
    ("trimmed_loss", "random_rate", 0.0, "(0, 1)"),
    ("trimmed_loss", "backdoor_rate", 0.0, "(0, 1)"),
    ("abl", "isolation_ratio", 0.0, "(0, 1)"),
    ("abl", "isolation_ratio", 1.0, "(0, 1)"),
    ("pgan", "pgan_fraction", -0.1, "[0, 1)"),  # 0 is refused by check(): "rounds to zero poisons"
    ("biggio_svm", "attack_fractions", (-0.1,), "[0, 1)"),
    ("biggio_svm", "C", 0.0, "(0, 1000000.0)"),
])
def test_a_fraction_is_refused_with_its_real_range(paper, key, value, interval):
    bad = value[0] if isinstance(value, tuple) else value
    with pytest.raises(ConfigError) as err:
        load_config(paper, "smoke", **{key: value})
    assert str(err.value) == f"{key}={bad!r}: must lie in {interval}"


@pytest.mark.parametrize("paper, key", [("abl", "epochs"), ("abl", "isolation_epochs"), ("abl", "finetune_epochs"),
                                        ("abl", "surrogate_epochs"), ("trimmed_loss", "epochs"),
                                        ("trimmed_loss", "round_epochs")])
def test_training_lengths_must_be_positive(paper, key):
    # train.VictimRecipe refuses 0 epochs, after the data load and without naming the key
    _refused(paper, rf"{key}=0.0: must lie in \(0, inf\)", **{key: 0.0})


def _violations(meta, annotation):
    """Values just outside a field's declared range, with the side they break."""
    is_int = annotation in (int, "int", "tuple[int, ...]")
    out = []
    if meta.get("min") is not None:
        out.append(meta["min"] - 1 if is_int else meta["min"] - 0.5)
    if meta.get("above") is not None:
        out.append(meta["above"])
    if meta.get("max") is not None and not meta.get("epsilon"):  # a budget above 1 gets the 0-255 hint
        out.append(meta["max"] + 1 if is_int else meta["max"] + 0.5)
    if meta.get("below") is not None:
        out.append(meta["below"])
    return out


@pytest.mark.parametrize("paper", known_papers())
def test_every_range_message_states_the_declared_interval(paper):
    """No message prints [lo, inf] for a range that has an upper bound (a fraction's [0, 1)), or
    brackets an excluded bound."""
    mod = config_module(paper)
    checked = 0
    for f in dataclasses.fields(mod.Config):
        meta = f.metadata
        if meta.get("choices") is not None:
            continue
        lo = "(" + repr(meta["above"]) if meta.get("above") is not None else \
            "[" + repr(meta["min"]) if meta.get("min") is not None else "(-inf"
        hi = repr(meta["below"]) + ")" if meta.get("below") is not None else \
            repr(meta["max"]) + "]" if meta.get("max") is not None else "inf)"
        for bad in _violations(meta, f.type):
            value = (bad,) if str(f.type).startswith("tuple") else bad
            with pytest.raises(ConfigError) as err:
                load_config(paper, "smoke", **{f.name: value})
            assert str(err.value) == f"{f.name}={bad!r}: must lie in {lo}, {hi}", (paper, f.name)
            checked += 1
    assert checked > 5


def test_the_float_epochs_of_other_papers_are_already_positive():
    """The search for fields of the same kind: every float training length is declared > 0."""
    for paper in known_papers():
        for f in dataclasses.fields(config_module(paper).Config):
            if f.name.endswith("epochs") and f.type in (float, "float"):
                meta = f.metadata
                assert meta.get("above") == 0 or (meta.get("min") or 0) > 0, (paper, f.name)
