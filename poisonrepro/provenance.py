"""Are a notebook's committed outputs current? The code that computed them against the code now.

A notebook's colophon names the commit its run used. Its outputs are **current** when the code
that computes them is the same now as then: the notebook's cell sources, every ``poisonrepro``
module the notebook imports with everything those import in turn (``cache.module_closure``,
compared as syntax trees without docstrings, as the artifact cache's keys are), and its paper's
reference data. Otherwise they are **stale since** the first later commit that changed that code
(found by recomputing the fingerprint at each commit that touched those files). The book's
dashboard shows this for every notebook, and ``make publish`` refuses a run whose code differs
from HEAD's.
"""
from __future__ import annotations

import ast
import hashlib
import io
import subprocess
import tarfile
import tempfile
from dataclasses import dataclass
from pathlib import Path

import nbformat

from . import paths
from .cache import _module_file, _normalised_source, module_closure

PACKAGE = "poisonrepro"


def _git(*args: str, check: bool = True) -> str:
    out = subprocess.run(["git", *args], cwd=paths.repo_root(), capture_output=True, text=True, timeout=60)
    if check and out.returncode != 0:
        raise RuntimeError(f"git {' '.join(args)}: {out.stderr.strip()}")
    return out.stdout


def _cell_sources(nb_text: str) -> list[str]:
    nb = nbformat.reads(nb_text, as_version=4)
    return [c.source for c in nb.cells if c.cell_type == "code"]


def imported_modules(nb_text: str) -> set[str]:
    """The ``poisonrepro`` modules a notebook's code cells import (IPython magics skipped)."""
    found = set()
    for source in _cell_sources(nb_text):
        code = "\n".join(line for line in source.splitlines() if not line.lstrip().startswith(("%", "!")))
        try:
            tree = ast.parse(code)
        except SyntaxError:
            continue
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                found.update(a.name for a in node.names if a.name.split(".")[0] == PACKAGE)
            elif isinstance(node, ast.ImportFrom) and (node.module or "").split(".")[0] == PACKAGE:
                found.update(f"{node.module}.{a.name}" for a in node.names)
                found.add(node.module)
    return found


_SOURCES: dict[bytes, str] = {}


def _source_of(path: Path) -> str:
    """``_normalised_source`` memoised by the file's bytes: most modules are the same at most commits."""
    data = path.read_bytes()
    key = hashlib.sha1(data).digest()
    if key not in _SOURCES:
        _SOURCES[key] = _normalised_source(path)
    return _SOURCES[key]


def fingerprint(stem: str, root: Path, nb_text: str) -> str:
    """sha256 (16 hex digits) of what computes notebook ``stem``'s outputs, with the package
    below ``root`` (the folder holding ``poisonrepro/``) and the notebook's text ``nb_text``."""
    h = hashlib.sha256()
    for source in _cell_sources(nb_text):
        h.update(source.encode() + b"\0")
    modules = set()
    for name in sorted(imported_modules(nb_text)):
        if _module_file(name, root) is not None:
            modules.update(module_closure(name, root))
    for name in sorted(modules):
        h.update(name.encode() + b"\0" + _source_of(_module_file(name, root)).encode() + b"\0")
    ref = root / PACKAGE / "reference" / f"{stem.split('_', 1)[1]}.csv"
    if ref.is_file():
        h.update(ref.read_bytes())
    return h.hexdigest()[:16]


def _fingerprint_at(commit: str, stem: str, tmp: Path) -> str | None:
    """The fingerprint at ``commit`` (the package and the notebook as committed then), or None
    where the notebook did not exist."""
    nb_path = f"notebooks/{stem}.ipynb"
    nb_text = _git("show", f"{commit}:{nb_path}", check=False)
    if not nb_text:
        return None
    root = tmp / commit
    if not root.exists():
        archive = subprocess.run(["git", "archive", commit, PACKAGE], cwd=paths.repo_root(),
                                 capture_output=True, timeout=120, check=True).stdout
        with tarfile.open(fileobj=io.BytesIO(archive)) as tar:
            tar.extractall(root, filter="data")
    return fingerprint(stem, root, nb_text)


@dataclass
class Freshness:
    notebook: str
    run_commit: str | None   # the colophon's commit (None: no colophon)
    current: bool
    stale_since: str | None  # the first commit after the run that changed its code
    reason: str

    @property
    def label(self) -> str:
        if self.current:
            return f"current (run on {self.run_commit})"
        return f"stale since {self.stale_since}" if self.stale_since else f"stale ({self.reason})"


def run_commit(nb_path: Path) -> str | None:
    from .reproduce import colophon_field
    return colophon_field(nb_path, "git commit:")


def freshness(stem: str, nb_path: Path | None = None, workdir: Path | None = None) -> Freshness:
    """Whether the outputs of ``nb_path`` (default: the committed ``notebooks/<stem>.ipynb``)
    were computed by the code now in the working tree. ``workdir``: where to unpack the package
    as it was at earlier commits (share one across notebooks; default a temporary folder)."""
    if workdir is None:
        with tempfile.TemporaryDirectory() as tmp:
            return freshness(stem, nb_path, Path(tmp))
    nb_path = nb_path or paths.repo_root() / "notebooks" / f"{stem}.ipynb"
    commit = run_commit(nb_path)
    if commit is None:
        return Freshness(stem, None, False, None, "no colophon: the committed notebook has no complete run")
    if commit.endswith("+local changes"):
        return Freshness(stem, commit, False, None, f"run on uncommitted code ({commit})")
    if not _git("cat-file", "-t", commit, check=False).strip():
        return Freshness(stem, commit, False, None, f"commit {commit} is not in this clone's history")
    head_fp = fingerprint(stem, paths.repo_root(), (paths.repo_root() / "notebooks" / f"{stem}.ipynb").read_text())
    then = _fingerprint_at(commit, stem, workdir)
    if then == head_fp:
        return Freshness(stem, commit, True, None, "the code is the same as at the run")
    # the commits after the run that touched the package or the notebook, oldest first
    candidates = _git("log", "--reverse", "--format=%h", f"{commit}..HEAD", "--", PACKAGE,
                      f"notebooks/{stem}.ipynb").split()
    for c in candidates:
        if _fingerprint_at(c, stem, workdir) != then:
            return Freshness(stem, commit, False, c, f"the code changed in {c}")
    return Freshness(stem, commit, False, None, "the working tree's code differs from the run's (not committed)")
