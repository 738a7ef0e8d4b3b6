"""The trigger backdoors of notebook 11 (BadNets, blend, SIG) and the poisoning step they share:
bad input refused before anything is drawn, the triggers are the papers' (pixels, blend, signal
amplitude and frequency), the poisoned set has the stated size and labels and leaves the clean
set untouched, and a planted BadNets backdoor is learned by a linear model (the attack success
rate rises from the clean model's to near 1) while clean accuracy holds."""
import numpy as np
import pytest
import torch
from sklearn.linear_model import LogisticRegression

from poisonrepro.attacks import backdoor_poisoning as BP
from poisonrepro.attacks import badnets, blend, sig

ATTACKS = {"badnets": badnets, "blend": blend, "sig": sig}


def _images(n=200, seed=0, size=8):
    g = torch.Generator().manual_seed(seed)
    return torch.randint(0, 256, (n, 3, size, size), generator=g, dtype=torch.uint8), torch.arange(n) % 4


@pytest.mark.parametrize("name", ATTACKS)
@pytest.mark.parametrize("change, message", [
    (dict(rate=1.0), "rate="), (dict(rate=-0.1), "rate="), (dict(rate=True), "rate="),
    (dict(target_class=4), "target_class="), (dict(target_class=-1), "target_class="),
])
def test_bad_input_is_refused(name, change, message):
    x, y = _images()
    with pytest.raises(ValueError, match=message):
        ATTACKS[name].craft_poisons(x, y, **{**dict(rate=0.1, target_class=0, num_classes=4), **change})


def test_float_images_and_oversized_triggers_are_refused():
    x, y = _images(size=2)
    with pytest.raises(ValueError, match="does not fit"):
        badnets.craft_poisons(x, y, rate=0.1, target_class=0, num_classes=4)
    with pytest.raises(ValueError, match="uint8"):
        badnets.craft_poisons(x.float() / 255, y, rate=0.1, target_class=0, num_classes=4)
    with pytest.raises(ValueError, match="only 150 non-target"):  # dirty label: poisons come from the other classes
        badnets.craft_poisons(*_images(size=8), rate=0.8, target_class=0, num_classes=4)


def test_the_badnets_grid_is_a_corner_checkerboard():
    x, _ = _images(4)
    out = badnets.apply_trigger(x)
    assert out[:, :, -3:, -3:].tolist() == [[[[255, 0, 255], [0, 255, 0], [255, 0, 255]]] * 3] * 4
    assert torch.equal(out[:, :, :-3], x[:, :, :-3]) and torch.equal(out[:, :, :, :-3], x[:, :, :, :-3])


def test_blend_and_sig_triggers():
    x, _ = _images(4)
    key = blend.noise_key(x.shape[1:])
    assert torch.equal(blend.apply_trigger(x), (0.8 * x.float() + 0.2 * key.float()).round().to(torch.uint8))
    fresh = blend.apply_trigger(x, torch.Generator().manual_seed(3), per_image=True)
    assert not torch.equal(fresh, blend.apply_trigger(x))
    flat = torch.full((1, 3, 32, 32), 128, dtype=torch.uint8)
    v = sig.apply_trigger(flat)[0, 0].float() - 128
    assert v.abs().max() == pytest.approx(20, abs=0.5) and torch.equal(v[0], v[31])  # Delta 20, constant per column
    spectrum = np.abs(np.fft.rfft(v[0].numpy()))
    assert int(spectrum.argmax()) == 6                                            # f = 6 cycles over the width


@pytest.mark.parametrize("name, clean_label", [("badnets", False), ("blend", False), ("sig", True)])
def test_the_poisoned_set_has_the_stated_size_and_labels_and_the_clean_set_stays_clean(name, clean_label):
    x, y = _images()
    before = x.clone()
    out = ATTACKS[name].craft_poisons(x, y, rate=0.1, target_class=2, num_classes=4, seed=5)
    assert torch.equal(x, before)                           # never in place
    if clean_label:  # the target-class images among 20 drawn from all 200: about a quarter of them
        assert 0 < len(out.poisoned) < 20
    else:
        assert len(out.poisoned) == 20
    assert (out.labels[out.poisoned] == 2).all()
    assert ((y[out.poisoned] == 2).all() if clean_label else (y[out.poisoned] != 2).all())
    rest = torch.ones(len(x), dtype=torch.bool)
    rest[out.poisoned] = False
    assert torch.equal(out.images[rest], x[rest]) and torch.equal(out.labels[rest], y[rest])
    assert not torch.equal(out.images[out.poisoned], x[out.poisoned])
    again = ATTACKS[name].craft_poisons(x, y, rate=0.1, target_class=2, num_classes=4, seed=5)
    assert torch.equal(again.images, out.images) and torch.equal(again.poisoned, out.poisoned)


