"""Deep Partition Aggregation (``defenses.dpa``): the hash partition, the vote with its tie rule,
the certificate on hand-made vote tables, and a planted attack against the certificate: inserting
or removing rho samples, aimed at the partitions that vote for the prediction, never changes a
certified prediction, while rho + 1 insertions can (the certificate is tight for 1-NN bases). The
batched trainer gives each base classifier the same weights, to the bit, whichever partitions are
trained beside it (Theorem 1 needs f_i to depend on P_i alone)."""
import dataclasses

import numpy as np
import pytest
import torch
from sklearn.neighbors import KNeighborsClassifier

from poisonrepro.defenses import dpa


def test_the_partition_is_the_pixel_sum_mod_k_and_ignores_the_datasets_order():
    x = np.array([[0, 1, 2], [255, 255, 255], [3, 3, 3], [1, 0, 0]], dtype=np.uint8)
    assert dpa.partition_ids(x, 4).tolist() == [3, 765 % 4, 9 % 4, 1]
    parts = dpa.partitions(x, [0, 1, 2, 3], 4)
    assert sorted(np.concatenate(parts).tolist()) == [0, 1, 2, 3]
    rng = np.random.default_rng(0)
    imgs = rng.integers(0, 256, (200, 3, 4, 4), dtype=np.uint8)
    labels = rng.integers(0, 10, 200)
    perm = rng.permutation(200)
    a = [imgs[p].tobytes() for p in dpa.partitions(imgs, labels, 7)]
    b = [imgs[perm][p].tobytes() for p in dpa.partitions(imgs[perm], labels[perm], 7)]
    assert a == b  # the same samples in the same order, wherever they sat in the training set


@pytest.mark.parametrize("bad", [0, -3, 201, 2.5, True])
def test_k_outside_1_to_n_is_refused(bad):
    with pytest.raises(ValueError, match="k="):
        dpa.partition_ids(np.zeros((200, 3), np.uint8), bad)


def test_float_images_are_refused():
    with pytest.raises(ValueError, match="uint8"):
        dpa.partition_ids(np.zeros((5, 3), np.float32), 2)


@pytest.mark.parametrize("counts, top, rho", [
    ([5, 2, 0], 0, 1),   # (5 - 2 - 0) / 2
    ([2, 5, 0], 1, 1),   # second (0) < top (1): (5 - 2 - 1) / 2
    ([3, 3, 0], 0, 0),   # a tie goes to the smaller class, which no change can keep certified
    ([0, 3, 3], 1, 0),
    ([0, 4, 3], 1, 0),   # (4 - 3 - 0) / 2 floored
    ([3, 4, 0], 1, 0),   # (4 - 3 - 1) / 2
    ([9, 0, 0], 0, 4),   # (9 - 0 - 0) / 2: the runner-up is class 1, after the top
    ([0, 0, 9], 2, 4),   # (9 - 0 - 1) / 2: the runner-up is class 0, before the top
    ([2, 4, 0], 1, 0),   # (4 - 2 - 1) / 2: two flips would tie, and the tie goes to class 0
    ([4, 2, 0], 0, 1),   # (4 - 2 - 0) / 2: one flip leaves 3 : 3, still class 0
    ([0, 0, 8], 2, 3),   # (8 - 0 - 1) / 2
])
def test_the_certificate_on_hand_made_vote_tables(counts, top, rho):
    pred, r = dpa.aggregate(torch.tensor([counts]))
    assert (int(pred[0]), int(r[0])) == (top, rho)


def test_vote_counts_radius_and_certified_accuracy():
    predictions = np.array([[0, 1, 2], [0, 1, 1], [0, 2, 1], [1, 2, 1], [0, 2, 0]])  # 5 base classifiers, 3 points
    counts = dpa.vote_counts(predictions, 3)
    assert counts.tolist() == [[4, 1, 0], [0, 2, 3], [1, 3, 1]]
    radius = dpa.certified_radius(counts, [0, 2, 0])
    assert radius.tolist() == [1, 0, -1]  # (4 - 1) / 2; (3 - 2 - 1) / 2; wrong
    assert dpa.certified_accuracy(radius, [0, 1, 2]).tolist() == pytest.approx([2 / 3, 1 / 3, 0])
    assert dpa.median_certified_robustness(radius) == 0
    assert dpa.median_certified_robustness(torch.tensor([-1, -1, 3, 5])) == 3
    with pytest.raises(ValueError, match="classes"):
        dpa.vote_counts(np.array([[3]]), 3)


def _one_nn(x, y):
    if len(x) == 0:
        return None
    return KNeighborsClassifier(n_neighbors=1).fit(x.reshape(len(x), -1).astype(float), y)


