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
import time
from pathlib import Path

import nbformat

from . import paths
from .config import PROFILE_NAMES, ConfigError, check_profile
from .notebook import PEAK_MEMORY_LABEL
from .summary import write_summary

NOTEBOOK_DIR = paths.repo_root() / "notebooks"
README = paths.repo_root() / "README.md"


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


# ---------------------------------------------------------------- progress across notebooks
def measured_seconds(profile: str, readme: Path = README) -> dict[str, float]:
    """The wall time the README measured for each notebook at ``profile``: ``cpu`` from the
    Notebooks table's `cpu` wall time column (its first number, the cold run), ``smoke`` from
    the Profiles table's ``NN: X s`` list. Empty where the README gives none (``paper``)."""
    text = readme.read_text() if readme.is_file() else ""
    times = {}
    if profile == "cpu":
        for stem in re.findall(r"^\| `(\d\d_\w+)` \|", text, flags=re.M):
            row = next(line for line in text.splitlines() if line.startswith(f"| `{stem}` |"))
            m = re.search(r"\| ([\d,]+) s\b[^|]*\|\s*$", row)
            if m:
                times[stem] = float(m.group(1).replace(",", ""))
    elif profile == "smoke":
        row = next((line for line in text.splitlines() if line.startswith("| `smoke` |")), "")
        stems = {s[:2]: s for s in re.findall(r"^\| `(\d\d_\w+)` \|", text, flags=re.M)}
        for num, sec in re.findall(r"\b(\d\d): (?:\d+-)?(\d+) s\b", row):
            if num in stems:
                times.setdefault(stems[num], float(sec))
    return times


def hms(seconds: float) -> str:
    seconds = int(round(seconds))
    return f"{seconds // 3600}:{seconds // 60 % 60:02d}:{seconds % 60:02d}"


def progress_line(i: int, stems: list[str], profile: str, elapsed: float, measured: dict[str, float]) -> str:
    """``[i/N] stem (profile): 0:12:03 elapsed, about 0:40:00 left`` before notebook ``i``
    (1-based): the time left is the README's measured times of notebooks i..N (those it has no
    time for are named, not guessed)."""
    todo = stems[i - 1:]
    known = [measured[s] for s in todo if s in measured]
    unknown = [s for s in todo if s not in measured]
    head = f"[{i}/{len(stems)}] {stems[i - 1]} ({profile}): {hms(elapsed)} elapsed"
    if not known:
        return head + f", no measured {profile} times in the README to estimate the rest from"
    left = f", about {hms(sum(known))} left (the README's measured {profile} times"
    return head + left + (f"; none for {', '.join(unknown)})" if unknown else ")")


# ---------------------------------------------------------------- a reviewer's run
def run(profile: str, notebooks: list[str]) -> int:
    import papermill as pm
    out_dir = paths.build_dir(profile)
    out_dir.mkdir(parents=True, exist_ok=True)
    os.environ["POISONREPRO_PROFILE"] = profile
    os.environ["POISONREPRO_BATCH"] = "1"
    measured = measured_seconds(profile)
    failed, resources = [], []
    t_start = time.time()
    for i, stem in enumerate(notebooks, 1):
        t0 = time.time()
        print(progress_line(i, notebooks, profile, t0 - t_start, measured), flush=True)
        out = out_dir / f"{stem}.ipynb"
        try:
            pm.execute_notebook(str(NOTEBOOK_DIR / f"{stem}.ipynb"), str(out), kernel_name="python3",
                                cwd=str(NOTEBOOK_DIR), progress_bar=sys.stderr.isatty(), config=KERNEL_CONFIG)
        except pm.PapermillExecutionError as exc:
            print(f"!! {stem} failed: {exc.ename}: {exc.evalue}", file=sys.stderr)
            failed.append(stem)
            continue
        clean_metadata(out)
        resources.append((stem, time.time() - t0, peak_memory(out)))
        print(f"   done in {resources[-1][1]:.0f} s, peak memory {resources[-1][2]} "
              f"-> {out.relative_to(paths.repo_root())}", flush=True)
    if resources:
        print(f"\n{'notebook':<28}{'wall time':>10}  peak memory (resident)")
        for stem, seconds, peak in resources:
            print(f"{stem:<28}{seconds:>8.0f} s  {peak}")
        print(f"{'all':<28}{time.time() - t_start:>8.0f} s")
    summary, report = write_summary(profile, committed=paths.published_dir() / "summary.csv")
    print(f"report: {_shown(report)} (the paper, the committed cpu run and this run side by side)")
    return 1 if failed else 0


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
        print(f"published {stem} -> notebooks/{stem}.ipynb, {_shown(target)}/")
    _, report = write_summary(paths.PUBLISHED_PROFILE, root=paths.published_dir())
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
