"""Deep Partition Aggregation (``defenses.dpa``): the hash partition, the vote with its tie rule,
the certificate on hand-made vote tables, and a planted attack against the certificate: inserting
or removing rho samples, aimed at the partitions that vote for the prediction, never changes a
certified prediction, while rho + 1 insertions can (the certificate is tight for 1-NN bases)."""
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
