"""The repository cites its sources by public titles and links, never by files outside it.

The source documents (a blog post, two lecture decks, an abstract) and the notes on each paper's
settings were kept beside the repository (``../shared/``), where a person who clones it cannot open
them. The package, the notebooks' cells (their sources; outputs catch up when a notebook is rerun),
the README, the Makefile and the docs must cite the public title or link instead: the paper and its
section or table, the official repository, the lecture deck by title and author, and the artifact
catalogue (``poisonrepro/catalog.py``) for the artifact ids.
"""
from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]

#: citations of files a cloner cannot open: the artifact list, the paper notes, the seed documents
UNREACHABLE = re.compile(r"seed-artifacts|paper-notes|shared/seeds|\bseed 00\d\b", re.IGNORECASE)
FOLDERS = ("poisonrepro/", "notebooks/", "docs/")
FILES = ("README.md", "Makefile")


def unreachable_citations(text: str) -> list[tuple[int, str]]:
    """(line number from 1, line) of every line of ``text`` that cites a file outside the repository."""
    return [(n, line.strip()) for n, line in enumerate(text.splitlines(), 1) if UNREACHABLE.search(line)]


def cited_texts(path: Path) -> list[tuple[str, str]]:
    """(where, text) pairs to check in ``path``: a notebook's markdown and code cell sources, one
    pair per cell (never its outputs); any other text file whole; nothing for a binary file."""
    data = path.read_bytes()
    if b"\0" in data:
        return []
    if path.suffix == ".ipynb":
        cells = json.loads(data.decode("utf-8"))["cells"]
        return [(f"cell {i}", "".join(c["source"]) if isinstance(c["source"], list) else c["source"])
                for i, c in enumerate(cells) if c["cell_type"] in ("markdown", "code")]
    return [("", data.decode("utf-8", errors="replace"))]


def violations(path: Path, name: str) -> list[str]:
    """``name[ cell i]:line: text`` for every unreachable citation in ``path``."""
    return [f"{name}{' ' + where if where else ''}:{n}: {line}"
            for where, text in cited_texts(path) for n, line in unreachable_citations(text)]


def checked_files() -> list[str]:
    """The tracked files (``git ls-files``) under the checked folders, and the checked top-level files."""
    try:
        listed = subprocess.run(["git", "ls-files", "-z"], cwd=REPO, capture_output=True, check=True).stdout
        names = [n for n in listed.decode("utf-8").split("\0") if n]
    except (OSError, subprocess.CalledProcessError):  # no git: every file below the folders
        names = [p.relative_to(REPO).as_posix() for p in REPO.rglob("*") if p.is_file()]
    return sorted(n for n in names
                  if (n.startswith(FOLDERS) or n in FILES) and "__pycache__" not in n and (REPO / n).is_file())


def test_the_checker_finds_citations_of_files_outside_the_repository(tmp_path):
    text = ("as the lecture deck (Seed 002, slide 'pGAN') shows\n"
            "random seed 0 and seed 0021 are not citations\n"
            "settings from paper-notes.md; ids of shared/seed-artifacts.md\n"
            "read ../shared/seeds/001.txt\n"
            "the offline mirror ../shared/data is fine\n")
    assert [n for n, _ in unreachable_citations(text)] == [1, 3, 4]
    assert unreachable_citations("the lecture deck \"Data Poisoning: Attacks and Defenses\" (Xingjun Ma)") == []

    nb = {"cells": [{"cell_type": "markdown", "source": ["# Title\n", "blog post (seed 001)\n"]},
                    {"cell_type": "code", "source": "x = 1  # see paper-notes.md", "outputs": []},
                    {"cell_type": "code", "source": "print(t)",
                     "outputs": [{"output_type": "stream", "text": ["lecture seed 002 (Label Poisoning)\n"]}]},
                    {"cell_type": "raw", "source": "seed 003"}],
          "metadata": {}, "nbformat": 4, "nbformat_minor": 5}
    path = tmp_path / "x.ipynb"
    path.write_text(json.dumps(nb))
    assert violations(path, "x.ipynb") == ["x.ipynb cell 0:2: blog post (seed 001)",
                                           "x.ipynb cell 1:1: x = 1  # see paper-notes.md"]
    plain = tmp_path / "x.py"
    plain.write_text('"""Doc."""\n\nSOURCE = "Sec. 5.2 (seed 004)"\n')
    assert violations(plain, "x.py") == ['x.py:3: SOURCE = "Sec. 5.2 (seed 004)"']


def test_the_repository_cites_no_file_a_cloner_cannot_open():
    files = checked_files()
    assert "README.md" in files and "poisonrepro/catalog.py" in files and any(f.endswith(".ipynb") for f in files)
    found = [v for name in files for v in violations(REPO / name, name)]
    assert not found, ("cite the public title or link (paper and section, official repository, lecture deck by "
                       "title and author, the artifact catalogue poisonrepro/catalog.py) instead of:\n"
                       + "\n".join(found))