def _votes(models, x, default=0):
    flat = x.reshape(len(x), -1).astype(float)
    return np.stack([m.predict(flat) if m is not None else np.full(len(x), default) for m in models])


def _with_partition(x, part, k):
    """``x`` with one pixel changed so that its hash lands in partition ``part``."""
    x = x.copy()
    shift = (part - int(x.astype(np.int64).sum())) % k
    flat = x.reshape(-1)
    i = int(np.argmin(flat)) if flat.min() + shift <= 255 else None
    if i is None:
        i = int(np.argmax(flat))
        shift -= k
    flat[i] = flat[i] + shift
    assert int(x.astype(np.int64).sum()) % k == part
    return x


def test_a_planted_attack_of_rho_changes_never_flips_a_certified_prediction():
    rng = np.random.default_rng(0)
    k, n_per_class = 15, 150
    centres = np.array([60, 130, 200])
    y = np.repeat(np.arange(3), n_per_class)
    x = np.clip(centres[y][:, None] + rng.normal(0, 35, (len(y), 6)), 0, 255).astype(np.uint8)
    test_y = rng.integers(0, 3, 25)
    test_x = np.clip(centres[test_y][:, None] + rng.normal(0, 35, (25, 6)), 0, 255).astype(np.uint8)
    parts = dpa.partitions(x, y, k)
    models = dpa.train_partitions(x, y, k, _one_nn, parts)
    votes = _votes(models, test_x)
    pred, rho = dpa.aggregate(dpa.vote_counts(votes, 3))
    checked = flipped = 0
    for j in np.flatnonzero(rho.numpy() >= 1):
        top = int(pred[j])
        counts = dpa.vote_counts(votes[:, j:j + 1], 3)[0].clone()
        counts[top] = -1
        runner_up = int(counts.argmax())
        voting_top = [i for i in range(k) if votes[i, j] == top]
        for size in (int(rho[j]), int(rho[j]) + 1):
            # the strongest insertion against 1-NN: the test point itself, labelled as the runner-up,
            # once into each of `size` partitions that vote for the prediction
            ax, ay = x, y
            for part in voting_top[:size]:
                ax = np.concatenate([ax, _with_partition(test_x[j], part, k)[None]])
                ay = np.concatenate([ay, [runner_up]])
            new_parts = dpa.partitions(ax, ay, k)
            changed = [i for i in range(k) if not np.array_equal(ax[new_parts[i]], x[parts[i]])]
            assert len(changed) <= size  # one sample, one partition
            attacked = list(models)
            for i in changed:  # retrain only the partitions the attack touched
                attacked[i] = _one_nn(ax[new_parts[i]], ay[new_parts[i]])
            new_pred, _ = dpa.aggregate(dpa.vote_counts(_votes(attacked, test_x[j:j + 1]), 3))
            if size == int(rho[j]):
                assert int(new_pred[0]) == top, f"test point {j}: certified against {size}, flipped"
                checked += 1
            else:
                flipped += int(new_pred[0]) != top
        # removals: from rho partitions voting for the prediction, each the neighbour that decides it
        ax_keep = np.ones(len(x), bool)
        for part in voting_top[:int(rho[j])]:
            members = parts[part]
            d = np.abs(x[members].astype(float) - test_x[j].astype(float)).sum(1)
            ax_keep[members[np.argmin(d)]] = False
        kept = np.flatnonzero(ax_keep)
        new_parts = dpa.partitions(x[kept], y[kept], k)
        attacked = [_one_nn(x[kept][p], y[kept][p]) for p in new_parts]
        new_pred, _ = dpa.aggregate(dpa.vote_counts(_votes(attacked, test_x[j:j + 1]), 3))
        assert int(new_pred[0]) == top
    assert checked >= 5
    assert flipped >= 1  # one more than rho can flip: the attack is not toothless and the bound is tight


def test_dpa_is_registered_with_its_barreno_cells():
    from poisonrepro import registry
    method = registry.get("deep_partition_aggregation")
    assert method.notebook == "10_dpa" and ("causative", "integrity", "targeted") in method.defends


