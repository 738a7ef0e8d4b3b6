import pytest
import torch
from scipy.stats import spearmanr

from poisonrepro.attacks.influence import (LogisticHead, influence_pert_loss, influence_up_loss, inverse_hvp,
                                           training_set_attack)


def _data(n=100, d=8, seed=0):
    g = torch.Generator().manual_seed(seed)
    X = torch.randn(n, d, generator=g, dtype=torch.float64)
    w = torch.randn(d, generator=g, dtype=torch.float64)
    y = ((X @ w + 0.5 * torch.randn(n, generator=g, dtype=torch.float64)) > 0).long()
    return X, y


def test_influence_predicts_leave_one_out_retraining():
    X, y = _data()
    xt, yt = torch.randn(1, X.shape[1], dtype=torch.float64), torch.tensor([1])
    head = LogisticHead.fit(X, y, 0.01)
    predicted = -influence_up_loss(head, X, y, xt, yt) / len(y)
    base = head.losses(xt, yt)[0]
    actual = []
    for i in range(len(y)):
        keep = torch.arange(len(y)) != i
        actual.append(float(LogisticHead.fit(X[keep], y[keep], 0.01).losses(xt, yt)[0] - base))
    assert spearmanr(predicted.numpy(), actual).statistic >= 0.9


def test_conjugate_gradients_agree_with_the_exact_solve():
    X, y = _data(d=20)
    head = LogisticHead.fit(X, y, 0.01)
    v = torch.randn(21, dtype=torch.float64)
    assert torch.allclose(inverse_hvp(head, X, v, "exact"), inverse_hvp(head, X, v, "cg"), atol=1e-8)
    with pytest.raises(ValueError, match="method='lissa'"):
        inverse_hvp(head, X, v, "lissa")


class _Tanh(torch.nn.Module):
    """A fixed differentiable 'extractor' for the tests."""
    def __init__(self, d_in, d_out):
        super().__init__()
        self.lin = torch.nn.Linear(d_in, d_out).double()

    def features(self, x):
        return torch.tanh(self.lin(x.flatten(1).double()))


def _extractor_task(seed, n):
    """A fixed extractor, n images, their features, median-split labels, a test image and the head."""
    torch.manual_seed(seed)
    ext = _Tanh(6, 5)
    imgs = torch.rand(n, 6, dtype=torch.float64)
    with torch.no_grad():
        feats = ext.features(imgs)
    y = (feats[:, 0] > feats[:, 0].median()).long()
    xt = torch.rand(1, 6, dtype=torch.float64)
    return ext, imgs, feats, y, xt, LogisticHead.fit(feats, y, 0.01)


def test_perturbation_influence_predicts_the_retrained_test_loss():
    ext, imgs, feats, y, xt, head = _extractor_task(1, 80)
    yt = torch.tensor([0])
    with torch.no_grad():
        ft = ext.features(xt)
    s_test = inverse_hvp(head, feats, head.grads(ft, yt)[0])
    i = 3
    ipert = influence_pert_loss(ext, head, imgs[i:i + 1], y[i:i + 1], s_test)[0]
    base = head.losses(ft, yt)[0]
    h = 1e-4
    for j in range(3):
        moved = imgs.clone()
        moved[i, j] += h
        with torch.no_grad():
            f2 = ext.features(moved)
        change = LogisticHead.fit(f2, y, 0.01).losses(ft, yt)[0] - base
        assert float(change) == pytest.approx(float(ipert[j]) * h / len(y), rel=0.05, abs=1e-9)


def test_training_set_attack_raises_the_test_loss_within_its_box():
    ext, imgs, feats, y, xt, head = _extractor_task(2, 60)
    with torch.no_grad():
        yt = head.predict(ext.features(xt))  # attack the model's own (correct) prediction
    before = head.losses(ext.features(xt).detach(), yt)[0]
    flipped, idx, x, new_head = training_set_attack(ext, head, imgs, y, feats, xt, yt, n_perturb=5, eps=0.1,
                                                    step=0.02, iters=3, weight_decay=0.01)
    after = new_head.losses(ext.features(xt).detach(), yt)[0]
    assert after > before
    assert (x - imgs[idx]).abs().max() <= 0.1 + 1e-12 and x.min() >= 0 and x.max() <= 1


