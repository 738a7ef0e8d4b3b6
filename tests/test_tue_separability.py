"""Notebook 14 (TUE), artifact TUE-LS: the linear-separability test of Yu et al. 2022. Class-wise
patterns are separable for both models, i.i.d. noise with random labels is not (few features, many
samples), the result is a function of the seed that leaves the global generators alone, and bad
arguments are refused, naming the argument, before any compute."""
import pytest
import torch

from poisonrepro.papers.tue.separability import separability

pytestmark = pytest.mark.usefixtures("one_thread")
SHAPE = (3, 4, 4)   # 48 features
K = 10


def class_wise(n: int = 200, seed: int = 1) -> tuple[torch.Tensor, torch.Tensor]:
    """One fixed pattern per class (at the 8/255 scale of a perturbation) plus small noise."""
    g = torch.Generator().manual_seed(seed)
    patterns = (torch.rand((K, *SHAPE), generator=g) * 2 - 1) * 8 / 255
    labels = torch.arange(n) % K
    noise = torch.randn((n, *SHAPE), generator=g) * 0.05 * 8 / 255
    return patterns[labels] + noise, labels


def random_noise(n: int = 3000, seed: int = 2) -> tuple[torch.Tensor, torch.Tensor]:
    """I.i.d. uniform noise with labels drawn independently of it: nothing to separate. With
    n = 3000 samples against 49 x 10 parameters, a linear fit cannot memorise the labels."""
    g = torch.Generator().manual_seed(seed)
    return (torch.rand((n, *SHAPE), generator=g) * 2 - 1) * 8 / 255, torch.randint(0, K, (n,), generator=g)


@pytest.mark.parametrize("model", ["linear", "two_layer"])
def test_class_wise_patterns_are_separable(model):
    x, y = class_wise()
    assert separability(x, y, model=model) >= 0.95


def test_iid_noise_with_random_labels_is_far_less_separable():
    acc = separability(*random_noise(), model="linear")
    assert 0.0 <= acc < 0.5
    assert acc < separability(*class_wise(), model="linear") - 0.4


def test_constant_perturbations_give_the_majority_share():
    # nothing but the bias to fit: the model predicts the commonest class
    y = torch.tensor([0, 0, 0, 1])
    assert separability(torch.zeros(4, *SHAPE), y, steps=5) == pytest.approx(0.75)


def test_deterministic_per_seed_and_leaves_the_global_generators_alone():
    x, y = random_noise(n=300)
    before = torch.get_rng_state()
    first = separability(x, y, model="two_layer", steps=5, seed=3)
    assert torch.equal(before, torch.get_rng_state())
    assert separability(x, y, model="two_layer", steps=5, seed=3) == first
    assert 0.0 <= first <= 1.0


GOOD_X, GOOD_Y = torch.zeros(4, *SHAPE), torch.tensor([0, 1, 0, 1])


@pytest.mark.parametrize("args, kwargs, match", [
    ((GOOD_X.numpy(), GOOD_Y), {}, r"perturbations: expected a torch.Tensor"),
    ((GOOD_X.long(), GOOD_Y), {}, r"perturbations: expected a floating-point tensor"),
    ((GOOD_X[0], GOOD_Y), {}, r"perturbations: expected 4 dimensions"),
    ((torch.full((4, *SHAPE), float("nan")), GOOD_Y), {}, r"perturbations: contains NaN"),
    ((GOOD_X, GOOD_Y.float()), {}, r"labels: expected dtype torch.long"),
    ((GOOD_X, GOOD_Y[:3]), {}, r"labels: expected shape \[N\] = \[4\]"),
    ((GOOD_X, GOOD_Y - 1), {}, r"labels: class indices must be >= 0"),
    ((GOOD_X, GOOD_Y.tolist()), {}, r"labels: expected a torch.Tensor"),
    ((GOOD_X, GOOD_Y), {"model": "mlp"}, r"model='mlp': allowed values are 'linear', 'two_layer'"),
    ((GOOD_X, GOOD_Y), {"hidden": 0}, r"hidden=0: must be a positive integer"),
    ((GOOD_X, GOOD_Y), {"hidden": True}, r"hidden=True: must be a positive integer"),
    ((GOOD_X, GOOD_Y), {"steps": 2.5}, r"steps=2.5: must be a positive integer"),
    ((GOOD_X, GOOD_Y), {"seed": -1}, r"seed=-1: must be an integer"),
])
def test_bad_arguments_raise_naming_the_argument(args, kwargs, match):
    with pytest.raises(ValueError, match=match):
        separability(*args, **kwargs)


def test_a_diverged_fixed_step_fit_is_redone_with_a_line_search(monkeypatch):
    from poisonrepro.papers.tue import separability as SEP
    g = torch.Generator().manual_seed(0)
    labels = torch.arange(40) % 4
    perturbations = torch.randn(40, 3, 4, 4, generator=g) * 0.01 + labels.view(-1, 1, 1, 1).float()
    calls = []
    fit = SEP._fit

    def spy(net, x, y, steps, line_search):
        calls.append(line_search)
        return fit(net, x, y, steps, line_search)

    monkeypatch.setattr(SEP, "_fit", spy)
    monkeypatch.setattr(SEP, "LR", 1e12)  # the fixed step explodes
    acc = SEP.separability(perturbations, labels, model="two_layer", steps=5)
    assert calls == [None, "strong_wolfe"] and acc == 1.0
