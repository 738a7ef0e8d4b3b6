"""The trial executor: results independent of order and worker, the cache (hits never
recomputed, resume), bad settings rejected before compute; and the acceptance test: notebook
05 at the smoke profile on a local 2-worker Dask cluster writes the same claims.csv as in-process."""
import json
import os
import random
from pathlib import Path

import numpy as np
import papermill as pm
import pytest
import torch

from poisonrepro import executor as E
from poisonrepro.cache import EVENTS, ArtifactCache

REPO = Path(__file__).resolve().parents[1]
HERE = Path(__file__).resolve().parent
TOY = f"{__name__}:toy_trial"


def toy_trial(x: int, seed: int, log: str = "") -> dict:
    """Draws from the *global* generators (so it depends on the executor's seeding) and takes
    a convolution's gradient (so it depends on the executor's thread count)."""
    if log:
        with open(log, "a") as fh:
            fh.write(f"{x}\n")
    net = torch.nn.Sequential(torch.nn.Conv2d(3, 16, 3, padding=1), torch.nn.ReLU(), torch.nn.Conv2d(16, 32, 3),
                              torch.nn.Flatten(), torch.nn.LazyLinear(10))
    images = torch.rand(64, 3, 16, 16)
    loss = torch.nn.functional.cross_entropy(net(images), torch.randint(0, 10, (64,)))
    loss.backward()
    return {"x": x, "loss": loss.item(), "grad": torch.cat([p.grad.flatten() for p in net.parameters()]),
            "noise": np.random.default_rng(x).random(3) + np.random.random(3)}


def trials(n=6, log=""):
    return [E.Trial("test/toy", TOY, {"x": i, "seed": 100 + i, "log": log}) for i in range(n)]


def computed(log: Path) -> list[int]:
    return sorted(int(x) for x in log.read_text().split()) if log.exists() else []


def same(a: list[dict], b: list[dict]) -> bool:
    return len(a) == len(b) and all(ra.keys() == rb.keys() and all(torch.equal(ra[k], rb[k]) for k in ra)
                                    for ra, rb in zip(a, b))


@pytest.fixture(scope="module")
def dask_cluster():
    """A local 2-worker cluster (processes, one thread each); the workers import this module."""
    distributed = pytest.importorskip("dask.distributed")
    old = os.environ.get("PYTHONPATH")
    os.environ["PYTHONPATH"] = os.pathsep.join(filter(None, [str(HERE), old]))
    cluster = distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None)
    yield cluster
    E.shutdown()
    cluster.close()
    os.environ.pop("PYTHONPATH") if old is None else os.environ.__setitem__("PYTHONPATH", old)


def test_shuffled_order_and_the_callers_seed_give_the_same_results(tmp_path, monkeypatch):
    monkeypatch.delenv("POISONREPRO_EXECUTOR", raising=False)
    ts = trials()
    torch.manual_seed(1)
    np.random.seed(1)
    first = E.run_trials(ts, ArtifactCache(tmp_path / "a"))
    order = list(range(len(ts)))
    random.Random(1).shuffle(order)
    torch.manual_seed(2)  # nor on the caller's generators
    np.random.seed(2)
    shuffled = E.run_trials([ts[i] for i in order], ArtifactCache(tmp_path / "b"))
    assert same([first[i] for i in order], shuffled)
    assert [int(r["x"]) for r in first] == list(range(len(ts)))  # results in the order of the trials
    assert not same(first[:1], first[1:2])  # the trials do differ


def test_in_process_trials_leave_the_callers_generators_alone(tmp_path, monkeypatch):
    monkeypatch.delenv("POISONREPRO_EXECUTOR", raising=False)
    torch.manual_seed(5)
    expected = torch.rand(3)
    torch.manual_seed(5)
    E.run_trials(trials(2), ArtifactCache(tmp_path))
    assert torch.equal(torch.rand(3), expected)


def test_cache_hits_are_not_recomputed_and_a_partial_run_resumes(tmp_path, monkeypatch):
    monkeypatch.delenv("POISONREPRO_EXECUTOR", raising=False)
    log, cache = tmp_path / "computed.txt", ArtifactCache(tmp_path / "artifacts")
    part = E.run_trials(trials(3, str(log)), cache)          # an interrupted run: 3 of 6 finished
    assert computed(log) == [0, 1, 2]
    EVENTS.clear()
    full = E.run_trials(trials(6, str(log)) + trials(2, str(log)), cache)  # with two repeats
    assert computed(log) == [0, 1, 2, 3, 4, 5]                # only the missing ones, each once
    assert [s for _, _, s in EVENTS] == ["hit"] * 3 + ["miss"] * 3
    assert same(part, full[:3]) and same(full[:2], full[6:])
    assert len(list((tmp_path / "artifacts" / "test" / "toy").glob("*.pt"))) == 6