def test_random_sign_control_moves_the_attacks_images_to_corners_of_its_box():
    from poisonrepro.attacks.influence import most_influential, random_sign_control
    ext, imgs, feats, y, xt, head = _extractor_task(3, 60)
    with torch.no_grad():
        ft = ext.features(xt)
    yt = head.predict(ft)
    infl = influence_up_loss(head, feats, y, ft, yt)
    idx = most_influential(head, feats, y, ft, yt, 4)
    assert set(idx.tolist()) == set(torch.topk(infl.abs(), 4).indices.tolist())  # the attack's choice
    eps = 0.05
    flipped, x, new_head = random_sign_control(ext, imgs, y, feats, ft, yt, idx, eps=eps, weight_decay=0.01,
                                               generator=torch.Generator().manual_seed(0))
    delta = x - imgs[idx]
    assert delta.abs().max() <= eps + 1e-12 and x.min() >= 0 and x.max() <= 1
    at_corner = ((delta.abs() - eps).abs() < 1e-12) | (x == 0) | (x == 1)
    assert bool(at_corner.all()) and 0.3 < float((delta > 0).double().mean()) < 0.7  # random signs
    assert isinstance(flipped, bool) and not torch.equal(new_head.theta, head.theta)
    with pytest.raises(ValueError, match="eps=0"):
        random_sign_control(ext, imgs, y, feats, ft, yt, idx, eps=0, weight_decay=0.01,
                            generator=torch.Generator())


def _fake(cfg, attack_k, control_k, n):
    """Attack and control results with ``attack_k[e][c]`` / ``control_k[e][c]`` of ``n``
    targets flipped per box e and number of images c."""
    def flips(k):
        f = torch.zeros(len(cfg.eps), len(cfg.perturb_counts), n, dtype=torch.bool)
        for e in range(len(cfg.eps)):
            for c in range(len(cfg.perturb_counts)):
                f[e, c, :k[e][c]] = True
        return f
    att = {"flipped": flips(attack_k), "linf": torch.full((len(cfg.eps), len(cfg.perturb_counts), n), 0.01)}
    return att, {"flipped": flips(control_k)}


