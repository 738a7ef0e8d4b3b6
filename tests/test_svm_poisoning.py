import numpy as np
import pytest

from poisonrepro.attacks.svm_poisoning import attack_gradient, fit_svm, hinge_loss, poison_svm
from poisonrepro.config import ConfigError, load_config


def _toy(seed=0):
    rng = np.random.default_rng(seed)
    X = np.vstack([rng.normal(-1, 1, (15, 2)), rng.normal(1, 1, (15, 2))])
    Xv = np.vstack([rng.normal(-1, 1, (50, 2)), rng.normal(1, 1, (50, 2))])
    y = np.r_[-np.ones(15), np.ones(15)]
    yv = np.r_[-np.ones(50), np.ones(50)]
    return X, y, Xv, yv


@pytest.mark.parametrize("kernel,xc,margin_vector", [
    ("linear", (1.2, 0.8), False), ("linear", (0.8, 0.2), False), ("linear", (-1.5, 0.75), True),
    ("rbf", (0.0, 0.0), False), ("rbf", (0.5, 0.5), False),
])
def test_attack_gradient_matches_finite_differences(kernel, xc, margin_vector):
    X, y, Xv, yv = _toy()
    xc = np.asarray(xc)
    Xa, ya = np.vstack([X, xc]), np.append(y, -1)
    clf = fit_svm(Xa, ya, kernel=kernel, C=1.0, gamma=0.5)
    alpha_c = np.abs(clf.dual_coef_[0])[list(clf.support_).index(30)]
    assert (alpha_c < 1 - 1e-6) == margin_vector  # both cases of the derivation are exercised
    # no validation point on the hinge's kink, where the loss has no derivative
    assert np.abs(yv * clf.decision_function(Xv) - 1).min() > 1e-3

    def loss(u):
        return hinge_loss(fit_svm(np.vstack([X, u]), ya, kernel=kernel, C=1.0, gamma=0.5), Xv, yv)
    h = 1e-4
    fd = np.array([(loss(xc + h * e) - loss(xc - h * e)) / (2 * h) for e in np.eye(2)])
    g = attack_gradient(clf, Xa, ya, 30, Xv, yv, kernel=kernel, C=1.0, gamma=0.5)
    assert np.allclose(g, fd, rtol=1e-3, atol=2e-3), (g, fd)


@pytest.mark.parametrize("kernel,gamma,min_gain", [("linear", 0.0, 1.0), ("rbf", 32.0, 1.1)])
def test_algorithm_1_raises_the_validation_loss_and_stays_in_the_box(kernel, gamma, min_gain):
    from poisonrepro.papers.biggio_svm.experiments import toy_data
    cfg = load_config("biggio_svm", "cpu")
    rng = np.random.default_rng(0)
    (X, y), (Xv, yv) = toy_data(cfg, rng), toy_data(cfg, rng)
    x0 = X[y == 1][np.argmin(((X[y == 1] - X[y == 1].mean(0)) ** 2).sum(1))]
    tr = poison_svm(X, y, Xv, yv, x0, -1, kernel=kernel, C=1.0, gamma=gamma, step=0.1, max_iter=60)
    assert tr.val_loss[-1] > tr.val_loss[0] * min_gain and max(tr.val_loss) > tr.val_loss[0]
    pts = np.asarray(tr.points)
    assert pts.min() >= 0 and pts.max() <= 1


def test_bad_inputs_are_rejected_before_any_compute():
    with pytest.raises(ConfigError, match=r"attack_fractions=1.0: must lie in \[0, 1\)"):
        load_config("biggio_svm", "smoke", attack_fractions=(0.0, 1.0))
    with pytest.raises(ConfigError, match="attack_fractions=-0.1"):
        load_config("biggio_svm", "smoke", attack_fractions=(-0.1,))
    with pytest.raises(ConfigError, match="kernels='poly'.*allowed values are 'linear', 'rbf'"):
        load_config("biggio_svm", "smoke", kernels=("poly",))
    with pytest.raises(ConfigError, match="pairs='3v5'"):
        load_config("biggio_svm", "smoke", pairs=("3v5",))
    with pytest.raises(ValueError, match="kernel='poly'"):
        fit_svm(np.zeros((2, 2)), np.array([-1, 1]), kernel="poly", C=1.0, gamma=0.1)


