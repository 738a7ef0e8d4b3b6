"""Helpers every notebook uses: its setup cell (``setup``), and the colophon."""
from __future__ import annotations

import os
import platform
import resource
import subprocess
import sys
import time

import torch

from . import paths

_START = time.time()


def start(profile: str) -> float:
    """Notes the wall-clock start (``setup`` calls it; the overview, which has no config, too)."""
    global _START
    _START = time.time()
    return _START


def setup(paper: str, profile: str | None = None, seed: int = 0, dry_run: bool = False):
    """The setup cell of a paper's notebook: ``cfg, cache, res``.

    The config of ``paper`` (``poisonrepro.config.<paper>``) at ``profile`` with ``seed``,
    validated before any compute (``dry_run``: every loop once, how the tests run the ``paper``
    profile on a CPU); the artifact cache; the ``Results`` collector writing
    ``figures/<profile>/<notebook>/``, the notebook named by the catalog. Also starts the
    colophon's clock and sets the display options every notebook uses (figures as PNG; tables
    shown by ``results.readable_table``: columns in words, three significant digits, no NaN).
    """
    import pandas as pd

    from . import catalog
    from .cache import ArtifactCache
    from .config import dry_run as every_loop_once, load_config
    from .results import Results, register_readable_tables

    cfg = load_config(paper, profile, seed=seed)
    if dry_run:
        cfg = every_loop_once(cfg)
    start(cfg.profile)
    _inline_png()
    pd.set_option("display.precision", 3)
    pd.set_option("display.max_colwidth", 60)
    register_readable_tables()  # tables in words and plain numbers; the saved CSVs stay machine-readable
    return cfg, ArtifactCache(), Results(catalog.entry(paper).notebook, cfg.profile, paper)


def _on_255_scale(value):
    """A pixel budget as the papers write it (``8/255``, not ``0.0313725``); anything else as it is."""
    def one(v):
        if isinstance(v, float) and 0 < v < 1 and abs(v * 510 - round(v * 510)) < 1e-6:
            k = round(v * 255, 1)
            return f"{k:g}/255"
        return v
    if isinstance(value, tuple):
        shown = tuple(one(v) for v in value)
        return "(" + ", ".join(map(str, shown)) + ")" if shown != value else value
    return one(value)


def config_frame(cfg):
    """The config as the one-column table the setup cell shows; pixel budgets (fields named
    ``*eps*`` that are multiples of 0.5/255) as ``k/255``."""
    import pandas as pd

    from .config import as_dict
    values = {k: (_on_255_scale(v) if "eps" in k else v) for k, v in as_dict(cfg).items()}
    return pd.Series(values, name=f"{cfg.profile} profile").astype(str).to_frame()


def _inline_png() -> None:
    """Inline figures as PNG in a Jupyter kernel (``%config InlineBackend.figure_formats``); a
    no-op outside one."""
    ipython = sys.modules.get("IPython")
    shell = ipython.get_ipython() if ipython is not None else None
    if shell is not None and hasattr(shell, "kernel"):  # a Jupyter kernel (ZMQInteractiveShell)
        shell.run_line_magic("config", 'InlineBackend.figure_formats = ["png"]')


def git_commit() -> str:
    try:
        out = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=paths.repo_root(),
                             capture_output=True, text=True, timeout=10)
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no", "--", "poisonrepro", "pyproject.toml"], cwd=paths.repo_root(),
                               capture_output=True, text=True, timeout=10).stdout.strip()
        return (out.stdout.strip() or "unknown") + ("+local changes" if dirty else "")
    except (OSError, subprocess.SubprocessError):
        return "unknown"


def cpu_model() -> str:
    """The processor (``/proc/cpuinfo``'s model name, family and model, and whether it has AMX and
    AVX512-BF16; ``platform.processor()`` elsewhere) and torch's CPU capability (the widest vector
    ISA its kernels use): trained networks differ between them."""
    info = {}
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                key, _, value = line.partition(":")
                if not line.strip():
                    break  # the first processor is enough
                info.setdefault(key.strip(), value.strip())
    except OSError:
        pass
    name = info.get("model name") or platform.processor() or platform.machine()
    if "cpu family" in info:
        flags = set(info.get("flags", "").split())
        has = lambda flag: "yes" if flag in flags else "no"  # noqa: E731
        name += (f" (family {info['cpu family']}, model {info.get('model', '?')}; AMX {has('amx_bf16')}, "
                 f"AVX512-BF16 {has('avx512_bf16')})")
    return f"{name}, torch CPU capability {torch.backends.cpu.get_cpu_capability()}"


def device_name() -> str:
    """Where this run trained and crafted (``train.default_device``)."""
    from .train import default_device
    device = default_device()
    if device.type == "cuda":
        return f"cuda ({torch.cuda.get_device_name(device)})"
    return f"cpu ({os.cpu_count()} cores, {torch.get_num_threads()} torch threads)"


def peak_memory_gib() -> float:
    """Peak resident memory of this process so far, in GiB (``getrusage``'s ``ru_maxrss``:
    KiB on Linux, bytes on macOS)."""
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / (2 ** 30 if sys.platform == "darwin" else 2 ** 20)


#: the colophon's memory line; ``poisonrepro.reproduce`` reads it back from an executed notebook
PEAK_MEMORY_LABEL = "peak memory:"
#: the colophon's data line: each dataset the run loaded, with its fingerprint (``data.DATA_USED``)
DATA_LABEL = "data used:"


def data_used() -> str:
    from .data import DATA_USED
    if not DATA_USED:
        return "none loaded from files (generated or built into a library)"
    return "; ".join(f"{source} [{fp}]" for source, fp in sorted(DATA_USED.items()))


def _cache_summary() -> str:
    from .cache import EVENTS
    count = {kind: sum(1 for e in EVENTS if e[2] == kind) for kind in ("hit", "miss", "corrupt")}
    corrupt = f", {count['corrupt']} of them corrupt in the cache (moved aside)" if count["corrupt"] else ""
    return f"artifact cache: {count['hit']} reused, {count['miss']} computed in this run{corrupt}"


def colophon(profile: str) -> str:
    import numpy, sklearn, pandas  # noqa: E401
    from .precision import describe
    from .train import default_device
    lines = [f"git commit:  {git_commit()}", f"profile:     {profile}", f"device:      {device_name()}",
             f"processor:   {cpu_model()}",
             f"arithmetic:  {describe(default_device().type)}",
             f"python {platform.python_version()}, torch {torch.__version__}, numpy {numpy.__version__}, "
             f"scikit-learn {sklearn.__version__}, pandas {pandas.__version__}",
             f"{DATA_LABEL:<13}{data_used()}",
             f"wall time:   {time.time() - _START:.0f} s ({_cache_summary()})",
             f"{PEAK_MEMORY_LABEL:<13}{peak_memory_gib():.2f} GiB resident (the notebook's kernel process)"]
    return "\n".join(lines)