def test_table_figure_and_claims_on_edge_cases(tmp_path, monkeypatch):
    """0/n, n/n, n = 0 and Wilson bounds that touch their rate: no crash, no negative error
    bar, no division by zero, and verdicts that follow the data."""
    import numpy as np
    from poisonrepro.config import load_config
    from poisonrepro.papers.influence import report as R
    from poisonrepro.results import Results
    monkeypatch.setenv("POISONREPRO_FIGURES", str(tmp_path))
    cfg = load_config("influence", "cpu")          # boxes 2/255 and 16/255; 1, 2, 3, 5, 10 images
    n = 30
    att, ctl = _fake(cfg, [[0] * 5, [n // 2, 20, 24, 28, n]], [[0] * 5, [0] * 5], n)
    loo = {"predicted": torch.linspace(-1, 1, 40, dtype=torch.float64), "actual": torch.linspace(-2, 2, 40, dtype=torch.float64),
           "top_predicted": torch.linspace(-1, 1, 40, dtype=torch.float64),
           "top_actual": torch.randn(40, generator=torch.Generator().manual_seed(0), dtype=torch.float64)}
    res = Results("test_08_claims", "cpu", "influence")
    table = R.attack_table(cfg, att, ctl, res)
    assert table.loc[(2.0, 1)].success_rate == 0 and table.loc[(16.0, 10)].success_rate == 1
    assert table.loc[(16.0, 10)].ci_high == 1 and table.loc[(2.0, 1)].control_ci_low == 0  # bounds touch rates
    assert (tmp_path / "cpu" / "test_08_claims" / "INF-1.csv").exists()  # tables are saved by the report
    R.fig_attack(cfg, table, res, "label")
    R.record_claims(cfg, loo, att, ctl, res, "label")
    got = dict(zip(zip(res.claims_frame().metric, res.claims_frame().setting.str.contains("16/255")),
                   res.claims_frame().verdict))
    assert got[("spearman(predicted, actual), random points", False)] == "holds"
    assert got[("spearman(predicted, actual), top points", False)] == "fails"        # no agreement at all
    assert got[("success_rate (one image)", False)] == "fails"                        # 0/30 is no majority
    assert got[("success_rate (one image)", True)] == "inconclusive"                  # 15/30 against 0.5
    assert got[("change of success_rate over the images", False)] == "fails"          # flat at zero
    assert got[("change of success_rate over the images", True)] == "holds"
    assert got[("success_rate - control_success_rate", False)] == "inconclusive"      # 0 - 0: no excess shown
    assert got[("success_rate - control_success_rate", True)] == "holds"              # 30/30 against 0/30
    # no targets at all: NaN rates, no crash, every claim on them inconclusive
    att0, ctl0 = _fake(cfg, [[0] * 5] * 2, [[0] * 5] * 2, 0)
    t0 = R.attack_table(cfg, att0, ctl0, res)
    assert np.isnan(t0.success_rate).all() and np.isnan(t0.max_linf_255).all()
    R.fig_attack(cfg, t0, res, "label")
    res0 = Results("test_08_claims", "cpu", "influence")
    R.record_claims(cfg, loo, att0, ctl0, res0, "label")
    assert (res0.claims_frame().verdict.iloc[2:] == "inconclusive").all()


def _old_training_set_attack(extractor, head, train_images, train_y, train_feats, test_image, test_y,
                             *, n_perturb, eps, step, iters, weight_decay):
    """The attack's own loop before it moved onto the crafting loop, verbatim."""
    from poisonrepro.attacks.influence import most_influential
    with torch.no_grad():
        test_feat = extractor.features(test_image)
    idx = most_influential(head, train_feats, train_y, test_feat, test_y, n_perturb)
    base = train_images[idx]
    x = base.clone()
    feats = train_feats.clone()
    for _ in range(iters):
        s_test = inverse_hvp(head, feats, head.grads(test_feat, test_y)[0])
        g = influence_pert_loss(extractor, head, x, train_y[idx], s_test)
        x = torch.min(torch.max(x + step * g.sign(), base - eps), base + eps).clamp(0, 1).detach()
        with torch.no_grad():
            feats[idx] = extractor.features(x).to(feats.dtype)
        head = LogisticHead.fit(feats, train_y, weight_decay)
        if int(head.predict(test_feat)[0]) != int(test_y[0]):
            return True, idx, x, head
    return False, idx, x, head


@pytest.mark.parametrize("seed,iters,eps", [(2, 3, 0.1), (3, 6, 0.05), (4, 12, 0.3)])  # seed 3 flips early
def test_training_set_attack_on_the_crafting_loop_follows_its_old_trajectory(seed, iters, eps):
    ext, imgs, feats, y, xt, head = _extractor_task(seed, 60)
    with torch.no_grad():
        yt = head.predict(ext.features(xt))
    kw = dict(n_perturb=5, eps=eps, step=0.02, iters=iters, weight_decay=0.01)
    new = training_set_attack(ext, head, imgs, y, feats, xt, yt, **kw)
    old = _old_training_set_attack(ext, head, imgs, y, feats, xt, yt, **kw)
    assert new[0] == old[0] and torch.equal(new[1], old[1])
    assert torch.equal(new[2], old[2]) and torch.equal(new[3].theta, old[3].theta)  # bit for bit


def _loo():
    return {k: torch.linspace(-1, 1, 40, dtype=torch.float64) for k in ("predicted", "actual", "top_predicted",
                                                                         "top_actual")}


def test_attack_and_control_are_compared_paired_by_target(tmp_path, monkeypatch):
    """The control moves the same images for the same targets: a target the control flips is one
    the attack flips too (here), so the discordant targets decide (McNemar: 5 of 5 go the attack's
    way). The unpaired comparison of the two rates (8/20 against 3/20) could not tell."""
    from poisonrepro.config import load_config
    from poisonrepro.papers.influence import report as R
    from poisonrepro.results import Results
    monkeypatch.setenv("POISONREPRO_FIGURES", str(tmp_path))
    cfg = load_config("influence", "cpu")
    att, ctl = _fake(cfg, [[8] * 5] * 2, [[3] * 5] * 2, 20)
    res = Results("test_08_paired", "cpu", "influence")
    R.record_claims(cfg, _loo(), att, ctl, res, "label")
    control = res.claims_frame().set_index("id").loc["INF-1:success-rate-control-success-rate:box2"]
    assert control.measured == pytest.approx(0.25) and control.verdict == "holds"
    assert "McNemar" in control.test and control.n == 20


def test_one_headline_per_box_with_ids_that_name_the_box(tmp_path, monkeypatch):
    from poisonrepro.config import load_config
    from poisonrepro.papers.influence import report as R
    from poisonrepro.results import Results
    monkeypatch.setenv("POISONREPRO_FIGURES", str(tmp_path))
    ids = {}
    for profile in ("smoke", "cpu", "paper"):
        cfg = load_config("influence", profile)
        att, ctl = _fake(cfg, [[10] * 5] * len(cfg.eps), [[0] * 5] * len(cfg.eps), 20)
        res = Results("test_08_ids", profile, "influence")
        R.record_claims(cfg, _loo(), att, ctl, res, "label")
        frame = res.claims_frame()
        assert frame.id.is_unique
        ids[profile] = frame
    assert ids["smoke"].id.tolist() == ids["cpu"].id.tolist()  # the same boxes, 2/255 and 16/255
    headline = ids["paper"][ids["paper"].role == "headline"]
    assert headline.id.tolist() == [f"INF-1:success-rate-one-image:box{b}" for b in ("0.5", "2", "16")]
    assert set(ids["cpu"].id) < set(ids["paper"].id)  # the paper profile adds its own 0.5/255 box
