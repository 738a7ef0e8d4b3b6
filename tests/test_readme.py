"""The README and the book's measurement pages cannot go stale silently.

- the README's findings table counts, per notebook, the headline verdicts of the committed run
  (``figures/cpu/summary.csv``, role ``headline``), and its total row their sum;
- its `cpu` wall times are the committed notebooks' colophons' (``wall time:`` in the last cell), and
  so is ``docs/measurements.md``'s table of the committed runs (commit, time, cache, memory);
- its test and book commands are the Makefile's, its profiles the config's, and every docs page it
  points to exists, with one ``# Title``.
"""
from __future__ import annotations

import re
from pathlib import Path

import nbformat
import pandas as pd
import pytest

from poisonrepro import catalog
from poisonrepro.config import PROFILE_NAMES

REPO = Path(__file__).resolve().parents[1]
README = REPO / "README.md"
MEASUREMENTS = REPO / "docs" / "measurements.md"
VERDICTS = ("holds", "fails", "inconclusive", "untested")
#: the findings table's header: these columns, in this order
FINDINGS_HEADER = ("notebook", "paper", "status", *VERDICTS, "why, in one line", "`cpu` wall time")


# ----------------------------------------------------------------------------- parsing
def table_rows(text: str, header: tuple[str, ...]) -> list[list[str]]:
    """The body rows (cells stripped) of the markdown table whose header row is ``header``."""
    lines = text.splitlines()
    want = [h.lower() for h in header]
    for i, line in enumerate(lines):
        if line.startswith("|") and [c.strip().lower() for c in line.strip().strip("|").split("|")] == want:
            rows = []
            for body in lines[i + 2:]:
                if not body.startswith("|"):
                    break
                rows.append([c.strip() for c in body.strip().strip("|").split("|")])
            return rows
    raise AssertionError(f"no table with the header {' | '.join(header)}")


def findings(text: str) -> dict[str, dict[str, int]]:
    """notebook (or ``all``) -> verdict -> count, from the findings table."""
    out = {}
    for row in table_rows(text, FINDINGS_HEADER):
        assert len(row) == len(FINDINGS_HEADER), f"findings row with {len(row)} cells: {row}"
        key = row[0].strip("`*")
        counts = {}
        for verdict, cell in zip(VERDICTS, row[3:7]):
            assert re.fullmatch(r"\*{0,2}\d+\*{0,2}", cell), f"findings, {key}, {verdict}: {cell!r} is not a count"
            counts[verdict] = int(cell.strip("*"))
        out[key] = counts
    return out


def committed_findings(summary: Path = REPO / "figures" / "cpu" / "summary.csv") -> dict[str, dict[str, int]]:
    """notebook -> verdict -> count of the committed run's headline claims, and ``all``."""
    claims = pd.read_csv(summary)
    head = claims[claims.role == "headline"]
    unknown = set(head.verdict) - set(VERDICTS)
    assert not unknown, f"summary.csv has verdicts {unknown}; the README's table knows {VERDICTS}"
    out = {nb: {v: int((g.verdict == v).sum()) for v in VERDICTS} for nb, g in head.groupby("notebook")}
    out["all"] = {v: int((head.verdict == v).sum()) for v in VERDICTS}
    return out


def colophon(path: Path) -> dict[str, str]:
    """The colophon's ``label: value`` lines (``wall time``, ``git commit``, ...) of a notebook's last cell."""
    cell = nbformat.read(path, as_version=4).cells[-1]
    text = "".join(str(o.get("text", "")) for o in cell.get("outputs", []))
    return {k.strip(): v.strip() for k, v in re.findall(r"^([a-z][a-z ]+):\s+(.*)$", text, flags=re.M)}


def committed_runs() -> dict[str, dict[str, str]]:
    return {p.stem: colophon(p) for p in sorted((REPO / "notebooks").glob("[0-9][0-9]_*.ipynb"))}


def wall_seconds(field: str) -> int:
    """``1449 s (artifact cache: 0 reused, 9 computed in this run)`` -> 1449."""
    m = re.match(r"(\d+) s\b", field)
    assert m, f"unreadable colophon wall time {field!r}"
    return int(m.group(1))


def colophon_table(runs: dict[str, dict[str, str]]) -> str:
    """docs/measurements.md's table of the committed runs, as the colophons give it."""
    lines = ["| notebook | commit | wall time | artifact cache | peak memory |", "|---|---|---|---|---|"]
    for stem, c in runs.items():
        cache = re.search(r"\(artifact cache: (.*) in this run\)", c["wall time"]).group(1)
        memory = c["peak memory"].split(" resident")[0]
        lines.append(f"| `{stem}` | {c['git commit']} | {wall_seconds(c['wall time']):,} s | {cache} | {memory} |")
    total = sum(wall_seconds(c["wall time"]) for c in runs.values())
    lines.append(f"| all | | {total:,} s ({total // 3600} h {total // 60 % 60} min) | | |")
    return "\n".join(lines)


def outside_code(text: str) -> list[str]:
    """The lines of a markdown text outside its fenced code blocks (where "# " is a comment)."""
    lines, fenced = [], False
    for line in text.splitlines():
        if line.lstrip().startswith("```"):
            fenced = not fenced
        elif not fenced:
            lines.append(line)
    return lines


