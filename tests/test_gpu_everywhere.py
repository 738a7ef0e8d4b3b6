"""Notebooks 01, 05, 06, 07, 08 and 10 on a CUDA device: a tiny piece of each runs its networks and
learners there and returns its results on the CPU (synthetic data, smoke configs). Skipped without
one, but for the last test, which runs anywhere: each paper puts its networks where
``train.default_device()`` says. Run on a GPU machine with ``pytest tests/test_gpu_everywhere.py``."""
import matplotlib.pyplot as plt
import numpy as np
import pytest
import torch

from poisonrepro import data as D
from poisonrepro import models as M
from poisonrepro import pretrained
from poisonrepro import train as T
from poisonrepro.attacks import back_gradient as BG
from poisonrepro.cache import ArtifactCache
from poisonrepro.config import load_config
from poisonrepro.defenses import dpa
from poisonrepro.defenses.outlier_detection import fit_outlier_detector
from poisonrepro.papers.back_gradient import experiments as BGE
from poisonrepro.papers.biggio_svm import experiments as SVM
from poisonrepro.papers.dpa import experiments as DE
from poisonrepro.papers.influence import experiments as IE
from poisonrepro.papers.pgan import experiments as GE
from poisonrepro.papers.poison_frogs import experiments as PF
from poisonrepro.papers.poison_frogs import report as PFR
from poisonrepro.results import Results

cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")


def _tensors(obj):
    if isinstance(obj, torch.Tensor):
        yield obj
    elif isinstance(obj, dict):
        for v in obj.values():
            yield from _tensors(v)
    elif isinstance(obj, (list, tuple)):
        for v in obj:
            yield from _tensors(v)


def _all_on_cpu(obj) -> bool:
    found = list(_tensors(obj))
    return bool(found) and all(t.device.type == "cpu" for t in found)


def _device_type(module) -> str:
    return next(module.parameters()).device.type


# --------------------------------------------------------------------------- 01
def _split(n, seed):
    g = torch.Generator().manual_seed(seed)
    return PF.Split(torch.rand(n, 3, 32, 32, generator=g), torch.arange(n) % 2)


def _frogs_data():
    return {"unseen": [0, 6], "transfer_train": _split(40, 1), "transfer_bases": _split(20, 2),
            "transfer_test": _split(40, 3), "e2e_train": _split(40, 4), "e2e_bases": _split(8, 5),
            "e2e_test": _split(40, 6), "e2e_target_label": 0, "e2e_base_label": 1}


@cuda
def test_poison_frogs_trains_heads_and_victims_on_cuda_and_returns_cpu_results(isolated_artifacts):
    cfg = load_config("poison_frogs", "smoke")
    data, cache = _frogs_data(), ArtifactCache()
    extractor = M.convnet(num_classes=8, width=8).eval().cuda()
    setup = PF.transfer_setup(cfg, data, extractor)
    assert setup["clean_head"].params["weight"].is_cuda
    assert _all_on_cpu({k: v for k, v in setup.items() if k != "clean_head"})
    main = PF.transfer_attack(cfg, data, extractor, setup, cache, n_targets=2)
    upsampled = PF.transfer_attack(cfg, data, extractor, setup, cache, size=64, n_targets=1, controls=False)
    assert _all_on_cpu(main) and _all_on_cpu(upsampled)
    assert _device_type(extractor) == "cuda"
    victim = PF.e2e_victim(cfg, data, cache)
    assert _device_type(victim) == "cuda"
    e2e = PF.e2e_attack(cfg, data, victim, cache)
    assert _all_on_cpu(e2e)
    scratch = PF._finetune(cfg, victim, data["e2e_train"].x, data["e2e_train"].y, e2e["bases"][:1], 1, 5,
                           from_scratch=True)
    assert _device_type(scratch) == "cuda"
    # the report's figures from a head and an extractor on the GPU
    res = Results("01_poison_frogs", "smoke", "poison_frogs")
    PFR.fig_evasion(cfg, data, extractor, setup, res, "synthetic")
    PFR.fig_feature_collision(cfg, data, setup, main, res, "synthetic")
    plt.close("all")


@cuda
def test_feature_collision_crafts_where_the_network_is_and_returns_where_the_bases_are():
    """01 passes CPU images to a GPU network; 03 and 04 pass GPU images (the step sizes once stayed on
    the CPU, and 04's baseline crashed on a GPU)."""
    from poisonrepro.attacks.feature_collision import craft_poisons
    net = M.convnet(num_classes=2, width=8).eval().cuda()
    g = torch.Generator().manual_seed(0)
    base, target = torch.rand(3, 3, 32, 32, generator=g), torch.rand(1, 3, 32, 32, generator=g)
    for where in ("cpu", "cuda"):
        poisons, history = craft_poisons(net, base.to(where), target.to(where), beta=0.1, iters=5, lr=0.01)
        assert poisons.device.type == history.device.type == where
        assert history[-1].sum() < history[0].sum()  # the objective still falls
    assert _device_type(net) == "cuda"


