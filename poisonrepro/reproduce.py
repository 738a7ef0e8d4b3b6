"""``python -m poisonrepro.reproduce``: run notebooks with papermill, then write the report.

A reviewer's run (``make reproduce``) writes everything it makes under ``build/<profile>/``:
each notebook runs from ``notebooks/`` into ``build/<profile>/<stem>.ipynb`` with the profile
passed through ``POISONREPRO_PROFILE`` (so no parameters cell is injected and the notebook stays
runnable as committed), its figures, tables and claims go to ``build/<profile>/<stem>/``, and
``summary.csv`` and ``REPORT.md`` beside them. The report puts the paper, the committed ``cpu``
run (``figures/cpu/summary.csv``) and this run side by side, and flags every claim whose verdict
differs from the committed run's. Nothing committed is overwritten: ``git status`` stays clean.

Before each notebook a progress line gives notebook i of N, the elapsed time and an estimate of
the time left from the wall times the README measured for that profile. Each notebook's wall time
and peak resident memory (read back from its colophon: the kernel is a process of its own) are
printed as it finishes and in a table at the end.

``--publish`` (``make publish``, for the maintainers) copies a finished ``cpu`` run from
``build/cpu/`` to the committed ``notebooks/`` and ``figures/cpu/`` and rewrites
``figures/cpu/summary.csv`` and ``REPORT.md``. It refuses, before copying anything, a notebook
that did not run to its colophon, ran at another profile, or ran on uncommitted code.
"""
from __future__ import annotations

import argparse
import os
import re
import shutil
import sys
import threading
import time
from pathlib import Path

import nbformat
import pandas as pd

from . import paths
from .cache import atomic_write
from .config import PROFILE_NAMES, ConfigError, check_profile
from .notebook import DATA_LABEL, PEAK_MEMORY_LABEL
from .progress import LOG_ENV, newest_line
from .summary import write_summary

NOTEBOOK_DIR = paths.repo_root() / "notebooks"


def _kernel_config():
    """CurveZMQ encryption between papermill and the kernel where the kernel manager can provision
    keys (jupyter_client >= 8.10, ``transport_encryption``): otherwise ipykernel >= 7.3 warns on
    every start that the kernel "is running over TCP without encryption" (harmless here: both ends
    are on this machine, on loopback)."""
    from traitlets.config import Config
    from jupyter_client.manager import KernelManager
    if "transport_encryption" not in KernelManager.class_trait_names():
        return Config()
    return Config({"KernelManager": {"transport_encryption": "auto"}})


KERNEL_CONFIG = _kernel_config()


def all_notebooks() -> list[str]:
    return sorted(p.stem for p in NOTEBOOK_DIR.glob("[0-9][0-9]_*.ipynb"))


def check_notebooks(names: list[str]) -> list[str]:
    known = all_notebooks()
    unknown = [n for n in names if n not in known]
    if unknown:
        raise ConfigError(f"unknown notebook(s) {', '.join(unknown)}; available: {', '.join(known)}")
    return names


def clean_metadata(path: Path) -> None:
    """Drop what would leak this machine into a committed notebook (absolute paths)."""
    nb = nbformat.read(path, as_version=4)
    pm = nb.metadata.get("papermill", {})
    for key in ("input_path", "output_path", "parameters", "environment_variables"):
        pm.pop(key, None)
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nbformat.write(nb, path)


def colophon_field(path: Path, label: str) -> str | None:
    """The text after ``label`` on the colophon line that starts with it (the last code cell
    that prints one), or None where the notebook has none (it did not run to its end)."""
    nb = nbformat.read(path, as_version=4)
    for cell in reversed(nb.cells):
        for out in cell.get("outputs", []) if cell.cell_type == "code" else []:
            for line in str(out.get("text", "")).splitlines():
                if line.startswith(label):
                    return line[len(label):].strip()
    return None


def peak_memory(path: Path) -> str:
    """The peak resident memory an executed notebook's colophon reports (``"1.23 GiB"``), or
    ``"?"`` where it reports none."""
    field = colophon_field(path, PEAK_MEMORY_LABEL)
    return " ".join(field.split()[:2]) if field else "?"