def test_keys_follow_the_spec_not_its_order():
    a = E.Trial("s", TOY, {"x": 1, "seed": 2})
    assert E.trial_key(a) == E.trial_key(E.Trial("s", TOY, {"seed": 2, "x": 1}))
    assert E.trial_key(a) != E.trial_key(E.Trial("s", TOY, {"x": 1, "seed": 3}))
    assert E.trial_key(a, threads=1) != E.trial_key(a, threads=2)


def test_bad_settings_are_rejected_before_any_compute(tmp_path, monkeypatch):
    log = tmp_path / "computed.txt"
    cache = ArtifactCache(tmp_path / "artifacts")
    for var, value, msg in (("POISONREPRO_EXECUTOR", "ray", "allowed values are local, dask"),
                            ("POISONREPRO_TRIAL_THREADS", "0", "positive integer")):
        with monkeypatch.context() as m:
            m.setenv(var, value)
            with pytest.raises(ValueError, match=msg):
                E.run_trials(trials(2, str(log)), cache)
    with pytest.raises(ValueError, match="cannot be imported"):
        E.run_trials([E.Trial("test/toy", f"{__name__}:no_such_trial", {})], cache)
    with pytest.raises(TypeError, match="JSON-able"):
        E.run_trials([E.Trial("test/toy", TOY, {"x": object()})], cache)
    assert not log.exists() and not (tmp_path / "artifacts").exists()


def test_a_worker_with_other_code_refuses_the_trial():
    spec = json.dumps({"x": 1, "seed": 2})
    assert int(E.execute_trial(TOY, spec, 1, E.module_code_hash(__name__))["x"]) == 1
    with pytest.raises(RuntimeError, match="differs from the driver's"):
        E.execute_trial(TOY, spec, 1, "0" * 16)


def test_gpu_resources_are_requested_only_where_workers_advertise_them():
    class FakeClient:
        def __init__(self, resources):
            self.info = {"workers": {f"w{i}": {"resources": r} for i, r in enumerate(resources)}}

        def wait_for_workers(self, n):
            pass

        def scheduler_info(self, n_workers=-1):
            return self.info
    assert E._gpu_resources(FakeClient([{}, {}])) is None
    assert E._gpu_resources(FakeClient([{"GPU": 1}, {"GPU": 1}])) == {"GPU": 1}


def test_dask_gives_the_in_process_results_and_skips_cache_hits(dask_cluster, tmp_path, monkeypatch):
    log = tmp_path / "computed.txt"
    monkeypatch.delenv("POISONREPRO_EXECUTOR", raising=False)
    local = E.run_trials(trials(), ArtifactCache(tmp_path / "local"))
    monkeypatch.setenv("POISONREPRO_EXECUTOR", "dask")
    monkeypatch.setenv("DASK_SCHEDULER_ADDRESS", dask_cluster.scheduler_address)
    assert E.executor_name() == "dask"
    cache = ArtifactCache(tmp_path / "dask")
    E.run_trials(trials(2, str(log)), cache)
    remote = E.run_trials(trials(6, str(log)), cache)
    assert same(local, remote)
    assert computed(log) == [0, 1, 2, 3, 4, 5]  # the first two were cache hits, not resubmitted
    workers = E._dask_client().run(os.getpid)
    assert len(set(workers.values())) == 2 and os.getpid() not in workers.values()


def _run_05(tmp_path, name, **env):
    """Notebook 05 at smoke into tmp_path/name with its own empty cache and results dir."""
    root = tmp_path / name
    root.mkdir()
    saved = dict(os.environ)
    os.environ.update(POISONREPRO_PROFILE="smoke", POISONREPRO_PROGRESS="0", POISONREPRO_ARTIFACTS=str(root / "artifacts"),
                      POISONREPRO_FIGURES=str(root / "figures"), **env)
    try:
        pm.execute_notebook(str(REPO / "notebooks" / "05_biggio_svm.ipynb"), str(root / "05.ipynb"),
                            kernel_name="python3", cwd=str(REPO / "notebooks"), progress_bar=False)
    finally:
        os.environ.clear()
        os.environ.update(saved)
    outputs = json.dumps([c.get("outputs", []) for c in json.loads((root / "05.ipynb").read_text())["cells"]])
    return (root / "figures" / "smoke" / "05_biggio_svm" / "claims.csv").read_bytes(), outputs, root


@pytest.mark.slow
def test_notebook_05_on_a_local_dask_cluster_writes_the_in_process_claims(mirror, tmp_path, monkeypatch):
    monkeypatch.delenv("DASK_SCHEDULER_ADDRESS", raising=False)
    in_process, out_local, _ = _run_05(tmp_path, "local", POISONREPRO_EXECUTOR="local")
    on_dask, out_dask, root = _run_05(tmp_path, "dask", POISONREPRO_EXECUTOR="dask", POISONREPRO_WORKERS="2")
    assert "trials run by the dask executor" in out_dask and "trials run by the local executor" in out_local
    assert "artifact cache: 0 reused" in out_dask  # its own empty cache: the cluster computed everything
    assert len(list((root / "artifacts" / "biggio_svm").rglob("*.pt"))) >= 11
    assert on_dask == in_process and in_process.count(b"\n") > 10