# --------------------------------------------------------------------------- 05
@cuda
def test_biggio_svm_stays_in_numpy_on_a_cuda_machine():
    r = SVM.toy_surface_trial(kernel="rbf", seed=0, per_class=5, gamma=2.0, step=0.05, grid=3, C=1.0, max_iter=2,
                              patience=1)
    assert all(isinstance(v, np.ndarray) for v in r.values())  # libsvm and numpy: nothing to move


# --------------------------------------------------------------------------- 06
def _train_gd_spy(monkeypatch, module, devices):
    real = module.train_gd

    def spy(learner, X, y, **kwargs):
        w = real(learner, X, y, **kwargs)
        devices.append(w.device.type)
        return w
    monkeypatch.setattr(module, "train_gd", spy)


@cuda
def test_back_gradient_learners_run_on_cuda_and_results_come_back(isolated_artifacts, monkeypatch):
    devices = []
    _train_gd_spy(monkeypatch, BG, devices)   # craft_poisons' own calls
    _train_gd_spy(monkeypatch, BGE, devices)  # the notebook's
    cfg = load_config("back_gradient", "smoke")
    toy = BGE.toy(cfg, ArtifactCache())
    assert _all_on_cpu(toy)
    rng = np.random.default_rng(0)
    learner, s = BGE.make_learner(cfg, "logistic", 5), BGE.settings(cfg, "logistic")
    for binary in (False, True):
        X = rng.random((60, 5))
        X = (X > 0.5).astype(np.float64) if binary else X
        y = (rng.random(60) > 0.5).astype(np.int64)
        sp = {"X_tr": X[:20], "y_tr": y[:20], "X_val": X[20:40], "y_val": y[20:40]}
        det = fit_outlier_detector(X[40:], y[40:], quantile=0.9)
        project = det.project_binary if binary else det.project
        run = BGE._attack(learner, s, sp, BGE._objective(learner, sp["X_val"], sp["y_val"]), X[20:24], 1 - y[20:24],
                          2, None, project=lambda x, yc: project(x, yc, 1.0), binary_flips=int(binary))
        assert run.X_p.device.type == "cpu" and run.X_p.shape == (4, 5)
        assert 0 <= BGE.victim_error(learner, s, *BGE._poisoned(sp, run.X_p.numpy(), run.y_p.numpy(), 4),
                                     X[40:], y[40:]) <= 1
    assert devices and set(devices) == {"cuda"}


# --------------------------------------------------------------------------- 07
def _synthetic_mnist(n=2000, n_test=400, features=16):
    rng = np.random.default_rng(0)
    return ((rng.random((n, features)), np.arange(n) % 10), (rng.random((n_test, features)), np.arange(n_test) % 10),
            "synthetic")


@cuda
def test_generative_and_pgan_train_on_cuda_and_results_come_back(monkeypatch):
    pools = _synthetic_mnist()
    monkeypatch.setattr(GE, "mnist_pools", lambda: pools)
    devices = []
    _train_gd_spy(monkeypatch, BG, devices)
    real_ae, real_pgan = GE.pretrain_autoencoder, GE.train_pgan

    def ae_spy(*args, **kwargs):
        ae = real_ae(*args, **kwargs)
        devices.append(_device_type(ae))
        return ae

    def pgan_spy(model, *args, **kwargs):
        devices.append(_device_type(model))
        return real_pgan(model, *args, **kwargs)
    monkeypatch.setattr(GE, "pretrain_autoencoder", ae_spy)
    monkeypatch.setattr(GE, "train_pgan", pgan_spy)
    cfg = load_config("pgan", "smoke")
    gen, sweep = GE._gen_trial(cfg, 0, None), GE._pgan_seed(cfg, 0, None)
    assert _all_on_cpu(gen) and _all_on_cpu(sweep)
    assert all(float(gen[f"seconds/{k}"]) > 0 for k in ("direct_data", "ae_pretrain", "ae_attack"))
    assert devices and set(devices) == {"cuda"}


# --------------------------------------------------------------------------- 08
def _synthetic_cifar(split="train", *args, **kwargs):
    rng = np.random.default_rng(0 if split == "train" else 1)
    return D.ArrayDataset(rng.integers(0, 256, (500, 32, 32, 3), dtype=np.uint8), np.arange(500) % 10,
                          D.CIFAR10_CLASSES, "synthetic")


def _synthetic_extractor(monkeypatch):
    monkeypatch.setattr(D, "load_cifar10", _synthetic_cifar)
    monkeypatch.setattr(pretrained, "load_extractor",
                        lambda cfg, **kwargs: (M.convnet(num_classes=8, width=8).eval(), "synthetic"))


@cuda
def test_influence_extractor_and_head_on_cuda_results_on_cpu(isolated_artifacts, monkeypatch):
    _synthetic_extractor(monkeypatch)
    cfg, cache = load_config("influence", "smoke"), ArtifactCache()
    d = IE.prepare(cfg, cache)
    assert _device_type(d["extractor"]) == "cuda" and d["head"].theta.is_cuda and d["f_tr"].is_cuda
    assert d["x_tr"].device.type == "cpu" and d["x_te"].device.type == "cpu"  # the images stay
    for result in (IE.leave_one_out_check(cfg, d, cache), IE.attack(cfg, d, cache), IE.control(cfg, d, cache)):
        assert _all_on_cpu(result)