# ---------------------------------------------------------------- the runs' record: runs.csv
#: one row per notebook of a profile's runs (``build/<profile>/runs.csv``; the published cpu run's in
#: ``figures/cpu/runs.csv``, written by ``make publish``): how it ended, how long it took and on what.
RUN_COLUMNS = ["notebook", "profile", "status", "wall_s", "peak_memory", "commit", "device", "processor", "data",
               "finished", "error"]
RUNS_FILE = "runs.csv"


def read_runs(path: Path) -> pd.DataFrame:
    if not Path(path).is_file():
        return pd.DataFrame(columns=RUN_COLUMNS)
    return pd.read_csv(path, dtype=str, keep_default_na=False).reindex(columns=RUN_COLUMNS, fill_value="")


def record_run(path: Path, row: dict) -> pd.DataFrame:
    """Put ``row`` in the runs file ``path`` in place of that notebook's earlier row."""
    runs = read_runs(path)
    runs = runs[runs.notebook != row["notebook"]]
    runs = pd.concat([runs, pd.DataFrame([{c: row.get(c, "") for c in RUN_COLUMNS}])], ignore_index=True)
    runs = runs.sort_values("notebook").reset_index(drop=True)
    atomic_write(Path(path), lambda tmp: tmp.write_text(runs.to_csv(index=False)))
    return runs


def run_row(stem: str, nb_path: Path, profile: str, status: str, wall_s: float | None = None,
            error: str = "", elapsed_s: float | None = None) -> dict:
    """A runs-file row for the executed notebook ``nb_path``, from its colophon where it has one;
    ``wall_s`` None: the colophon's clock, else ``elapsed_s`` (a notebook without a colophon)."""
    field = (lambda label: colophon_field(nb_path, label) or "") if Path(nb_path).is_file() else (lambda label: "")
    if wall_s is None:  # the colophon's own clock: "1449 s (artifact cache: ...)"
        m = re.match(r"([\d.]+) s", field("wall time:"))
        wall_s = float(m.group(1)) if m else elapsed_s
    return {"notebook": stem, "profile": profile, "status": status,
            "wall_s": "" if wall_s is None else f"{wall_s:.0f}", "peak_memory": peak_memory(nb_path) if field(
                PEAK_MEMORY_LABEL) else "", "commit": field("git commit:"), "device": field("device:"),
            "processor": field("processor:"), "data": field(DATA_LABEL),
            "finished": time.strftime("%Y-%m-%d %H:%M:%S"), "error": error}


def measured_seconds(profile: str) -> dict[str, float]:
    """Each notebook's wall time at ``profile`` from the runs that finished: this checkout's own
    runs (``runs.csv`` beside its summary, ``build/<profile>/`` by default) first, then, for ``cpu``, the published run's
    (``figures/cpu/runs.csv``). Empty where there are none (``paper``, a first ``smoke`` run)."""
    times = {}
    sources = [paths.figures_dir(profile) / RUNS_FILE]
    if profile == paths.PUBLISHED_PROFILE:
        sources.append(paths.published_dir() / RUNS_FILE)
    for source in sources:
        runs = read_runs(source)
        for r in runs[(runs.status == "done") & (runs.wall_s != "")].itertuples():
            times.setdefault(r.notebook, float(r.wall_s))
    return times


def hms(seconds: float) -> str:
    seconds = int(round(seconds))
    return f"{seconds // 3600}:{seconds // 60 % 60:02d}:{seconds % 60:02d}"


def progress_line(i: int, stems: list[str], profile: str, elapsed: float, measured: dict[str, float]) -> str:
    """``[i/N] stem (profile): 0:12:03 elapsed, about 0:40:00 left`` before notebook ``i``
    (1-based): the time left is the measured times of notebooks i..N (``measured_seconds``; those
    without one are named, not guessed)."""
    todo = stems[i - 1:]
    known = [measured[s] for s in todo if s in measured]
    unknown = [s for s in todo if s not in measured]
    head = f"[{i}/{len(stems)}] {stems[i - 1]} ({profile}): {hms(elapsed)} elapsed"
    if not known:
        return head + f", no measured {profile} times yet to estimate the rest from"
    left = f", about {hms(sum(known))} left (the measured {profile} times in runs.csv"
    return head + left + (f"; none for {', '.join(unknown)})" if unknown else ")")


