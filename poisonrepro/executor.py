"""Trials and the executor that runs them: in-process by default, or on a Dask cluster.

A notebook's expensive work is a grid of independent **trials** (attack x target x victim
architecture x seed). Each trial is a pure function of a JSON-able spec, named by its import
path so that any worker can run it:

    Trial(stage="biggio_svm/single_point", fn="poisonrepro.papers.biggio_svm.experiments:single_point_trial",
          spec={"pair": "7v1", "kernel": "linear", "split": 0, ...})

``run_trials(trials, cache)`` returns their results (``dict[str, Tensor]``) in the order of
``trials``. Each result is looked up in the artifact cache under

    key = sha256(stage, fn, spec, code hash of fn's module, trial threads)[:16]

and only the misses are computed, by the executor that ``POISONREPRO_EXECUTOR`` names:

- unset or ``local``: in-process and sequential; no cluster needed.
- ``dask``: ``dask.distributed``. With ``DASK_SCHEDULER_ADDRESS`` the run joins an existing
  cluster (e.g. SLURM workers started by ``srun dask worker ...`` or dask-jobqueue's
  ``SLURMCluster``); without it, a ``LocalCluster`` of ``POISONREPRO_WORKERS`` (default 2)
  worker processes with one thread each. Where the workers advertise a ``GPU`` resource
  (``dask worker --resources GPU=1``), every trial requests ``{"GPU": 1}``, so that one trial
  runs per GPU at a time.

Why results do not depend on the order or the worker:

- each trial rebuilds everything it needs from its spec (data, splits, random generators);
  the executor seeds Python's, NumPy's and torch's global generators from the spec's
  ``seed`` (``rng.seed_everything``; a seed derived from the spec where it has none)
  before calling it, and in-process it restores the caller's generators afterwards, as a
  remote worker leaves them untouched;
- the spec reaches ``fn`` through a JSON round trip (tuples become lists) on every executor,
  so a function sees exactly what the key hashes;
- each trial runs with a fixed number of CPU threads, ``POISONREPRO_TRIAL_THREADS`` (default
  2), for torch's intra-op pool and the BLAS/OpenMP pools (threadpoolctl): torch's convolution
  gradients differ in the last bits between 1 and 2 threads (checked on this machine), so a
  thread count left to each worker's core count would make float results depend on the
  worker. The default is the reference machine's 2 cores, so that the in-process default
  trains victims on both of them; a Dask worker (one task at a time) sets the same count for
  its trial whatever its nanny's ``OMP_NUM_THREADS``. The thread count is part of the cache
  key: results computed with another count are never mixed in;
- only the driver writes the cache (atomically, as each result comes back), so an
  interrupted run resumes from the finished trials, and cache hits are never resubmitted.
"""
from __future__ import annotations

import atexit
import hashlib
import importlib
import importlib.util
import json
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np
import torch

from .cache import ArtifactCache, code_hash
from .rng import preserved, seed_everything
from .train import progress

EXECUTORS = ("local", "dask")
DEFAULT_WORKERS = 2
DEFAULT_TRIAL_THREADS = 2


def _module_source_hash(module: str) -> str:
    """sha256 (16 hex) of one module file's source: the code hash of a trial function outside
    the package (a test's toy trial, a user's script)."""
    spec = importlib.util.find_spec(module)
    if spec is None or spec.origin is None:
        raise ValueError(f"module {module!r} not found")
    return hashlib.sha256(Path(spec.origin).read_bytes()).hexdigest()[:16]


def module_code_hash(module: str) -> str:
    """The code hash of a trial function's module: ``cache.code_hash`` (the module and every
    poisonrepro module it imports, transitively) for the package's modules, else the hash of
    the one file."""
    if module.split(".")[0] == "poisonrepro":
        return code_hash(module)
    return _module_source_hash(module)


@dataclass(frozen=True)
class Trial:
    """One independent unit of expensive work: ``fn(**spec)`` returns a dict of tensors,
    arrays or scalars. ``stage`` is the cache kind; ``flops`` an estimate for ``make plan``
    (0: unknown)."""
    stage: str
    fn: str
    spec: dict = field(hash=False)
    flops: float = 0.0


# --------------------------------------------------------------------------- settings
def executor_name() -> str:
    """The executor ``POISONREPRO_EXECUTOR`` names (unset: ``local``); ValueError otherwise."""
    name = os.environ.get("POISONREPRO_EXECUTOR", "").strip().lower() or "local"
    if name not in EXECUTORS:
        raise ValueError(f"POISONREPRO_EXECUTOR={os.environ['POISONREPRO_EXECUTOR']!r}: allowed values are "
                         f"{', '.join(EXECUTORS)} (unset: local)")
    return name


