"""The committed notebooks: the skeleton, real cpu outputs, no absolute paths or progress noise."""
import json
import re
import subprocess
import sys
from pathlib import Path

import nbformat
import pytest

from poisonrepro import catalog

REPO = Path(__file__).resolve().parents[1]
NOTEBOOKS = sorted((REPO / "notebooks").glob("[0-9][0-9]_*.ipynb"))


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_notebook_follows_the_skeleton(path):
    nb = nbformat.read(path, as_version=4)
    assert nb.metadata["kernelspec"]["name"] == "python3"
    assert 8 <= len(nb.cells) <= 20
    assert nb.cells[0].cell_type == "markdown" and nb.cells[0].source.startswith("# ")
    params = [c for c in nb.cells if "parameters" in c.metadata.get("tags", [])]
    assert len(params) == 1
    for line in params[0].source.splitlines():
        line = line.split("#")[0].strip()
        # only scalars: literals, or the profile read from the environment
        assert (not line or line == "import os" or re.fullmatch(r"\w+ = (\d+|True|False|\"\w*\"|[\d.e-]+)", line)
                or line.startswith('profile = os.environ.get("POISONREPRO_PROFILE"')), line
    assert 'os.environ.get("POISONREPRO_PROFILE", "smoke")' in params[0].source  # set but empty: an error
    assert any("NBVAL_CHECK_OUTPUT" in c.source for c in nb.cells if c.cell_type == "code")
    assert "colophon" in nb.cells[-1].source


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_committed_outputs_are_a_clean_cpu_run(path):
    nb = nbformat.read(path, as_version=4)
    code = [c for c in nb.cells if c.cell_type == "code"]
    assert all(c.get("outputs") is not None and c.execution_count for c in code), "not executed"
    text = json.dumps([c.get("outputs", []) for c in code]) + json.dumps(nb.metadata)
    assert "profile:     cpu" in text, "committed outputs must come from a cpu-profile run"
    for bad in ("/work/", "/root/", "/home/", "/tmp/", "/Users/"):
        assert bad not in text, f"absolute path {bad} in the outputs"
    assert "it/s]" not in text and "\\r" not in text, "progress-bar noise in the outputs"
    assert not any(o.get("output_type") == "error" for c in code for o in c.outputs)


def test_readme_status_table_is_true():
    readme = (REPO / "README.md").read_text()
    for stem, _, _, _ in catalog.PAPERS[1:]:
        row = next((line for line in readme.splitlines() if line.startswith(f"| `{stem}`")), None)
        assert row is not None, f"{stem} missing from the README status table"
        assert f"| {catalog.status(stem)} |" in row, f"{stem}: README says otherwise than the repository"


def test_reproduce_rejects_bad_input_before_running_anything():
    for args, msg in ((["--profile", "fast"], "unknown profile"), (["--notebooks", "99_nothing"], "unknown notebook")):
        r = subprocess.run([sys.executable, "-m", "poisonrepro.reproduce", *args], capture_output=True, text=True)
        assert r.returncode == 2 and msg in r.stderr


def test_committed_report_decides_every_claim_by_a_stated_test():
    import pandas as pd
    from poisonrepro.results import CLAIM_COLUMNS, upgrade
    from poisonrepro.stats import VERDICTS
    summary = pd.read_csv(REPO / "figures" / "cpu" / "summary.csv")
    assert list(summary.columns) == ["notebook"] + CLAIM_COLUMNS
    assert summary.verdict.isin(VERDICTS).all()
    assert summary.test.notna().all() and (summary.test.str.len() > 0).all()
    report = (REPO / "figures" / "cpu" / "REPORT.md").read_text()
    assert "| verdict |" in report and "| source |" in report and "| p (Holm) | test |" in report
    for claims in (REPO / "figures" / "cpu").glob("*/claims.csv"):  # the summary is of these runs
        part = summary[summary.notebook == claims.parent.name].drop(columns="notebook").reset_index(drop=True)
        pd.testing.assert_frame_equal(upgrade(pd.read_csv(claims)).fillna(""), part.fillna(""), check_dtype=False)
