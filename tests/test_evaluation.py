"""The shared evaluation trial (``poisonrepro.evaluation``): it splices exactly the cached poisons
into the training set, refuses a bad spec before any compute, says when the poisons are missing,
and a planted poison set changes what the trained learner predicts."""
import pytest
import torch

from poisonrepro import evaluation as EV
from poisonrepro.cache import ArtifactCache
from poisonrepro.executor import run_trials

pytestmark = pytest.mark.usefixtures("one_thread")

SMALL = {"name": "cifar10", "per_class": 20}
LEARNER = {"kind": "supervised", "arch": "convnet_bn"}
RECIPE = {"epochs": 1.0, "batch_size": 50}


def _store(key: str, poisons: torch.Tensor) -> dict:
    ArtifactCache().tensors("craft", key, lambda: {"poisons": poisons})
    return {"stage": "craft", "key": key}


def test_the_poisons_replace_exactly_their_positions_and_keep_the_labels(mirror, isolated_artifacts):
    x, y = EV.cifar10_training_set(20)
    positions = [3, 17, 150]
    images = torch.full((2, 3, 3, 32, 32), 7, dtype=torch.uint8)  # two setups
    images[1] = 200
    ref = _store("a" * 16, images)
    px, py, pos = EV.poisoned_training_set(SMALL, {**ref, "setup": 1, "positions": positions})
    assert pos.tolist() == positions and torch.equal(py, y)
    assert (px[positions] == 200).all()
    keep = torch.ones(len(x), dtype=torch.bool)
    keep[positions] = False
    assert torch.equal(px[keep], x[keep])
    assert not (EV.cifar10_training_set(20)[0][positions] == 200).all()  # the shared clean set is untouched
    with pytest.raises(ValueError, match="do not fit 2 positions"):
        EV.poisoned_training_set(SMALL, {**ref, "setup": 1, "positions": positions[:2]})


def test_missing_poisons_are_named(mirror, isolated_artifacts):
    with pytest.raises(FileNotFoundError, match="crafting stage"):
        EV.poisoned_training_set(SMALL, {"stage": "craft", "key": "0" * 16, "setup": 0, "positions": [0]})


@pytest.mark.parametrize("change, message", [
    (dict(dataset={"name": "svhn"}), "dataset name='svhn'"),
    (dict(learner={"kind": "contrastive"}), "learner kind='contrastive'"),
    (dict(recipe={"epochs": 0}), "epochs"),
    (dict(poisons={"stage": "craft"}), "missing key, positions"),
    (dict(probes={"test_images": 10, "locations": [[1, 1]]}), "patch_seed"),
    (dict(learner={"kind": "poisonrepro.nowhere:Learner"}), "cannot be imported"),
    (dict(poisons={"producer": "poisonrepro.attacks.badnets:no_such_producer"}), "cannot be imported"),
    (dict(probes={"test_images": 10, "trigger": {"fn": "poisonrepro.attacks.badnets:apply_trigger"}}), "target_class"),
])
def test_a_bad_spec_is_refused_before_any_compute(change, message):
    spec = dict(dataset=SMALL, poisons=None, learner=LEARNER, recipe=RECIPE, seed=0, probes={"test_images": 10})
    with pytest.raises(ValueError, match=message):
        EV.evaluate_poisons(**{**spec, **change})


def test_a_planted_poison_set_moves_the_learner_and_the_trial_is_cached(mirror, isolated_artifacts):
    """A planted attack the learner cannot miss: every training image of one class replaced by the
    target (a test image of another class), labels kept. The victim trained on it calls the target
    that class and fits its poisons; the clean victim does not see them (NaN fit). The second run
    of the grid is a cache hit, not a retraining."""
    dataset = {"name": "cifar10", "per_class": 50}
    x, y = EV.cifar10_training_set(50)
    target_index = 0
    target = EV.cifar10_test_images([target_index])
    label = (int(EV.cifar10_test_set(10_000)[1][target_index]) + 1) % 10  # not the target's own class
    positions = torch.nonzero(y == label).flatten().tolist()
    ref = _store("b" * 16, target.expand(len(positions), -1, -1, -1).clone())
    probes = {"test_images": 500, "targets": [target_index], "patch_seed": 0, "locations": [[2, 2]], "fit": True}
    trials = [EV.evaluate_poisons(dataset, p, LEARNER, {"epochs": 4.0, "batch_size": 50}, 0, probes)
              for p in (None, {**ref, "positions": positions})]
    clean, poisoned = run_trials(trials, ArtifactCache())
    assert clean["prediction"].shape == (1,) and clean["patched_prediction"].shape == (1, 1)
    assert int(poisoned["prediction"][0]) == label and float(poisoned["poison_fit"]) == 1.0
    assert clean["poison_fit"].isnan() and 0 < float(clean["train_accuracy"]) <= 1
    calls = []
    original = EV.evaluation_trial
    try:
        EV.evaluation_trial = lambda **kw: calls.append(kw) or original(**kw)
        again = run_trials(trials, ArtifactCache())
    finally:
        EV.evaluation_trial = original
    assert not calls and torch.equal(again[0]["prediction"], clean["prediction"])


