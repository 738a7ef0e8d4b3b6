"""Back-gradient poisoning (06), label flipping and the three defences."""
import numpy as np
import pytest
import torch
import torch.nn.functional as F

from poisonrepro.attacks.back_gradient import (DTYPE, Learner, back_gradient, craft_poisons, train_gd,
                                               unrolled_gradient, validation_objective)
from poisonrepro.attacks.label_flipping import informed_label_flips, poison_labels, random_label_flips
from poisonrepro.config import ConfigError, load_config
from poisonrepro.defenses.knn_sanitization import knn_relabel
from poisonrepro.defenses.noisy_labels import noise_robust
from poisonrepro.defenses.outlier_detection import fit_outlier_detector


def _task(n=60, d=5, seed=0):
    g = torch.Generator().manual_seed(seed)
    X = torch.rand(n, d, generator=g, dtype=DTYPE)
    y = (X[:, 0] + 0.2 * torch.randn(n, generator=g, dtype=DTYPE) > 0.5).to(DTYPE)
    Xv = torch.rand(80, d, generator=g, dtype=DTYPE)
    yv = (Xv[:, 0] > 0.5).to(DTYPE)
    return X, y, Xv, yv


@pytest.mark.parametrize("kind,classes,rho", [("adaline", 2, 0), ("logistic", 2, 0), ("logistic", 2, 0.2),
                                               ("mlp", 2, 0), ("softmax", 4, 0)])
def test_closed_form_gradients_equal_autograd(kind, classes, rho):
    learner = Learner(kind, 7, n_classes=classes, weight_decay=0.03, noise_rate=rho)
    g = torch.Generator().manual_seed(0)
    w = torch.randn(learner.n_params, generator=g, dtype=DTYPE)
    X, y = torch.rand(20, 7, generator=g, dtype=DTYPE), torch.randint(0, classes, (20,), generator=g).to(DTYPE)
    assert torch.allclose(learner.gradient(w, X, y), torch.func.grad(learner.loss)(w, X, y), atol=1e-12)


def _cos(a, b):
    return F.cosine_similarity(a.flatten(), b.flatten(), dim=0).item()


@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize("kind,lr", [("adaline", 0.1), ("logistic", 0.5), ("mlp", 0.1)])
def test_back_gradient_matches_stored_trajectory_autograd_and_finite_differences(kind, lr, seed):
    X, y, Xv, yv = _task(seed=seed)
    xp = torch.rand(2, 5, generator=torch.Generator().manual_seed(seed + 10), dtype=DTYPE)
    yp = torch.tensor([0.0, 1.0], dtype=DTYPE)
    learner = Learner(kind, 5, weight_decay=0.01)
    objective = validation_objective(learner, Xv, yv)
    w0 = train_gd(learner, torch.cat([X, xp]), torch.cat([y, yp]), steps=300, lr=lr)
    exact, w_T = unrolled_gradient(learner, w0, X, y, xp, yp, objective, steps=50, lr=lr)
    reversed_ = back_gradient(learner, w_T, X, y, xp, yp, objective, steps=50, lr=lr)
    # reversing the updates (Algorithm 2) instead of storing them loses little at these step sizes
    # (for the MLP at lr 0.3 it can drift: the reversed dynamics are not contracting)
    assert _cos(exact, reversed_) >= 0.999
    # finite differences of "train T steps from w0, then evaluate": the definition of the hypergradient
    f = lambda z: objective(train_gd(learner, torch.cat([X, z]), torch.cat([y, yp]), steps=50, lr=lr, w0=w0))
    fd = torch.zeros_like(xp)
    for i in range(xp.shape[0]):
        for j in range(xp.shape[1]):
            e = torch.zeros_like(xp)
            e[i, j] = 1e-6
            fd[i, j] = (f(xp + e) - f(xp - e)) / 2e-6
    assert torch.allclose(fd, exact, rtol=1e-4, atol=1e-8)


