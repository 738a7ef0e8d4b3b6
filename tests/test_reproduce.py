"""A reviewer's run (``make reproduce``) stays under build/, compares itself with the committed
run and shows its progress; ``make publish`` copies only a finished cpu run of the code now here;
``provenance`` tells current outputs from stale ones."""
import shutil
import subprocess
from pathlib import Path

import nbformat
import pandas as pd
import pytest

from poisonrepro import catalog, paths, provenance, reproduce
from poisonrepro.results import CLAIM_COLUMNS
from poisonrepro.summary import write_summary

REPO = Path(__file__).resolve().parents[1]


# ---------------------------------------------------------------- progress across notebooks
def test_the_published_run_records_a_measured_cpu_time_for_every_notebook_that_is_done():
    measured = reproduce.measured_seconds("cpu")
    done = [p.notebook for p in catalog.PAPERS if catalog.status(p.notebook) == "done"]
    assert set(done) <= set(measured), set(done) - set(measured)
    assert all(seconds >= 0 for seconds in measured.values())
    assert reproduce.measured_seconds("paper") == {}


def test_the_published_runs_record_equals_the_committed_notebooks_colophons():
    """``figures/cpu/runs.csv`` (written by ``make publish``) says what each committed notebook's
    colophon says: the time estimates cannot drift from the runs they come from."""
    runs = reproduce.read_runs(paths.published_dir() / reproduce.RUNS_FILE).set_index("notebook")
    for stem in reproduce.all_notebooks():
        nb = REPO / "notebooks" / f"{stem}.ipynb"
        row = reproduce.run_row(stem, nb, "cpu", "done")
        for col in ("wall_s", "commit", "processor", "peak_memory"):
            assert runs.loc[stem, col] == row[col], (stem, col)


def test_progress_line_counts_notebooks_and_estimates_the_rest_from_measured_times():
    stems = ["00_overview", "01_poison_frogs", "12_unlearnable_examples"]
    measured = {"00_overview": 4, "01_poison_frogs": 600}
    line = reproduce.progress_line(2, stems, "cpu", 65, measured)
    assert line.startswith("[2/3] 01_poison_frogs (cpu): 0:01:05 elapsed, about 0:10:00 left")
    assert "none for 12_unlearnable_examples" in line  # unknown times are named, not guessed
    assert "no measured paper times yet" in reproduce.progress_line(1, stems, "paper", 0, {})


# ---------------------------------------------------------------- the report compares itself
def _claims(verdicts, measured):
    rows = [dict(zip(CLAIM_COLUMNS, [f"X-1:rate:c{i}", "headline", "X-1", f"claim {i}", "", "rate", 0.5,
                                     "Paper, Tab. 1", m, 30, 0.1, 0.9, "> 0.2", "Wilson bound", 0.01, 0.02, v, "",
                                     "", None]))
            for i, (v, m) in enumerate(zip(verdicts, measured))]
    return pd.DataFrame(rows, columns=CLAIM_COLUMNS)


def test_report_puts_paper_committed_and_this_run_side_by_side_and_flags_changed_verdicts(tmp_path):
    committed, run = tmp_path / "committed", tmp_path / "run"
    for root, verdicts, measured in ((committed, ["holds", "fails"], [0.8, 0.1]),
                                     (run, ["holds", "holds", "inconclusive"], [0.81, 0.7, 0.3])):
        (root / "05_x").mkdir(parents=True)
        _claims(verdicts, measured).to_csv(root / "05_x" / "claims.csv", index=False)
    write_summary("cpu", root=committed)
    _, report = write_summary("cpu", root=run, committed=committed / "summary.csv")
    text = report.read_text()
    assert "| this run | committed `cpu` run | same as committed? | paper |" in text
    assert "2 of 3 claims have another verdict at the same setting or are new" in text
    assert "headline: 2 of 3 claims hold, 0 fail, 1 inconclusive, 0 untested" in text
    rows = {line.split(" | ")[0][2:]: line for line in text.splitlines() if line.startswith("| claim ")}
    assert "| 0.81 | 0.8 (holds) | yes |" in rows["claim 0"]
    assert "| 0.7 | 0.1 (fails) | **verdict differs** |" in rows["claim 1"]
    assert "not in the committed run | **verdict differs** |" in rows["claim 2"]
    # the run's own summary.csv keeps the results contract (no comparison columns leak into it)
    assert list(pd.read_csv(run / "summary.csv").columns) == ["notebook"] + CLAIM_COLUMNS