# ----------------------------------------------------------------------------- the findings table
def test_the_findings_table_counts_the_committed_runs_headline_verdicts():
    readme, committed = findings(README.read_text()), committed_findings()
    done = [p.notebook for p in catalog.PAPERS if catalog.status(p.notebook) == "done"]
    assert [k for k in readme if k != "all"] == [p.notebook for p in catalog.PAPERS], \
        "the findings table has one row per notebook of the catalogue, in its order, and a total row"
    for stem in [*done, "all"]:
        want = committed.get(stem, dict.fromkeys(VERDICTS, 0))  # 00_overview decides no claim
        assert readme[stem] == want, f"README findings, {stem}: {readme[stem]}, figures/cpu/summary.csv: {want}"
    for stem in set(readme) - set(done) - {"all"}:
        assert readme[stem] == dict.fromkeys(VERDICTS, 0), f"{stem} is not built, yet the README counts verdicts"


def test_the_findings_parser_reads_counts_and_catches_a_stale_row(tmp_path):
    head = "| " + " | ".join(FINDINGS_HEADER) + " |\n|" + "---|" * len(FINDINGS_HEADER) + "\n"
    text = head + ("| `05_biggio_svm` | Biggio | done | 3 | 0 | 0 | 0 | one point, +10 points | 336 s |\n"
                   "| **all** | | | **3** | 0 | 1 | 0 | | |\n\nafter\n")
    assert findings(text) == {"05_biggio_svm": {"holds": 3, "fails": 0, "inconclusive": 0, "untested": 0},
                              "all": {"holds": 3, "fails": 0, "inconclusive": 1, "untested": 0}}
    summary = tmp_path / "summary.csv"
    pd.DataFrame({"notebook": ["05_biggio_svm"] * 3 + ["06_back_gradient"], "role": ["headline"] * 2 + [
        "supporting", "headline"], "verdict": ["holds", "fails", "holds", "untested"]}).to_csv(summary, index=False)
    got = committed_findings(summary)
    assert got["05_biggio_svm"] == {"holds": 1, "fails": 1, "inconclusive": 0, "untested": 0}  # supporting not counted
    assert got["all"]["untested"] == 1 and findings(text)["05_biggio_svm"] != got["05_biggio_svm"]
    with pytest.raises(AssertionError, match="is not a count"):
        findings(text.replace("| 3 | 0 | 0 | 0 |", "| three | 0 | 0 | 0 |"))
    with pytest.raises(AssertionError, match="no table with the header"):
        findings("| notebook | paper |\n|---|---|\n")


# ----------------------------------------------------------------------------- wall times
def test_the_readmes_cpu_wall_times_are_the_colophons():
    runs = committed_runs()
    rows = {r[0].strip("`"): r[-1] for r in table_rows(README.read_text(), FINDINGS_HEADER)}
    for stem, c in runs.items():
        want = wall_seconds(c["wall time"])
        got = re.match(r"([\d,]+) s\b", rows[stem])
        assert got and int(got.group(1).replace(",", "")) == want, \
            f"README findings, {stem}: `cpu` wall time {rows[stem]!r}, its colophon {want:,} s"


def test_the_measurements_page_lists_the_colophons_of_the_committed_runs():
    want = colophon_table(committed_runs())
    assert want in MEASUREMENTS.read_text(), f"docs/measurements.md's table of the committed runs is stale: " \
                                             f"replace it with\n{want}"


def test_the_colophon_table_is_built_from_each_colophon():
    runs = {"01_x": {"git commit": "abc1234", "wall time": "3700 s (artifact cache: 1 reused, 2 computed in this run)",
                     "peak memory": "1.80 GiB resident (the notebook's kernel process)"}}
    assert colophon_table(runs).splitlines()[2:] == ["| `01_x` | abc1234 | 3,700 s | 1 reused, 2 computed | 1.80 GiB |",
                                                     "| all | | 3,700 s (1 h 1 min) | | |"]
    with pytest.raises(AssertionError, match="unreadable colophon wall time"):
        wall_seconds("n/a")


# ----------------------------------------------------------------------------- commands, profiles, pages
def test_the_readmes_test_and_book_commands_are_the_makefiles():
    readme, makefile = README.read_text(), (REPO / "Makefile").read_text()
    targets = set(re.findall(r"^([a-z][a-z-]*):", makefile, flags=re.M))
    used = set(re.findall(r"^make ([a-z][a-z-]*)", readme, flags=re.M))
    assert {"test", "book", "reproduce"} <= used, used
    assert used <= targets, f"the README runs make targets the Makefile lacks: {used - targets}"
    assert "make test" in (REPO / ".ci" / "run").read_text()  # the CI's command is the README's
    assert re.search(r"pip install [^\n]*-e '\.\[test\]'", makefile) and "`.[test]`" in readme
    for extra in ("book", "cluster"):
        assert f"`.[{extra}]`" in readme, f"the README does not say what the {extra} extra is for"


def test_the_readmes_profiles_are_the_configs():
    rows = table_rows(README.read_text(), ("profile", "what it runs", "how long"))
    assert [r[0].strip("`") for r in rows] == list(PROFILE_NAMES)


def test_the_docs_pages_the_readme_names_exist_with_one_title():
    readme = README.read_text()
    pages = sorted(set(re.findall(r"\((docs/[\w./-]+\.md)\)", readme)))
    assert MEASUREMENTS.relative_to(REPO).as_posix() in pages
    for page in pages:
        path = REPO / page
        assert path.is_file(), f"the README links {page}, which does not exist"
        titles = [ln for ln in outside_code(path.read_text()) if ln.startswith("# ")]
        assert len(titles) == 1, f"{page} has {len(titles)} '# ' titles; the book needs one"


def test_the_readme_stays_a_short_guide():
    assert len(README.read_text().splitlines()) <= 300