# --------------------------------------------------------------------------- batched base classifiers
def _tiny_images(n=240, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.randint(0, 256, (n, 3, 32, 32), dtype=torch.uint8, generator=g), torch.randint(0, 10, (n,), generator=g)


def test_a_base_classifier_trained_in_a_batch_equals_the_same_one_trained_alone():
    """The certificate needs each f_i to depend on P_i alone: partitions of unequal size (so some sit
    steps out), augmentation and a learning-rate milestone, and still the batch gives each network
    what it gets alone."""
    from poisonrepro import models as M
    x, y = _tiny_images()
    parts = dpa.partitions(x.numpy(), y.numpy(), 5)
    assert len({len(p) for p in parts}) > 1
    recipe = dpa.BaseRecipe(epochs=2, batch_size=16, crop_pad=2, flip=True, milestones=(0.5,))
    make = lambda: M.convnet(10, width=4)  # noqa: E731
    batch = dpa.train_base_classifiers(make, x, y, parts, recipe, seed=3)
    for i in (0, 4):
        alone = dpa.train_base_classifiers(make, x, y, parts, recipe, seed=3, ids=[i])
        for name, p in batch.params.items():
            torch.testing.assert_close(p[i], alone.params[name][0], rtol=1e-4, atol=1e-5)
    # and it did train: the weights moved from their initialisation, differently per partition
    fresh = dpa.train_base_classifiers(make, x, y, parts, dataclasses.replace(recipe, lr=1e-12), seed=3)
    assert all((batch.params[n] - fresh.params[n]).abs().max() > 1e-3 for n in batch.params)
    votes = dpa.predict_base_classifiers(batch, x[:7])
    assert votes.shape == (5, 7) and votes.dtype == torch.int64


def test_another_partitions_data_never_changes_a_base_classifier():
    from poisonrepro import models as M
    x, y = _tiny_images()
    parts = dpa.partitions(x.numpy(), y.numpy(), 4)
    recipe = dpa.BaseRecipe(epochs=1, batch_size=16)
    make = lambda: M.convnet(10, width=4)  # noqa: E731
    before = dpa.train_base_classifiers(make, x, y, parts, recipe, seed=0)
    y2 = y.clone()
    y2[torch.as_tensor(parts[1])] = (y2[torch.as_tensor(parts[1])] + 1) % 10   # poison partition 1 only
    after = dpa.train_base_classifiers(make, x, y2, parts, recipe, seed=0)
    for name in before.params:
        torch.testing.assert_close(before.params[name][[0, 2, 3]], after.params[name][[0, 2, 3]], rtol=1e-4, atol=1e-5)
        assert not torch.allclose(before.params[name][1], after.params[name][1])


def test_a_partitions_step_width_is_its_own_and_passes_have_one_shape_per_width():
    assert [dpa.step_width(n, 128) for n in (0, 1, 16, 17, 33, 64, 65, 127, 128, 400)] == \
        [16, 16, 16, 32, 64, 64, 128, 128, 128, 128]
    assert dpa.step_width(5, 8) == 8   # never wider than a batch
    parts = [np.arange(n) for n in (40, 10, 7, 30, 12, 50, 3)]
    passes = dpa.plan_passes(parts, range(7), batch_size=64, images_per_pass=128)
    # width 64 (40, 50) in passes of 128 // 64 = 2; width 16 (10, 7, 12, 3) in min(128 // 16, k = 7);
    # width 32 (30) in 4; the last pass of each width filled up with placeholders
    assert passes == [[0, 5], [1, 2, 4, 6, None, None, None], [3, None, None, None]]
    for chunk in passes:
        widths = {dpa.step_width(len(parts[i]), 64) for i in chunk if i is not None}
        assert len(widths) == 1 and len(chunk) == min(128 // widths.pop(), 7)
    assert sorted(i for c in passes for i in c if i is not None) == list(range(7))


def _pass_spy(monkeypatch):
    """Records every pass ``train_base_classifiers`` trains: (its ids, its ModelStack)."""
    trained, real = [], dpa.train_base_classifiers

    def spy(*args, ids=None, **kwargs):
        stack = real(*args, ids=ids, **kwargs)
        trained.append((list(ids), stack))
        return stack
    monkeypatch.setattr(dpa, "train_base_classifiers", spy)
    return trained


def test_a_partitions_weights_do_not_depend_on_the_partitions_trained_beside_it(monkeypatch):
    """Theorem 1 needs each base classifier to be a function of its partition (and seed) alone.
    The notebook's trainer trains partition 2 once among all nine and once beside partition 7
    only (as when an attack retrains the few partitions it touched): other companions, another
    place in the pass, and the weights must be equal to the bit. (Before the fix the pass held
    as many networks as there were partitions to train, and a grouped convolution rounds
    differently for 2 groups than for 4: 1.5e-8 apart after one epoch.)"""
    from poisonrepro import models as M
    from poisonrepro.papers.dpa import experiments as E
    x, y = _tiny_images(360)
    parts = dpa.partitions(x.numpy(), y.numpy(), 9)
    recipe = dpa.BaseRecipe(epochs=1, batch_size=16, crop_pad=2, flip=True)
    make = lambda: M.convnet(10, width=8)  # noqa: E731
    trained = _pass_spy(monkeypatch)
    every = E.train_and_vote(x.numpy(), y.numpy(), parts, x[:5].numpy(), make, recipe, images_per_pass=64, seed=3)
    few = E.train_and_vote(x.numpy(), y.numpy(), parts, x[:5].numpy(), make, recipe, images_per_pass=64, seed=3, ids=[7, 2])
    assert torch.equal(few, every[[7, 2]])
    for i in (2, 7):
        (ids_a, a), (ids_b, b) = [(ids, st) for ids, st in trained if i in ids]
        assert ids_a != ids_b and ids_a.index(i) != ids_b.index(i)   # other companions, another place
        for name in a.params:
            assert torch.equal(a.params[name][ids_a.index(i)], b.params[name][ids_b.index(i)]), (i, name)


def test_placeholders_and_places_in_a_pass_change_nothing():
    """Passes of one shape, a partition at different places among different companions and idle
    placeholders: the same weights to the bit; a placeholder's network never moves."""
    from poisonrepro import models as M
    x, y = _tiny_images(300)
    parts = dpa.partitions(x.numpy(), y.numpy(), 6)
    recipe = dpa.BaseRecipe(epochs=1, batch_size=16, crop_pad=2, flip=True)
    make = lambda: M.convnet(10, width=8)  # noqa: E731
    a = dpa.train_base_classifiers(make, x, y, parts, recipe, seed=1, ids=[0, 5, 2, 1])
    b = dpa.train_base_classifiers(make, x, y, parts, recipe, seed=1, ids=[None, 3, 0, 2])
    for name in a.params:
        assert torch.equal(a.params[name][0], b.params[name][2])
        assert torch.equal(a.params[name][2], b.params[name][3])
    idle = dpa.init_base_classifier(make, x[:0], 0, seed=1)
    for name, p in idle.named_parameters():
        assert torch.equal(b.params[name][0], p)
    with pytest.raises(ValueError, match="placeholders"):
        dpa.train_base_classifiers(make, x, y, parts, recipe, ids=[None, None])


def test_a_partition_is_padded_to_whole_steps_of_its_own_width():
    x, y = _tiny_images(300)
    parts = dpa.partitions(x.numpy(), y.numpy(), 6)
    small = int(np.argmin([len(p) for p in parts]))
    big = int(np.argmax([len(p) for p in parts]))
    recipe = dpa.BaseRecipe(epochs=1, batch_size=16)
    alone = dpa._epoch_batches(x, y, parts, [small], 0, recipe, seed=0)
    beside = dpa._epoch_batches(x, y, parts, [big, small], 0, recipe, seed=0)
    assert alone[3] == beside[3] == 16   # the step width: the batch size, whoever is beside it
    n = alone[0].shape[1]
    assert n % 16 == 0 and n - 16 < len(parts[small]) <= n
    for a, b in zip(alone[:3], beside[:3]):
        assert torch.equal(a[0], b[1, :n]) and not b[1, n:].any()


def test_batch_norm_and_bad_recipes_are_refused():
    from poisonrepro import models as M
    x, y = _tiny_images(40)
    with pytest.raises(ValueError, match="batch norm"):
        dpa.train_base_classifiers(lambda: M.convnet_bn(10), x, y, dpa.partitions(x.numpy(), y.numpy(), 2),
                                   dpa.BaseRecipe(epochs=1))
    with pytest.raises(ValueError, match="BaseRecipe"):
        dpa.BaseRecipe(epochs=0)


def test_hash_into_moves_an_image_into_the_asked_partition():
    from poisonrepro.papers.dpa import experiments as E
    img = np.zeros((1, 32, 32), np.uint8)
    img[0, 0, 0] = 250
    for j in (0, 3, 99, 1199):
        out = E.hash_into(img, j, 1200)
        assert int(out.astype(np.int64).sum()) % 1200 == j and out.max() <= 255
        assert img[0, 0, 0] == 250 and img.sum() == 250   # the input is untouched


def test_the_notebooks_planted_attack_never_turns_a_certified_prediction():
    """The notebook's own attack on its own base classifiers (MNIST, tiny): rho copies of the test
    image labelled as the runner-up, each hashed into a partition that votes for the prediction."""
    import dataclasses
    from poisonrepro.config import load_config
    from poisonrepro.papers.dpa import experiments as E
    cfg = dataclasses.replace(load_config("dpa", "smoke"), mnist_train=1000, mnist_ks=(5,), mnist_epochs=3, planted_k=5,
                              planted_points=3, mnist_test=40)
    results = {"mnist": {5: E.dpa_trial(**E._spec(cfg, "mnist", 5))}}
    rows = E.planted_attack(cfg, results)
    assert rows, "no certified test point to attack: the base classifiers learned nothing"
    assert all(r["prediction_stands"] for r in rows), rows
    assert all(r["inserted"] == r["rho"] >= 1 for r in rows)