def _positive_int_env(name: str, default: int) -> int:
    raw = os.environ.get(name, "").strip()
    if not raw:
        return default
    try:
        value = int(raw)
    except ValueError:
        value = 0
    if value < 1:
        raise ValueError(f"{name}={raw!r}: must be a positive integer (default {default})")
    return value


def trial_threads() -> int:
    """CPU threads every trial runs with (``POISONREPRO_TRIAL_THREADS``, default 2)."""
    return _positive_int_env("POISONREPRO_TRIAL_THREADS", DEFAULT_TRIAL_THREADS)


# --------------------------------------------------------------------------- one trial
def resolve(fn: str) -> Callable:
    """The function a ``"package.module:function"`` string names."""
    module, sep, name = fn.partition(":")
    if not sep or not module or not name:
        raise ValueError(f"fn={fn!r}: expected 'package.module:function'")
    try:
        obj = getattr(importlib.import_module(module), name)
    except (ImportError, AttributeError) as exc:
        raise ValueError(f"fn={fn!r} cannot be imported: {exc}") from None
    if not callable(obj):
        raise ValueError(f"fn={fn!r} is not callable")
    return obj


def _canonical(trial: Trial) -> str:
    if not isinstance(trial.spec, dict):
        raise TypeError(f"{trial.stage}: spec must be a dict, not {type(trial.spec).__name__}")
    try:
        return json.dumps(trial.spec, sort_keys=True, allow_nan=True)
    except TypeError as exc:
        raise TypeError(f"{trial.stage}: spec must be JSON-able ({exc})") from None


def trial_key(trial: Trial, threads: int | None = None) -> str:
    """The cache key of a trial: stage, fn, spec, the code hash of fn's module, threads."""
    threads = trial_threads() if threads is None else threads
    blob = json.dumps({"stage": trial.stage, "fn": trial.fn, "spec": json.loads(_canonical(trial)),
                       "code": module_code_hash(trial.fn.partition(":")[0]), "threads": threads}, sort_keys=True)
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


def trial_seed(spec: dict) -> int:
    """The spec's ``seed``, or one derived from the spec where it has none."""
    if isinstance(spec.get("seed"), int):
        return spec["seed"]
    return int(hashlib.sha256(json.dumps(spec, sort_keys=True).encode()).hexdigest()[:8], 16)


def _as_tensor(name: str, value) -> torch.Tensor:
    if isinstance(value, torch.Tensor):
        return value.detach().cpu().contiguous()
    if isinstance(value, np.ndarray):
        return torch.from_numpy(np.ascontiguousarray(value))
    if isinstance(value, (bool, np.bool_)):
        return torch.tensor(bool(value))
    if isinstance(value, (int, np.integer)):
        return torch.tensor(int(value), dtype=torch.int64)
    if isinstance(value, (float, np.floating)):  # float64, never torch's float32 default
        return torch.tensor(float(value), dtype=torch.float64)
    raise TypeError(f"result {name!r}: a tensor, array or scalar is expected, not {type(value).__name__}")


class _FixedThreads:
    """Torch's intra-op pool and the BLAS/OpenMP pools at ``threads`` inside the block."""

    def __init__(self, threads: int):
        self.threads = threads

    def __enter__(self):
        from threadpoolctl import threadpool_limits
        self.torch_before = torch.get_num_threads()
        torch.set_num_threads(self.threads)
        self.limits = threadpool_limits(limits=self.threads)
        return self

    def __exit__(self, *exc):
        self.limits.restore_original_limits()
        torch.set_num_threads(self.torch_before)


def execute_trial(fn: str, spec_json: str, threads: int, code: str | None = None) -> dict:
    """Run one trial where it lands (driver or worker): fixed threads, seeded from the spec,
    the spec as JSON gives it; the result as ``dict[str, Tensor]``. ``code``: the driver's code
    hash of fn's module, checked against this process's, so that a worker with another
    version of the package never stores results under the driver's key."""
    spec = json.loads(spec_json)
    func = resolve(fn)
    here = module_code_hash(fn.partition(":")[0]) if code is not None else None
    if here != code:
        raise RuntimeError(f"{fn}: this worker's code differs from the driver's (code hash {here} != {code}); "
                           "install the same poisonrepro on every worker")
    with _FixedThreads(threads):
        seed_everything(trial_seed(spec))
        out = func(**spec)
    if not isinstance(out, dict) or not all(isinstance(k, str) for k in out):
        raise TypeError(f"{fn} must return a dict with str keys, not {type(out).__name__}")
    return {k: _as_tensor(k, v) for k, v in out.items()}