def _relabel_first_ten(x, y, *, to: int):
    """A toy producer: the first ten labels changed to ``to``."""
    y = y.clone()
    y[:10] = to
    return x, y, torch.arange(len(y)) < 10


def _wrong_shape(x, y):
    return x[:5], y, torch.zeros(len(y), dtype=torch.bool)


def test_a_producer_spoils_labels_and_its_code_keys_the_trial(mirror):
    producer = {"producer": f"{__name__}:_relabel_first_ten", "args": {"to": 3}}
    x, y, positions = EV.poisoned_training_set(SMALL, producer)
    assert positions.tolist() == list(range(10)) and (y[:10] == 3).all()
    assert torch.equal(y[10:], EV.cifar10_training_set(20)[1][10:])
    trial = EV.evaluate_poisons(SMALL, producer, LEARNER, RECIPE, 0, {"test_images": 10})
    assert trial.spec["code"] == {__name__: EV.module_code_hash(__name__)}
    assert "code" not in EV.evaluate_poisons(SMALL, None, LEARNER, RECIPE, 0, {"test_images": 10}).spec
    with pytest.raises(ValueError, match="returned"):
        EV.poisoned_training_set(SMALL, {"producer": f"{__name__}:_wrong_shape"})


class _PhasedLearner(EV.SupervisedLearner):
    """A toy defence: scores its model after a first phase through the trial's ``score``."""

    def train(self, x, y, recipe, seed, *, score=None):
        model = super().train(x, y, recipe, seed)
        return model, {f"phase1.{k}": v for k, v in score(model).items()}


def test_a_learner_scores_its_phases_with_the_trials_probes(mirror, isolated_artifacts):
    probes = {"test_images": 50, "trigger": {"fn": "poisonrepro.attacks.badnets:apply_trigger", "target_class": 0}}
    out = EV.evaluation_trial(**EV.evaluate_poisons(SMALL, None, {"kind": f"{__name__}:_PhasedLearner", "arch": "convnet_bn"},
                                                     RECIPE, 0, probes).spec)
    assert set(out) >= {"phase1.test_accuracy", "phase1.attack_success_rate", "test_accuracy", "attack_success_rate"}
    assert float(out["phase1.test_accuracy"]) == float(out["test_accuracy"])   # the same model, the same probes


TINY = EV.Dataset(lambda n: (torch.zeros(n, 3, 32, 32, dtype=torch.uint8), torch.arange(n) % 10),
                  lambda count: (torch.zeros(count, 3, 32, 32, dtype=torch.uint8), torch.arange(count) % 10),
                  lambda indices: torch.zeros(len(indices), 3, 32, 32, dtype=torch.uint8))


def test_a_paper_brings_its_own_dataset_by_import_path():
    spec = {"name": f"{__name__}:TINY", "n": 40}
    x, y, positions = EV.poisoned_training_set(spec, None)
    assert x.shape == (40, 3, 32, 32) and len(positions) == 0
    trial = EV.evaluate_poisons(spec, None, LEARNER, RECIPE, 0, {"test_images": 10})
    assert __name__ in trial.spec["code"]
    with pytest.raises(ValueError, match="cannot be imported"):
        EV.evaluate_poisons({"name": f"{__name__}:NOPE"}, None, LEARNER, RECIPE, 0, {"test_images": 10})
    with pytest.raises(ValueError, match="unknown"):
        EV.evaluate_poisons({"name": f"{__name__}:LEARNER"}, None, LEARNER, RECIPE, 0, {"test_images": 10})
