"""Anti-Backdoor Learning (``defenses.abl``): bad settings refused before any training, LGA turns to
ascent below gamma, the unlearning runs its exact step count, and ABL removes a planted backdoor."""
import pytest
import torch

from poisonrepro import train as T
from poisonrepro.defenses import abl


@pytest.mark.parametrize("ratio", [0, 1, -0.1, 1.5, True])
def test_an_isolation_ratio_outside_0_1_is_refused(ratio):
    r = T.VictimRecipe(epochs=1)
    with pytest.raises(ValueError, match="isolation_ratio="):
        abl.ABLSchedule(r, r, r, isolation_ratio=ratio)


@pytest.mark.parametrize("gamma", [-0.5, float("nan"), float("inf")])
def test_a_bad_gamma_is_refused(gamma):
    with pytest.raises(ValueError, match="gamma="):
        abl.lga_loss(gamma)


def test_lga_descends_above_gamma_and_ascends_below():
    logits = torch.zeros(4, 3, requires_grad=True)
    labels = torch.zeros(4, dtype=torch.long)
    high = abl.lga_loss(0.5)(logits, labels)      # ce = ln 3 > 0.5: plain cross-entropy
    (g_high,) = torch.autograd.grad(high, logits)
    low = abl.lga_loss(2.0)(logits, labels)       # ce < 2: its negative
    (g_low,) = torch.autograd.grad(low, logits)
    torch.testing.assert_close(g_low, -g_high)
    assert float(high.detach()) == pytest.approx(float(torch.log(torch.tensor(3.0))))


def test_unlearning_runs_exactly_the_requested_ascent_steps():
    r = abl.constant(T.VictimRecipe(batch_size=64), lr=5e-4)
    for isolated, steps in ((50, 32), (500, 32), (64, 5), (1000, 7)):
        u = abl.unlearning_recipe(r, isolated, steps)
        assert round(u.epochs * max(1, isolated // 64)) == steps
    with pytest.raises(ValueError, match="isolated=0"):
        abl.unlearning_recipe(r, 0, 32)


def test_abl_removes_a_planted_backdoor(mirror, monkeypatch):
    """BadNets (a 5x5 grid, 10%, target airplane) on 1,500 CIFAR-10 images: ABL isolates poisons;
    its model after fine-tuning on the other 99% has the backdoor (they keep most poisons), and the
    ascent on the isolated 1% removes it. (A 3x3 grid is learned by so small a set only on some
    seeds and thread counts; the 5x5 one on every one tried.)"""
    from poisonrepro import data as D, models as M
    from poisonrepro.attacks import backdoor_poisoning as BP, badnets
    # fp32 on every host: under bf16 autocast with one thread (make test's) this 1,500-image set's
    # LGA isolation found 5 poisons among its 15 samples (precision 0.33), with two threads 12 or more
    monkeypatch.setenv("POISONREPRO_PRECISION", "fp32")
    d = D.cifar10_split(150, 30, 0)
    s = badnets.craft_poisons(d["x"], d["y"], rate=0.1, target_class=0, seed=0, size=5)
    trig, _ = BP.triggered_test_set(d["test_x"], d["test_y"], lambda im, g: badnets.apply_trigger(im, size=5), 0)

    def asr(model):
        return BP.attack_success_rate(T.predict_logits(model, T.to_unit(trig)).argmax(1), 0)
    iso = T.VictimRecipe(epochs=5, label_smoothing=0, crop_pad=0, flip=False)
    sched = abl.ABLSchedule(iso, T.VictimRecipe(epochs=10), abl.unlearning_recipe(abl.constant(iso, lr=5e-4), 15, 32))
    after = {}
    out = abl.anti_backdoor_learning(M.build_model("convnet_bn_padded"), s.images, s.labels, sched, seed=0,
                                     on_phase=lambda name, m: after.__setitem__(name, asr(m)))
    # the lowest losses, as the repository ranks them (ascending: backdoor_isolation.py, compute_loss_value)
    assert sorted(out.isolated.tolist()) == sorted(out.isolation_losses.argsort(stable=True)[:15].tolist())
    precision = torch.isin(torch.as_tensor(out.isolated), s.poisoned).float().mean().item()
    assert len(out.isolated) == 15 and precision >= 0.8, precision
    assert after["finetune"] > 0.5, "no backdoor before the unlearning: nothing for it to remove"
    assert after["unlearning"] < 0.2 and asr(out.model) == after["unlearning"]