def _execute_in_process(fn: str, spec_json: str, threads: int) -> dict:
    """As on a worker: the caller's global random generators are left as they were."""
    with preserved():
        return execute_trial(fn, spec_json, threads)


# --------------------------------------------------------------------------- executors
_CLIENTS: dict = {}


def _dask_client():
    """A client of ``DASK_SCHEDULER_ADDRESS``'s cluster, else of a LocalCluster (kept for the
    process's lifetime, so a notebook's several stages share one)."""
    try:
        from dask.distributed import Client, LocalCluster
    except ImportError:
        raise ImportError("POISONREPRO_EXECUTOR=dask needs dask.distributed: "
                          "pip install 'dask[distributed]' (or pip install -e '.[cluster]')") from None
    address = os.environ.get("DASK_SCHEDULER_ADDRESS", "").strip()
    workers = None if address else _positive_int_env("POISONREPRO_WORKERS", DEFAULT_WORKERS)
    ident = address or f"local:{workers}"
    client = _CLIENTS.get(ident)
    if client is not None and client.status == "running":
        return client
    if address:
        client = Client(address)
    else:
        # processes, one thread each: a trial per core, no GIL sharing; no dashboard (no port to clash)
        cluster = LocalCluster(n_workers=workers, threads_per_worker=1, processes=True, dashboard_address=None)
        client = Client(cluster)
    _CLIENTS[ident] = client
    return client


def shutdown() -> None:
    """Close the clients (and LocalClusters) this process opened."""
    for client in list(_CLIENTS.values()):
        cluster = client.cluster
        client.close()
        if cluster is not None:
            cluster.close()
    _CLIENTS.clear()


atexit.register(shutdown)


def _gpu_resources(client) -> dict | None:
    """``{"GPU": 1}`` where the cluster's workers advertise GPUs, else no resource request."""
    client.wait_for_workers(1)
    workers = client.scheduler_info(n_workers=-1)["workers"].values()
    return {"GPU": 1} if any(w.get("resources", {}).get("GPU", 0) >= 1 for w in workers) else None


def _run_local(todo, threads, store, bar):
    for key, trial, spec_json in todo:
        store(key, trial, _execute_in_process(trial.fn, spec_json, threads))
        bar.update(1)


def _run_dask(todo, threads, store, bar):
    from dask.distributed import as_completed
    client = _dask_client()
    resources = _gpu_resources(client)
    futures = {client.submit(execute_trial, trial.fn, spec_json, threads, module_code_hash(trial.fn.partition(":")[0]),
                             key=f"{trial.stage}-{key}", resources=resources): (key, trial)
               for key, trial, spec_json in todo}
    try:
        for future in as_completed(futures):
            key, trial = futures[future]
            store(key, trial, future.result())  # a failed trial raises here, with its traceback
            bar.update(1)
    finally:
        client.cancel([f for f in futures if not f.done()])


_RUNNERS = {"local": _run_local, "dask": _run_dask}


def run_trials(trials: Sequence[Trial], cache: ArtifactCache, *, desc: str = "trials") -> list[dict]:
    """The results of ``trials``, in their order: cached ones loaded, the others computed by
    the executor ``POISONREPRO_EXECUTOR`` names and stored by this (the driver's) process."""
    name = executor_name()  # an unknown executor fails before any compute
    threads = trial_threads()
    for t in trials:
        if not isinstance(t, Trial):
            raise TypeError(f"run_trials takes Trial objects, not {type(t).__name__}")
        resolve(t.fn)  # a typo in fn fails here, not on a worker
    keys = [trial_key(t, threads) for t in trials]
    results: dict[str, dict] = {}
    todo = []
    for key, trial in dict(zip(keys, trials)).items():  # one computation per distinct trial
        if cache.enabled and cache.path(trial.stage, key, ".pt").exists():
            results[key] = cache.tensors(trial.stage, key, _missing)
        else:
            todo.append((key, trial, _canonical(trial)))

    def store(key, trial, result):
        results[key] = cache.tensors(trial.stage, key, lambda: result)

    if todo:
        bar = progress(total=len(todo), desc=f"{desc} ({name})")
        try:
            _RUNNERS[name](todo, threads, store, bar)
        finally:
            bar.close()
    return [results[k] for k in keys]


def _missing():
    raise FileNotFoundError("a cached trial vanished between lookup and load; rerun")