def test_clean_label_poisons_are_the_target_class_images_among_a_rate_share_of_all_indices():
    """ABL's data_loader.py (DatasetBD.addTrigger, cleanLabel): a random ``rate`` share of every
    index is drawn and only its target-class images are triggered. At rate 0.1 on a balanced
    set that is about 10% of the target class (here 500 airplanes of 5,000 images: about 50),
    not every target-class image; any rate below 1 is allowed."""
    y = torch.arange(5000) % 10
    x = torch.zeros(5000, 3, 4, 4, dtype=torch.uint8)
    for seed in range(5):
        out = BP.poison_training_set(x, y, lambda im, g: im + 1, rate=0.1, target_class=0, clean_label=True,
                                     seed=seed)
        assert (y[out.poisoned] == 0).all() and torch.equal(out.labels, y)
        assert 25 <= len(out.poisoned) <= 75, len(out.poisoned)       # ~ hypergeometric(5000, 500, 500): 50 +- 7
        drawn = torch.randperm(5000, generator=torch.Generator().manual_seed(seed))[:500]
        assert torch.equal(out.poisoned, drawn[y[drawn] == 0].sort().values)  # the repository's draw
    most = BP.poison_training_set(x, y, lambda im, g: im + 1, rate=0.9, target_class=0, clean_label=True)
    assert 400 <= len(most.poisoned) < 500


def test_a_planted_badnets_backdoor_is_learned():
    rng = np.random.default_rng(0)
    n, size = 1200, 8

    def draw(m):
        y = rng.integers(0, 4, m)
        base = np.array([40, 100, 160, 220])[y]
        x = np.clip(base[:, None, None, None] + rng.normal(0, 50, (m, 3, size, size)), 0, 255)
        return torch.as_tensor(x.astype(np.uint8)), torch.as_tensor(y)
    x, y = draw(n)
    xt, yt = draw(800)
    fit = lambda a, b: LogisticRegression(max_iter=2000).fit(a.reshape(len(a), -1).float().numpy() / 255, b.numpy())  # noqa: E731
    triggered, _ = BP.triggered_test_set(xt, yt, badnets.apply_trigger, 0)
    flat = lambda a: a.reshape(len(a), -1).float().numpy() / 255  # noqa: E731
    clean = fit(x, y)
    poisoned_set = badnets.craft_poisons(x, y, rate=0.1, target_class=0, num_classes=4)
    poisoned = fit(poisoned_set.images, poisoned_set.labels)
    asr_clean = BP.attack_success_rate(clean.predict(flat(triggered)), 0)
    asr = BP.attack_success_rate(poisoned.predict(flat(triggered)), 0)
    assert asr_clean < 0.2 and asr > 0.9
    assert poisoned.score(flat(xt), yt.numpy()) > clean.score(flat(xt), yt.numpy()) - 0.05


def test_the_trigger_backdoors_are_registered():
    from poisonrepro import registry
    for name in (*ATTACKS, "trojan"):
        method = registry.get(name)
        assert method.notebook == "11_abl" and method.taxonomy["violation"] == "integrity"


# --------------------------------------------------------------------------- Trojan
def test_the_trojan_trigger_drives_the_selected_neurons_and_stays_in_its_mask():
    from torch import nn

    from poisonrepro.attacks import trojan
    torch.manual_seed(0)
    conv = nn.Conv2d(3, 8, 3, padding=1)
    head = nn.Linear(8, 4)
    model = nn.Sequential(conv, nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(), head).eval()
    with torch.no_grad():
        head.weight[:, 5] = 3.0                                        # unit 5: the strongest outgoing weights
    neurons = trojan.select_neurons(head.weight, 1)
    assert neurons.tolist() == [5]
    hidden = trojan.layer_activations(model, model[3])                 # the pooled conv units
    mask = trojan.mask_at((8, 8), 3, (5, 5))
    trigger = trojan.generate_trigger(hidden, neurons, mask, steps=100)
    assert (trigger[:, ~mask] == 0).all() and 0 <= trigger.min() and trigger.max() <= 1
    images, labels = _images(50)
    with torch.no_grad():
        optimised = hidden(trojan.apply_trigger(images, trigger, mask).float() / 255)[:, 5].mean()
        random = hidden(trojan.apply_trigger(images, torch.rand(3, 8, 8) * mask, mask).float() / 255)[:, 5].mean()
    assert optimised > random                                           # the optimisation did its job
    out = trojan.craft_poisons(images, labels, trigger, mask, rate=0.2, target_class=1, num_classes=4)
    assert len(out.poisoned) == 10 and (out.labels[out.poisoned] == 1).all()
    changed = (out.images != images).any(1)                            # [N, H, W]: pixels that differ
    assert not changed[:, ~mask].any()


def test_trojan_bad_input():
    from poisonrepro.attacks import trojan
    with pytest.raises(ValueError, match="does not fit"):
        trojan.mask_at((8, 8), 3, (6, 6))
    with pytest.raises(ValueError, match="does not fit"):
        trojan.mask_at((2, 2), 3, (0, 0))
    with pytest.raises(ValueError, match="count="):
        trojan.select_neurons(torch.ones(4, 8), 9)