def _fake_runs(cfg, clean, attacked, multi_rise, seed=0):
    """Per-split results shaped like ``single_point`` / ``multi_point``: every pair gets the
    clean and attacked errors given (per pair), plus split-to-split noise."""
    import torch
    rng = np.random.default_rng(seed)
    P, K, S, L = len(cfg.pairs), len(cfg.kernels), cfg.splits, 3
    te = np.zeros((P, K, S, L))
    for p in range(P):
        te[p, :, :, 0] = clean[p] + rng.normal(0, 0.003, (K, S))
        te[p, :, :, 1:] = (attacked[p] + rng.normal(0, 0.005, (K, S)))[..., None]
    frac = np.asarray(cfg.attack_fractions)
    multi = np.stack([clean[p] + multi_rise[p] * frac / frac.max() + rng.normal(0, 0.005, (cfg.multi_splits, len(frac)))
                      for p in range(P)])
    return {"test_error": torch.from_numpy(te)}, {"test_error": torch.from_numpy(multi)}


def test_claims_are_decided_by_tests_on_the_per_split_errors(tmp_path, monkeypatch):
    from poisonrepro.papers.biggio_svm.report import record_claims
    from poisonrepro.results import Results
    cfg = load_config("biggio_svm", "cpu")
    # pair 1 reproduces; pair 2: clean error too high, attack too weak, no trend; pair 3: on the thresholds
    single, multi = _fake_runs(cfg, clean=[0.03, 0.08, 0.05], attacked=[0.20, 0.10, 0.15], multi_rise=[0.2, 0.0, 0.05])
    monkeypatch.setenv("POISONREPRO_FIGURES", str(tmp_path))
    res = Results("test_05_claims", "smoke", "biggio_svm")
    record_claims(cfg, single, multi, res, "fake")
    v = res.claims_frame().verdict.tolist()
    assert len(v) == 12
    assert v[0:4] == ["holds"] * 4
    assert v[4:8] == ["fails"] * 4
    assert v[8:12] == ["inconclusive"] * 4   # exactly on every threshold: the data cannot tell
    assert "t bound" in res.claims_frame().test[0] and "OLS" in res.claims_frame().test[3]
    # one headline per digit pair (the quote's rise); ids name the pair and the kernel, as at every profile
    frame = res.claims_frame()
    headline = frame[frame.role == "headline"]
    assert headline.id.tolist() == [f"BS-1:attacked-test-error-clean-test-error:{p}-linear" for p in cfg.pairs]
    assert frame.id.is_unique and (frame.role[frame.role != "headline"] == "supporting").all()
    assert frame.p_holm[frame.role == "headline"].notna().all()  # Holm over the three pairs


def test_claim_ids_and_roles_are_the_same_at_every_profile(tmp_path, monkeypatch):
    from poisonrepro.papers.biggio_svm.report import record_claims
    from poisonrepro.results import Results
    monkeypatch.setenv("POISONREPRO_FIGURES", str(tmp_path))
    seen = {}
    for profile in ("smoke", "cpu", "paper"):
        cfg = load_config("biggio_svm", profile)
        single, multi = _fake_runs(cfg, clean=[0.03] * 3, attacked=[0.2] * 3, multi_rise=[0.2] * 3)
        res = Results("test_05_ids", profile, "biggio_svm")
        record_claims(cfg, single, multi, res, "fake")
        seen[profile] = list(zip(*(res.claims_frame()[c] for c in ("id", "role"))))
    assert seen["smoke"] == seen["cpu"] == seen["paper"]