# ---------------------------------------------------------------- a reviewer's run
class ProgressTail(threading.Thread):
    """Prints the newest line of a notebook's progress log (``poisonrepro.progress``) while it runs,
    every ``interval`` seconds where it changed: a long cell is not silent in a batch run."""

    def __init__(self, log: Path, interval: float = 30.0, out=None):
        super().__init__(daemon=True)
        self.log, self.interval, self.out = Path(log), interval, out or sys.stdout
        self.stop = threading.Event()
        self.shown = None

    def poll(self) -> None:
        try:
            line = newest_line(self.log.read_text(encoding="utf-8", errors="replace")) if self.log.is_file() else None
        except OSError:
            return
        if line and line != self.shown:
            print(f"   ... {line}", file=self.out, flush=True)
            self.shown = line

    def run(self) -> None:
        while not self.stop.wait(self.interval):
            self.poll()


def run(profile: str, notebooks: list[str], *, tail_interval: float = 30.0) -> int:
    import papermill as pm
    out_dir = paths.build_dir(profile)
    out_dir.mkdir(parents=True, exist_ok=True)
    figures = paths.figures_dir(profile)
    runs_file = figures / RUNS_FILE
    os.environ["POISONREPRO_PROFILE"] = profile
    os.environ["POISONREPRO_BATCH"] = "1"
    measured = measured_seconds(profile)
    failed, resources = [], []
    t_start = time.time()
    for i, stem in enumerate(notebooks, 1):
        t0 = time.time()
        print(progress_line(i, notebooks, profile, t0 - t_start, measured), flush=True)
        out = out_dir / f"{stem}.ipynb"
        # an earlier run's outputs of this notebook never stand in for this run's
        shutil.rmtree(paths.figures_dir(profile, stem), ignore_errors=True)
        out.unlink(missing_ok=True)
        log = out_dir / f"{stem}.progress.log"
        log.unlink(missing_ok=True)
        os.environ[LOG_ENV] = str(log)
        tail = ProgressTail(log, tail_interval)
        tail.start()
        try:
            pm.execute_notebook(str(NOTEBOOK_DIR / f"{stem}.ipynb"), str(out), kernel_name="python3",
                                cwd=str(NOTEBOOK_DIR), progress_bar=sys.stderr.isatty(), config=KERNEL_CONFIG)
        except Exception as exc:  # a cell's error (PapermillExecutionError), a dead kernel, a full disk
            error = f"{exc.ename}: {exc.evalue}" if isinstance(exc, pm.PapermillExecutionError) \
                else f"{type(exc).__name__}: {exc}"
            print(f"!! {stem} failed: {error}", file=sys.stderr)
            failed.append(stem)
            record_run(runs_file, run_row(stem, out, profile, "failed", time.time() - t0, error.splitlines()[0][:300]))
            continue
        finally:
            tail.stop.set()
            tail.join()
            tail.poll()
            os.environ.pop(LOG_ENV, None)
        clean_metadata(out)
        # the colophon's clock, as the notebook reports it (papermill's elapsed time where it has none)
        record_run(runs_file, run_row(stem, out, profile, "done", elapsed_s=time.time() - t0))
        resources.append((stem, time.time() - t0, peak_memory(out)))
        print(f"   done in {resources[-1][1]:.0f} s, peak memory {resources[-1][2]} "
              f"-> {_shown(out)}", flush=True)
    if resources or failed:
        print(f"\n{'notebook':<28}{'wall time':>10}  peak memory (resident)")
        for stem, seconds, peak in resources:
            print(f"{stem:<28}{seconds:>8.0f} s  {peak}")
        for stem in failed:
            print(f"{stem:<28}{'FAILED':>10}  (no claims of it in the report)")
        print(f"{'all':<28}{time.time() - t_start:>8.0f} s")
    summary, report = write_summary(profile, committed=paths.published_dir() / "summary.csv",
                                    runs=read_runs(runs_file), committed_runs=committed_runs())
    print(f"report: {_shown(report)} (the paper, the committed cpu run and this run side by side)")
    if failed:
        print(f"FAILED: {', '.join(failed)} (marked failed in {_shown(runs_file)} and the report)", file=sys.stderr)
    return 1 if failed else 0


def committed_runs() -> pd.DataFrame:
    """The published cpu run's records (``figures/cpu/runs.csv``)."""
    return read_runs(paths.published_dir() / RUNS_FILE)