def test_a_reviewers_run_writes_only_under_build(monkeypatch):
    monkeypatch.delenv("POISONREPRO_FIGURES", raising=False)  # the default place: build/<profile>/
    for var in ("POISONREPRO_PROFILE", "POISONREPRO_BATCH"):  # run() sets them; restored afterwards
        monkeypatch.setenv(var, "")

    def status():
        return subprocess.run(["git", "status", "--porcelain", "--untracked-files=all"], cwd=REPO,
                              capture_output=True, text=True, check=True).stdout
    before = status()
    assert reproduce.main(["--profile", "smoke", "--notebooks", "00_overview"]) == 0
    assert status() == before  # nothing committed was overwritten, nothing untracked left outside build/
    build = paths.build_dir("smoke")
    assert (build / "00_overview.ipynb").is_file() and (build / "00_overview" / "L-TAX.csv").is_file()
    assert "Compared with the committed `cpu` run" in (build / "REPORT.md").read_text()


# ---------------------------------------------------------------- publish
@pytest.fixture
def sandbox(tmp_path, monkeypatch):
    """build/, notebooks/ and figures/cpu/ in a temporary folder."""
    build, notebooks, published = tmp_path / "build", tmp_path / "notebooks", tmp_path / "figures" / "cpu"
    notebooks.mkdir()
    for stem in ("05_biggio_svm", "06_back_gradient", "07_pgan"):  # the committed notebooks, before
        (notebooks / f"{stem}.ipynb").write_text("committed")
    monkeypatch.setattr(paths, "build_dir", lambda profile: build / profile)
    monkeypatch.setattr(paths, "published_dir", lambda notebook=None: published / notebook if notebook else published)
    monkeypatch.setenv("POISONREPRO_FIGURES", str(build))
    monkeypatch.setattr(reproduce, "NOTEBOOK_DIR", notebooks)
    return build / "cpu", notebooks, published


def _executed(path, colophon):
    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_code_cell("print(notebook.colophon(profile))")]
    if colophon:
        nb.cells[0].outputs = [nbformat.v4.new_output("stream", name="stdout", text=colophon)]
    nbformat.write(nb, path)


def test_publish_refuses_unfinished_or_stale_runs_before_copying_anything(sandbox, capsys):
    build, notebooks, published = sandbox
    (build / "05_biggio_svm").mkdir(parents=True)
    (build / "06_back_gradient").mkdir(parents=True)
    _executed(build / "05_biggio_svm.ipynb", None)  # killed before its colophon
    _executed(build / "06_back_gradient.ipynb", "git commit:  abc1234+local changes\nprofile:     cpu\n")
    assert reproduce.main(["--publish", "--notebooks", "05_biggio_svm 06_back_gradient 07_pgan"]) == 2
    err = capsys.readouterr().err
    assert "05_biggio_svm: " in err and "has no colophon" in err
    assert "06_back_gradient: its run is not of the code now here (run on uncommitted code" in err
    assert "07_pgan: no " in err
    assert {p.read_text() for p in notebooks.iterdir()} == {"committed"} and not published.exists()
    assert reproduce.main(["--publish", "--profile", "smoke"]) == 2  # only a cpu run is published