def test_back_gradient_at_convergence_agrees_with_the_implicit_function_theorem():
    X, y, Xv, yv = _task()
    xp, yp = torch.rand(1, 5, dtype=DTYPE), torch.tensor([1.0], dtype=DTYPE)
    learner = Learner("logistic", 5, weight_decay=0.05)
    objective = validation_objective(learner, Xv, yv)
    Xa, ya = torch.cat([X, xp]), torch.cat([y, yp])
    w = train_gd(learner, Xa, ya, steps=5000, lr=1.0)
    back = back_gradient(learner, w, X, y, xp, yp, objective, steps=2000, lr=1.0)
    # IFT: dA/dxp = -(d/dxp grad_w C) H^-1 grad_w A
    H = torch.autograd.functional.hessian(lambda v: learner.loss(v, Xa, ya), w)
    wa = w.clone().requires_grad_(True)
    v = torch.linalg.solve(H, torch.autograd.grad(objective(wa), wa)[0])
    z = xp.clone().requires_grad_(True)
    wa = w.clone().requires_grad_(True)
    (g,) = torch.autograd.grad(learner.loss(wa, torch.cat([X, z]), ya), wa, create_graph=True)
    (ift,) = torch.autograd.grad(-(g * v).sum(), z)
    assert torch.allclose(back, ift, rtol=1e-3, atol=1e-7)


def test_crafted_poisons_raise_the_validation_loss_and_the_error_and_stay_in_the_box():
    X, y, Xv, yv = _task(n=40)
    learner = Learner("logistic", 5, weight_decay=0.01)
    objective = validation_objective(learner, Xv, yv)
    X0, y0 = Xv[:6], 1 - yv[:6]
    run = craft_poisons(learner, X, y, objective, X0, y0, per_round=3, attack_iters=20, attack_step=0.3,
                        train_steps=300, train_lr=0.5, inner_steps=20, inner_lr=0.5)
    assert run.X_p.min() >= 0 and run.X_p.max() <= 1
    assert all(v[-1] > v[0] for v in run.objective)
    fit = lambda Xp: train_gd(learner, torch.cat([X, Xp]), torch.cat([y, y0]), steps=300, lr=0.5)
    assert objective(fit(run.X_p)) > objective(fit(X0)) + 0.02
    assert learner.error(fit(run.X_p), Xv, yv) > learner.error(fit(X0), Xv, yv)


def test_detectability_constraint_keeps_poisons_inside_the_detector():
    X, y, Xv, yv = _task(n=40)
    det = fit_outlier_detector(Xv.numpy(), yv.numpy(), quantile=0.95)
    learner = Learner("logistic", 5, weight_decay=0.01)
    run = craft_poisons(learner, X, y, validation_objective(learner, Xv, yv), Xv[:4], 1 - yv[:4], per_round=4,
                        attack_iters=10, attack_step=0.5, train_steps=200, train_lr=0.5, inner_steps=10,
                        inner_lr=0.5, project=lambda x, c: det.project(x, c, 0.9))
    assert det.keep(run.X_p.numpy(), run.y_p.numpy()).all()


def test_outlier_detector_drops_planted_outliers_and_keeps_most_genuine_points():
    rng = np.random.default_rng(0)
    X = np.vstack([rng.normal(0.3, 0.03, (100, 4)), rng.normal(0.7, 0.03, (100, 4))])
    y = np.repeat([0, 1], 100)
    det = fit_outlier_detector(X[::2], y[::2], quantile=0.95)
    far = np.vstack([np.full((5, 4), 0.95), np.full((5, 4), 0.05)])
    assert not det.keep(far, np.repeat([0, 1], 5)).any()
    assert det.keep(X[1::2], y[1::2]).mean() >= 0.85
    with pytest.raises(ValueError, match="no point of class"):
        fit_outlier_detector(X[:10], y[:10], quantile=0.9)


def test_knn_sanitisation_restores_flipped_labels_on_separated_clusters():
    rng = np.random.default_rng(1)
    X = np.vstack([rng.normal(0, 0.1, (50, 2)), rng.normal(1, 0.1, (50, 2))])
    y = np.repeat([0, 1], 50)
    noisy = y.copy()
    noisy[[3, 17, 60, 88]] = 1 - noisy[[3, 17, 60, 88]]
    assert (knn_relabel(X, noisy, k=5) == y).all()
    assert (noisy != y).sum() == 4  # the input is not changed
    with pytest.raises(ValueError, match="k=100"):
        knn_relabel(X, noisy, k=100)


def test_noise_robust_loss_is_unbiased_under_symmetric_noise():
    learner = noise_robust(Learner("logistic", 3), 0.2)
    w = torch.randn(4, dtype=DTYPE)
    X = torch.randn(10, 3, dtype=DTYPE)
    y = (torch.rand(10) > 0.5).to(DTYPE)
    expected = 0.8 * learner.sample_losses(w, X, y) + 0.2 * learner.sample_losses(w, X, 1 - y)
    clean = F.binary_cross_entropy_with_logits(Learner("logistic", 3).scores(w, X), y, reduction="none")
    assert torch.allclose(expected, clean)
    with pytest.raises(ValueError, match="logistic"):
        noise_robust(Learner("adaline", 3), 0.2)