def _shown(path: Path) -> str:
    try:
        return str(path.relative_to(paths.repo_root()))
    except ValueError:
        return str(path)


# ---------------------------------------------------------------- the maintainers' publish step
def check_publishable(stems: list[str]) -> list[str]:
    """Why the ``cpu`` run in ``build/cpu/`` cannot be published (empty: it can): each notebook
    must have run to its colophon, at ``cpu``, on committed code that computes what the working
    tree's code computes (``provenance``: a later commit of documentation only is fine), with its
    figures beside it."""
    import tempfile

    from .provenance import freshness
    problems = []
    build = paths.build_dir(paths.PUBLISHED_PROFILE)
    with tempfile.TemporaryDirectory() as workdir:
        for stem in stems:
            nb = build / f"{stem}.ipynb"
            if not nb.is_file():
                problems.append(f"{stem}: no {_shown(nb)} (run `make reproduce PROFILE=cpu NOTEBOOKS={stem}` first)")
                continue
            profile = colophon_field(nb, "profile:")
            if profile is None:
                problems.append(f"{stem}: {_shown(nb)} has no colophon (the run did not finish)")
                continue
            if profile != paths.PUBLISHED_PROFILE:
                problems.append(f"{stem}: ran at profile {profile}, not {paths.PUBLISHED_PROFILE}")
            fresh = freshness(stem, nb, Path(workdir))
            if not fresh.current:
                problems.append(f"{stem}: its run is not of the code now here ({fresh.reason}); "
                                f"commit, then rerun (committed outputs come from the code as committed)")
            if not paths.figures_dir(paths.PUBLISHED_PROFILE, stem).is_dir():
                problems.append(f"{stem}: no {_shown(paths.figures_dir(paths.PUBLISHED_PROFILE, stem))}")
    return problems


def _published_row(stem: str) -> dict:
    """The published notebook's row: the build run's record, its time included (the colophon's
    clock where the run was not recorded)."""
    runs = read_runs(paths.figures_dir(paths.PUBLISHED_PROFILE) / RUNS_FILE)
    mine = runs[(runs.notebook == stem) & (runs.status == "done")]
    if len(mine):
        return mine.iloc[-1].to_dict()
    return run_row(stem, NOTEBOOK_DIR / f"{stem}.ipynb", paths.PUBLISHED_PROFILE, "done")


def publish(stems: list[str]) -> int:
    problems = check_publishable(stems)
    if problems:
        print("error: not published, nothing copied:\n  " + "\n  ".join(problems), file=sys.stderr)
        return 2
    for stem in stems:
        shutil.copyfile(paths.build_dir(paths.PUBLISHED_PROFILE) / f"{stem}.ipynb", NOTEBOOK_DIR / f"{stem}.ipynb")
        target = paths.published_dir(stem)
        staging = target.with_name(f".{stem}.publishing")
        shutil.rmtree(staging, ignore_errors=True)
        shutil.copytree(paths.figures_dir(paths.PUBLISHED_PROFILE, stem), staging)
        shutil.rmtree(target, ignore_errors=True)  # swap in the new folder whole: no stale artifact stays
        staging.rename(target)
        record_run(paths.published_dir() / RUNS_FILE, _published_row(stem))
        print(f"published {stem} -> notebooks/{stem}.ipynb, {_shown(target)}/")
    _, report = write_summary(paths.PUBLISHED_PROFILE, root=paths.published_dir(), runs=committed_runs())
    print(f"report: {_shown(report)}")
    return 0


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--profile", default="cpu", help=f"one of {', '.join(PROFILE_NAMES)}")
    ap.add_argument("--notebooks", default="", help="space-separated notebook stems (default: all)")
    ap.add_argument("--publish", action="store_true",
                    help="copy the cpu run in build/cpu/ to the committed notebooks/ and figures/cpu/ (maintainers)")
    args = ap.parse_args(argv)
    try:  # bad input fails here, before any notebook starts
        profile = check_profile(args.profile)
        names = check_notebooks(args.notebooks.split() or all_notebooks())
        if args.publish and profile != paths.PUBLISHED_PROFILE:
            raise ConfigError(f"only a {paths.PUBLISHED_PROFILE} run is published, not {profile}")
    except ConfigError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return publish(names) if args.publish else run(profile, names)


if __name__ == "__main__":
    sys.exit(main())