def test_publish_swaps_in_a_current_run_whole_and_rewrites_the_committed_report(sandbox, monkeypatch):
    build, notebooks, published = sandbox
    (build / "05_biggio_svm").mkdir(parents=True)
    _claims(["holds"], [0.9]).to_csv(build / "05_biggio_svm" / "claims.csv", index=False)
    _executed(build / "05_biggio_svm.ipynb", "git commit:  abc1234\nprofile:     cpu\n")
    (published / "05_biggio_svm").mkdir(parents=True)
    (published / "05_biggio_svm" / "OLD-1.png").write_bytes(b"an artifact the new run no longer makes")
    monkeypatch.setattr(provenance, "freshness", lambda stem, nb, workdir=None: provenance.Freshness(
        stem, "abc1234", True, None, "the code is the same as at the run"))
    assert reproduce.main(["--publish", "--notebooks", "05_biggio_svm"]) == 0
    assert (notebooks / "05_biggio_svm.ipynb").read_bytes() == (build / "05_biggio_svm.ipynb").read_bytes()
    assert sorted(p.name for p in (published / "05_biggio_svm").iterdir()) == ["claims.csv"]
    assert "1 of 1 claims hold" in (published / "REPORT.md").read_text()


# ---------------------------------------------------------------- provenance
def _git(repo, *args):
    subprocess.run(["git", *args], cwd=repo, check=True, capture_output=True,
                   env={"GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@t", "GIT_COMMITTER_NAME": "t",
                        "GIT_COMMITTER_EMAIL": "t@t", "PATH": "/usr/bin:/bin"})
    return subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=repo, capture_output=True,
                          text=True).stdout.strip()


def test_outputs_are_current_until_a_commit_changes_the_code_they_import(tmp_path, monkeypatch):
    repo = tmp_path / "repo"
    shutil.copytree(REPO / "poisonrepro", repo / "poisonrepro", ignore=shutil.ignore_patterns("__pycache__"))
    (repo / "notebooks").mkdir()
    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_code_cell("from poisonrepro import stats\n%matplotlib inline")]
    nbformat.write(nb, repo / "notebooks" / "10_dpa.ipynb")
    _git(repo, "init", "-q")
    _git(repo, "add", "-A")
    run = _git(repo, "commit", "-qm", "run")
    # the run's executed notebook names its commit in the colophon
    executed = tmp_path / "10_dpa.ipynb"
    _executed(executed, f"git commit:  {run}\nprofile:     cpu\n")
    monkeypatch.setattr(paths, "repo_root", lambda: repo)
    assert provenance.freshness("10_dpa", executed).current

    stats = repo / "poisonrepro" / "stats.py"
    stats.write_text('"""An edited docstring."""\n' + stats.read_text().split('"""', 2)[2])
    _git(repo, "commit", "-qam", "docstring only")
    unrelated = repo / "poisonrepro" / "plan.py"  # not imported by stats
    unrelated.write_text(unrelated.read_text() + "\nX = 1\n")
    _git(repo, "commit", "-qam", "unrelated code")
    assert provenance.freshness("10_dpa", executed).current  # same code as at the run

    stats.write_text(stats.read_text() + "\nALPHA_CHANGED = 0.1\n")
    changed = _git(repo, "commit", "-qam", "code the notebook imports")
    (repo / "poisonrepro" / "reference" / "dpa.csv").write_text("key,value\n")
    _git(repo, "commit", "-qam", "the paper's reference data")
    fresh = provenance.freshness("10_dpa", executed)
    assert not fresh.current and fresh.stale_since == changed and fresh.label == f"stale since {changed}"


def test_make_help_lists_every_target():
    makefile = (REPO / "Makefile").read_text()
    phony = next(line for line in makefile.splitlines() if line.startswith(".PHONY:")).split(":", 1)[1].split()
    rules = {m for m in __import__("re").findall(r"(?m)^([a-z][\w-]*):", makefile)}
    assert set(phony) == rules, "every rule is .PHONY and listed here"
    out = subprocess.run(["make", "-s", "help"], cwd=REPO, capture_output=True, text=True, check=True).stdout
    missing = [t for t in phony if f"make {t}" not in out]
    assert not missing, missing