# --------------------------------------------------------------------------- 10
def _synthetic_digits(monkeypatch):
    rng = np.random.default_rng(0)
    data = {"x": rng.integers(0, 256, (64, 1, 32, 32), dtype=np.uint8), "y": np.arange(64) % 10,
            "test_x": rng.integers(0, 256, (8, 1, 32, 32), dtype=np.uint8), "test_y": np.arange(8) % 10,
            "test_index": np.arange(8), "source": "synthetic"}
    monkeypatch.setattr(DE, "dataset", lambda name, n_train, n_test: data)


@cuda
def test_dpa_base_classifiers_train_on_cuda_and_votes_come_back(monkeypatch):
    _synthetic_digits(monkeypatch)
    devices = []
    real = dpa.train_base_classifiers

    def spy(*args, **kwargs):
        stack = real(*args, **kwargs)
        devices.append(next(iter(stack.params.values())).device.type)
        return stack
    monkeypatch.setattr(dpa, "train_base_classifiers", spy)
    r = DE.dpa_trial(dataset_name="mnist", k=4, n_train=64, n_test=8, epochs=1, width=4, batch_size=16, lr=0.1,
                     images_per_pass=64, loop_partitions=2, seed=0)
    assert _all_on_cpu(r) and r["votes"].shape == (4, 8)
    assert devices and set(devices) == {"cuda"}


# --------------------------------------------------------------------------- anywhere
class _Seen(Exception):
    """Raised by a spy once it has seen where a paper put its network: nothing is trained."""


def test_each_paper_puts_its_networks_where_train_default_device_says(isolated_artifacts, monkeypatch):
    """With ``T.default_device`` answering "meta" (no data, no arithmetic), each paper's networks and
    learners' data must land there: a paper that builds them on the CPU and never moves them fails."""
    meta = torch.device("meta")
    monkeypatch.setattr(T, "default_device", lambda: meta)
    seen = {}

    def stop(paper, device):
        seen[paper] = torch.device(device).type
        raise _Seen

    # 01: the extractor, the retrained heads, the end-to-end victim
    monkeypatch.setattr(pretrained, "load_extractor", lambda cfg, **kwargs: (M.convnet(num_classes=8, width=8), "x"))
    cfg = load_config("poison_frogs", "smoke")
    assert _device_type(PF.load_extractor(cfg, {"unseen": [0, 6]}, None)[0]) == "meta"
    monkeypatch.setattr(T, "train_many", lambda heads, *a, **k: stop("01 heads", heads[0].weight.device))
    with pytest.raises(_Seen):
        PF._train_heads(cfg, torch.zeros(4, 8), torch.zeros(4, dtype=torch.long), torch.zeros(1, 1, 8),
                        torch.zeros(1, 1, dtype=torch.long), [0])
    for trainer in ("train_victim", "train_classifier"):  # the victim's recipe picks one
        monkeypatch.setattr(T, trainer, lambda model, *a, **k: stop("01 victim", next(model.parameters()).device))
    with pytest.raises(_Seen):
        PF.e2e_victim(cfg, _frogs_data(), ArtifactCache())
    # 06: the back-gradient learners' data
    cfg = load_config("back_gradient", "smoke")
    monkeypatch.setattr(BGE, "train_gd", lambda learner, X, y, **k: stop("06", X.device))
    with pytest.raises(_Seen):
        BGE.victim_error(BGE.make_learner(cfg, "logistic", 3), BGE.settings(cfg, "logistic"), np.zeros((4, 3)),
                         np.zeros(4), np.zeros((2, 3)), np.zeros(2))
    # 07: the generative attack's learner data (the direct method first)
    monkeypatch.setattr(GE, "mnist_pools", lambda: _synthetic_mnist())
    monkeypatch.setattr(GE, "craft_poisons", lambda learner, X_tr, *a, **k: stop("07", X_tr.device))
    with pytest.raises(_Seen):
        GE._gen_trial(load_config("pgan", "smoke"), 0, None)
    # 08: the extractor
    _synthetic_extractor(monkeypatch)
    monkeypatch.setattr(T, "extract_features", lambda model, x, *a, **k: stop("08", next(model.parameters()).device))
    with pytest.raises(_Seen):
        IE.prepare(load_config("influence", "smoke"), ArtifactCache())
    # 10: the base classifiers
    _synthetic_digits(monkeypatch)
    monkeypatch.setattr(dpa, "train_base_classifiers",
                        lambda make, *a, **k: stop("10", next(make().parameters()).device))
    with pytest.raises(_Seen):
        DE.dpa_trial(dataset_name="mnist", k=4, n_train=64, n_test=8, epochs=1, width=4, batch_size=16, lr=0.1,
                     images_per_pass=64, loop_partitions=0, seed=0)
    assert seen == {"01 heads": "meta", "01 victim": "meta", "06": "meta", "07": "meta", "08": "meta", "10": "meta"}
