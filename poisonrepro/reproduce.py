"""``python -m poisonrepro.reproduce``: run notebooks with papermill, then write the report.

Each notebook runs from ``notebooks/`` into ``build/<profile>/<stem>.ipynb`` with the
profile passed through ``POISONREPRO_PROFILE`` (so no parameters cell is injected and
the notebook stays runnable as committed). With ``--update-notebooks`` (the Makefile
passes it for the ``cpu`` profile) the executed notebook replaces the committed one, so
readers see the outputs of a real run. Each notebook's wall time and peak resident memory
(read back from its colophon: the kernel is a process of its own) are printed as it finishes
and in a table at the end. Afterwards ``figures/<profile>/summary.csv`` and ``REPORT.md`` are
written.
"""
from __future__ import annotations

import argparse
import os
import shutil
import sys
import time
from pathlib import Path

import nbformat

from . import paths
from .config import PROFILE_NAMES, ConfigError, check_profile
from .notebook import PEAK_MEMORY_LABEL
from .results import write_summary

NOTEBOOK_DIR = paths.repo_root() / "notebooks"


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


def peak_memory(path: Path) -> str:
    """The peak resident memory an executed notebook's colophon reports (``"1.23 GiB"``), or
    ``"?"`` where it reports none."""
    nb = nbformat.read(path, as_version=4)
    for cell in reversed(nb.cells):
        for out in cell.get("outputs", []) if cell.cell_type == "code" else []:
            for line in str(out.get("text", "")).splitlines():
                if line.startswith(PEAK_MEMORY_LABEL):
                    return " ".join(line[len(PEAK_MEMORY_LABEL):].split()[:2])
    return "?"


def run(profile: str, notebooks: list[str], update: bool = False) -> int:
    import papermill as pm
    out_dir = paths.repo_root() / "build" / profile
    out_dir.mkdir(parents=True, exist_ok=True)
    os.environ["POISONREPRO_PROFILE"] = profile
    os.environ["POISONREPRO_BATCH"] = "1"
    failed, resources = [], []
    for stem in notebooks:
        t0 = time.time()
        print(f"== {stem} ({profile})", flush=True)
        out = out_dir / f"{stem}.ipynb"
        try:
            pm.execute_notebook(str(NOTEBOOK_DIR / f"{stem}.ipynb"), str(out), kernel_name="python3",
                                cwd=str(NOTEBOOK_DIR), progress_bar=sys.stderr.isatty())
        except pm.PapermillExecutionError as exc:
            print(f"!! {stem} failed: {exc.ename}: {exc.evalue}", file=sys.stderr)
            failed.append(stem)
            continue
        clean_metadata(out)
        if update:
            shutil.copyfile(out, NOTEBOOK_DIR / f"{stem}.ipynb")
        resources.append((stem, time.time() - t0, peak_memory(out)))
        print(f"   done in {resources[-1][1]:.0f} s, peak memory {resources[-1][2]} "
              f"-> {out.relative_to(paths.repo_root())}", flush=True)
    if resources:
        print(f"\n{'notebook':<28}{'wall time':>10}  peak memory (resident)")
        for stem, seconds, peak in resources:
            print(f"{stem:<28}{seconds:>8.0f} s  {peak}")
    summary, report = write_summary(profile)
    print(f"report: {report.relative_to(paths.repo_root())}")
    return 1 if failed else 0


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--profile", default="cpu", help=f"one of {', '.join(PROFILE_NAMES)}")
    ap.add_argument("--notebooks", default="", help="space-separated notebook stems (default: all)")
    ap.add_argument("--update-notebooks", action="store_true", help="copy executed notebooks back to notebooks/")
    args = ap.parse_args(argv)
    try:  # bad input fails here, before any notebook starts
        profile = check_profile(args.profile)
        names = check_notebooks(args.notebooks.split() or all_notebooks())
    except ConfigError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return run(profile, names, update=args.update_notebooks)


if __name__ == "__main__":
    sys.exit(main())