def test_informed_label_flipping_hurts_more_than_random_flipping():
    X, y, Xv, yv = _task(n=40, seed=3)
    learner = Learner("logistic", 5, weight_decay=0.01)
    objective = validation_objective(learner, Xv, yv)
    Xi, yi = informed_label_flips(learner, X, y, Xv[:40], yv[:40], 6, objective, steps=300, lr=0.5, warm_steps=50)
    assert ((1 - yv[:40].numpy())[[np.flatnonzero((Xv[:40].numpy() == r).all(1))[0] for r in Xi]] == yi).all()
    fit = lambda Xp, yp: train_gd(learner, torch.cat([X, torch.as_tensor(Xp)]), torch.cat([y, torch.as_tensor(yp)]),
                                  steps=300, lr=0.5)
    rng = np.random.default_rng(0)
    random_losses = [objective(fit(*random_label_flips(Xv[:40].numpy(), yv[:40].numpy(), 6, rng))).item()
                     for _ in range(5)]
    assert objective(fit(Xi, yi)).item() > max(random_losses)


def test_label_poisoning_variants():
    rng = np.random.default_rng(0)
    y = np.repeat(np.arange(10), 100)
    flipped = poison_labels(y, 0.3, "flip", 10, rng)
    assert (flipped != y).sum() == 300 and ((flipped - y) % 10)[flipped != y].tolist() == [1] * 300
    partial = poison_labels(y, 0.5, "partial", 10, rng, source=8, target=3)
    assert (partial != y).sum() == 50 and set(np.flatnonzero(partial != y) // 100) == {8}
    assert (partial[partial != y] == 3).all()
    assert 200 <= (poison_labels(y, 0.3, "random", 10, rng) != y).sum() <= 300  # some redraws keep the label
    with pytest.raises(ValueError, match=r"\[0, 1\)"):
        poison_labels(y, 1.0, "flip", 10, rng)


@pytest.mark.parametrize("key,value,pattern", [
    ("poison_fractions", (0.0, 1.2), r"poison_fractions=1.2: must lie in \[0, 1\)"),
    ("poison_fractions", (0.0, -0.1), r"poison_fractions=-0.1"),
    ("mc_fractions", (0.0, 1.0), r"mc_fractions=1.0: must lie in \[0, 1\)"),
    ("learners", ("logistic", "svm"), "learners='svm': allowed values are 'adaline', 'logistic', 'mlp'"),
    ("datasets", ("spambase", "cifar"), "datasets='cifar': allowed values are 'spambase'"),
    ("flip_dataset", "enron", "flip_dataset='enron'"),
    ("train_lr", (0.1, 0.5), "one value per learner"),
    ("poison_fractions", (0.0, 0.07), "not multiples of the round size"),
])
def test_back_gradient_config_refuses_bad_input(key, value, pattern):
    with pytest.raises(ConfigError, match=pattern):
        load_config("back_gradient", "cpu", **{key: value})


def test_a_spambase_file_of_the_wrong_shape_stops_the_notebook_before_compute(tmp_path, monkeypatch):
    from poisonrepro.papers.back_gradient import experiments as B
    (tmp_path / "spambase.data").write_text("\n".join(",".join(["0"] * 50) for _ in range(10)))
    monkeypatch.setenv("POISONREPRO_DATA", str(tmp_path))
    monkeypatch.setenv("POISONREPRO_RAW", str(tmp_path / "raw"))
    cfg = load_config("back_gradient", "smoke", datasets=("spambase",), transfer_dataset="spambase",
                      defence_datasets=("spambase",))
    with pytest.raises(ValueError, match=r"Spambase must have shape \(4601, 58\)"):
        B.check_inputs(cfg)


def test_knn_sanitisation_keeps_the_label_on_a_tie():
    # point 0 (label 1) has exactly five neighbours of each class among its 10 nearest: a 5-5 tie
    X = np.concatenate([[0.0], np.arange(1, 6) * 0.1, -np.arange(1, 6) * 0.1, 100 + np.arange(10.0)])[:, None]
    y = np.array([1] + [0] * 5 + [1] * 5 + [0] * 10)
    assert knn_relabel(X, y, k=10, confidence=0.5)[0] == 1  # argmax with >= relabeled it as class 0
    # one more class-0 neighbour (6-4): a unique majority at 0.6 >= 0.5 relabels it
    X6, y6 = X.copy(), y.copy()
    X6[10], y6[10] = 0.45, 0
    assert knn_relabel(X6, y6, k=10, confidence=0.5)[0] == 0
    assert knn_relabel(X6, y6, k=10, confidence=0.7)[0] == 1  # 0.6 is short of 0.7


def _binary_task(n=60, d=30, seed=0):
    g = torch.Generator().manual_seed(seed)
    p = torch.rand(d, generator=g, dtype=DTYPE) * 0.4 + 0.1
    def draw(m):
        y = (torch.rand(m, generator=g) < 0.5).to(DTYPE)
        shift = torch.zeros(d, dtype=DTYPE)
        shift[:6] = 0.4
        X = (torch.rand(m, d, generator=g, dtype=DTYPE) < p + y[:, None] * shift).to(DTYPE)
        return X, y
    return (*draw(n), *draw(80))


def test_binary_poisons_stay_binary_and_raise_the_validation_loss():
    X, y, Xv, yv = _binary_task()
    learner = Learner("logistic", X.shape[1], weight_decay=0.01)
    objective = validation_objective(learner, Xv, yv)
    X0, y0 = Xv[:6], 1 - yv[:6]
    kw = dict(per_round=3, attack_iters=8, attack_step=0.5, train_steps=300, train_lr=0.5, inner_steps=20,
              inner_lr=0.5)
    run = craft_poisons(learner, X, y, objective, X0, y0, binary_flips=2, **kw)
    assert ((run.X_p == 0) | (run.X_p == 1)).all()
    assert 0 < (run.X_p != X0).sum(1).max() <= 2 * 8  # at most binary_flips bits per iteration
    fit = lambda Xp: train_gd(learner, torch.cat([X, Xp]), torch.cat([y, y0]), steps=300, lr=0.5)
    assert objective(fit(run.X_p)) > objective(fit(X0))
    # the continuous attack leaves {0, 1}: the variant the notebook labels as such
    cont = craft_poisons(learner, X, y, objective, X0, y0, **kw)
    assert not ((cont.X_p == 0) | (cont.X_p == 1)).all()
    with pytest.raises(ValueError, match="0/1"):
        craft_poisons(learner, X, y, objective, X0 * 0.5, y0, binary_flips=1, **kw)


def test_binary_projection_flips_the_fewest_bits_into_the_ball_and_stays_binary():
    X, y, Xv, yv = _binary_task(d=20)
    det = fit_outlier_detector(Xv.numpy(), yv.numpy(), quantile=0.9)
    x = 1 - Xv[:8]  # complemented points: far outside their label's ball
    labels = yv[:8]
    out = det.project_binary(x, labels, 1.0)
    assert ((out == 0) | (out == 1)).all()
    assert det.keep(out.numpy(), labels.numpy()).all()
    # fewest flips: undoing any one of them leaves the ball again
    for i in range(len(out)):
        changed = (out[i] != x[i]).nonzero().flatten()
        assert len(changed) > 0
        for j in changed:
            back = out[i].clone()
            back[j] = x[i, j]
            assert not det.keep(back[None].numpy(), labels[i:i + 1].numpy()).any()
    inside = det.project_binary(Xv[:8], yv[:8], 100.0)
    assert torch.equal(inside, Xv[:8])  # inside the ball already: unchanged


def test_constrained_attacker_fits_its_own_detector_on_its_validation_data():
    from poisonrepro.papers.back_gradient import experiments as B
    cfg = load_config("back_gradient", "smoke")
    rng = np.random.default_rng(0)
    sp = {"X_val": rng.random((40, 3)), "y_val": np.repeat([0, 1], 20),
          "X_trusted": rng.random((20, 3)) + 5, "y_trusted": np.repeat([0, 1], 10)}
    guess = B.attacker_detector(cfg, sp)
    assert np.allclose(guess.centroids[0], sp["X_val"][:20].mean(0))  # never the defender's trusted points


def test_cpu_profile_has_at_least_three_splits_for_every_claim():
    cfg = load_config("back_gradient", "cpu")
    assert cfg.splits >= 3 and cfg.mc_splits >= 3
