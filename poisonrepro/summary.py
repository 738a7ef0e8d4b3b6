"""The compendium's summary of a run: every notebook's ``claims.csv`` gathered into
``summary.csv`` and a readable ``REPORT.md``, optionally beside the committed ``cpu`` run's claims.
``make reproduce`` and ``make publish`` write it; no notebook imports it.

- **Pairing.** A claim of this run is paired with the committed run's claim of the same notebook
  and id (``CLAIM_KEY``: artifact, metric and key; the same at every profile), never by its text
  or its place in the table. Where the two were decided at another setting (the claim's
  ``setting``: k = 2 at ``smoke``, k = 50 at ``cpu``; another number of trials), they are shown
  side by side but not compared: "another setting", never "same as committed".
- **Runs.** ``runs`` (``reproduce``'s ``runs.csv``) says how each notebook's run ended: a failed
  one is marked FAILED at the top and none of its claims stand in the report; each notebook's
  section names the commit and the data it ran on, and a run whose data differ from the
  committed run's (another fingerprint in the colophon's ``data:`` line, e.g. the original
  CIFAR-10 downloaded instead of the offline JPEG mirror) is flagged: its verdicts may differ for
  that reason alone.
"""
from __future__ import annotations

from pathlib import Path

import pandas as pd

from . import paths
from .cache import atomic_write
from .results import CLAIM_COLUMNS, _upgrade_summary, fmt, gather_claims, readable, tally_by_role

#: the columns that name a claim: a run's claim is matched with the committed run's on its notebook and its
#: id (artifact, metric and key); the setting decides whether the pair is comparable
CLAIM_KEY = ["notebook", "id"]

SAME, DIFFERS, ANOTHER_SETTING, ABSENT = "same verdict", "verdict differs", "another setting", "not in the committed run"

_REPORT_INTRO = [
    "Measured values come from the notebook runs; paper values from `poisonrepro/reference/`",
    "(the citation in `source`). Each claim is decided by the stated test on the per-trial data",
    "(`poisonrepro/stats.py`): **holds** when the one-sided 95% bound on the claim's side clears",
    "the threshold in `check`, **fails** when the other bound falls short of it, **inconclusive**",
    "otherwise (too little data to tell at 95%; counted as not reproduced). `p` is the one-sided",
    "p-value of the claim's null (for trends and correlations: of no trend at all; the bound then",
    "decides against the minimum effect, and a claim holds only if both agree); `trials to decide`",
    "estimates how many trials would decide an inconclusive claim if the observed effect and",
    "spread held. **untested**: a precondition that makes the claim a test did not hold (`why` names",
    "it); the numbers decide nothing. A **joint** claim holds only where every part holds. A",
    "**headline** claim (a main result of the paper) holds only where its p, Holm-adjusted over the",
    "notebook's tested headline claims (`p (Holm)`), is below 0.05; **supporting** claims are",
    "controls, sanity checks and preconditions. Headline claims are counted first. A claim is paired",
    "with the committed run's by its id; one decided at another setting is shown, not compared."]

_VERDICT_MD = {"holds": "holds", "fails": "**fails**", "inconclusive": "*inconclusive*", "untested": "*untested*"}


def compare_with(summary: pd.DataFrame, committed: pd.DataFrame) -> pd.DataFrame:
    """``summary`` with the committed run's setting, measured value and verdict of the same claim
    (matched on ``CLAIM_KEY``; empty where the committed run has no such claim), ``comparison``
    (``SAME``, ``DIFFERS``, ``ANOTHER_SETTING`` or ``ABSENT``) and ``changed``: True where the
    verdict differs from the committed one at the same setting, or the committed run lacks the claim."""
    committed = _upgrade_summary(committed)
    theirs = committed[CLAIM_KEY].astype(str).assign(committed_setting=committed.setting.fillna("").astype(str).values,
                                                     committed_measured=committed.measured.values,
                                                     committed_verdict=committed.verdict.values)
    theirs = theirs.drop_duplicates(CLAIM_KEY)
    out = summary[CLAIM_KEY].astype(str).merge(theirs, on=CLAIM_KEY, how="left")
    result = summary.copy()
    for col in ("committed_setting", "committed_measured", "committed_verdict"):
        result[col] = out[col].values
    mine = summary.setting.fillna("").astype(str).values
    absent = out.committed_verdict.isna().values
    other = ~absent & (out.committed_setting.fillna("").values != mine)
    same = ~absent & ~other & (out.committed_verdict.values == summary.verdict.values)
    result["comparison"] = [ABSENT if a else ANOTHER_SETTING if o else SAME if s else DIFFERS
                            for a, o, s in zip(absent, other, same)]
    result["changed"] = result.comparison.isin([DIFFERS, ABSENT]).values
    return result


def _committed_cell(c) -> str:
    if c.comparison == ABSENT:
        return "not in the committed run"
    value = f"{fmt(c.committed_measured)} ({c.committed_verdict})"
    return f"{value} at {c.committed_setting}" if c.comparison == ANOTHER_SETTING else value


_COMPARISON_MD = {SAME: "yes", DIFFERS: "**verdict differs**", ANOTHER_SETTING: "not compared: another setting",
                  ABSENT: "**verdict differs**"}


def _report_table(part: pd.DataFrame, compared: bool) -> list[str]:
    r = readable(part[CLAIM_COLUMNS])  # without the comparison's columns
    if not compared:
        lines = ["| claim | role | verdict | why | measured | paper | check | 95% bounds | n | p | p (Holm) | test "
                 "| trials to decide | setting | source | id |",
                 "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
        for x, src in zip(r.itertuples(index=False), part.source.fillna("")):
            lines.append(f"| {x.claim} | {x.role} | {_VERDICT_MD[x.verdict]} | {x.why} | {x.measured} | {x.paper} | "
                         f"`{x.check}` | {x._7} | {x.n} | {x.p} | {x._10} | {x.test} | {x._12} | {x.setting} | "
                         f"{src} | `{x.id}` |")
        return lines
    lines = ["| claim | role | verdict | why | this run | committed `cpu` run | same as committed? | paper | check "
             "| 95% bounds | n | p (Holm) | test | setting | id |",
             "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for x, (_, c) in zip(r.itertuples(index=False), part.iterrows()):
        lines.append(f"| {x.claim} | {x.role} | {_VERDICT_MD[x.verdict]} | {x.why} | {x.measured} | "
                     f"{_committed_cell(c)} | {_COMPARISON_MD[c.comparison]} | {x.paper} | `{x.check}` | {x._7} | "
                     f"{x.n} | {x._10} | {x.test} | {x.setting} | `{x.id}` |")
    return lines


def _runs_section(runs: pd.DataFrame, committed_runs: pd.DataFrame | None) -> tuple[list[str], set[str]]:
    """The report's account of the runs: failures first, then each notebook's commit and data,
    flagged where its data differ from the committed run's. Returns the lines and the failed notebooks."""
    if runs is None or runs.empty:
        return [], set()
    failed = runs[runs.status == "failed"]
    lines = []
    if len(failed):
        lines += ["**FAILED** in this run, so none of their claims are in this report: "
                  + "; ".join(f"{r.notebook} ({r.error})" for r in failed.itertuples()), ""]
    # the published report is the committed run: there is nothing to compare its data with
    compare = committed_runs is not None
    theirs = dict(zip(committed_runs.notebook, committed_runs.data)) if compare else {}
    lines += ["| notebook | status | wall time | commit | data (fingerprints) |"
              + (" data as in the committed run? |" if compare else ""),
              "|---|---|---|---|---|" + ("---|" if compare else "")]
    differ = []
    for r in runs.itertuples():
        committed = theirs.get(r.notebook, "")
        if not r.data or not committed:
            same = "unknown (not recorded)"
        elif r.data == committed:
            same = "yes"
        else:
            same = f"**no**: the committed run used {committed}"
            differ.append(r.notebook)
        wall = f"{r.wall_s} s" if r.wall_s else ""
        data = r.data or "not recorded (a colophon older than the data line)"
        lines.append(f"| {r.notebook} | {'**FAILED**' if r.status == 'failed' else r.status} | {wall} | "
                     f"{r.commit} | {data} |" + (f" {same} |" if compare else ""))
    lines.append("")
    if differ:
        lines += [f"Data differ from the committed run's for {', '.join(differ)}: verdicts may change for that "
                  "reason alone.", ""]
    return lines, set(failed.notebook)


def write_summary(profile: str, notebooks: list[str] | None = None, *, root: Path | None = None,
                  committed: Path | None = None, runs: pd.DataFrame | None = None,
                  committed_runs: pd.DataFrame | None = None) -> tuple[Path, Path]:
    """``summary.csv`` and ``REPORT.md`` in ``root`` (default ``paths.figures_dir(profile)``) from
    every notebook's ``claims.csv`` there.

    ``committed``: the ``summary.csv`` of the committed ``cpu`` run. The report then puts the
    paper, the committed run and this run side by side and flags each claim whose verdict
    differs from the committed run's (a reviewer's run compares itself). ``runs`` and
    ``committed_runs``: the runs' records (``reproduce.read_runs``); a notebook whose run failed
    contributes no claims, and is named."""
    root = Path(root) if root is not None else paths.figures_dir(profile)
    run_lines, failed = _runs_section(runs, committed_runs)
    summary, stale = gather_claims(root, notebooks)
    summary = summary[~summary.notebook.isin(failed)].reset_index(drop=True)
    unrecorded = []
    if runs is not None and not runs.empty:  # claims whose run no record vouches for (the tests', say) never stand
        done = set(runs.notebook[runs.status == "done"])
        unrecorded = sorted(set(summary.notebook) - done)
        summary = summary[summary.notebook.isin(done)].reset_index(drop=True)
    summary_path = atomic_write(root / "summary.csv",
                                lambda tmp: tmp.write_text(summary.to_csv(index=False, float_format="%.6g")))
    compared = committed is not None and Path(committed).is_file()
    if compared:
        summary = compare_with(summary, pd.read_csv(committed, keep_default_na=True))
    lines = [f"# poisonrepro report: profile `{profile}`", "", *_REPORT_INTRO, "",
             f"Overall: {tally_by_role(summary[CLAIM_COLUMNS])}.", "", *run_lines]
    if compared:
        changed = summary[summary.changed]
        elsewhere = int((summary.comparison == ANOTHER_SETTING).sum())
        lines += [f"Compared with the committed `cpu` run (`figures/cpu/summary.csv`): {len(changed)} of "
                  f"{len(summary)} claims have another verdict at the same setting or are new; {elsewhere} were "
                  "decided at another setting than the committed run's and are not compared"
                  + (" (a `smoke` run's numbers mean nothing: expect many)." if profile == "smoke" else ".")]
        lines += [f"- {r.notebook} `{r.id}`: committed "
                  f"{r.committed_verdict if isinstance(r.committed_verdict, str) else 'none'}, this run {r.verdict}"
                  for r in changed.itertuples()]
        lines.append("")
    if stale:
        lines += [f"Not in this report (claims written by an older version of the results contract; rerun "
                  f"them): {', '.join(stale)}.", ""]
    if unrecorded:
        lines += [f"Not in this report (claims in `{root.name}/` with no record of their run in `runs.csv`, e.g. "
                  f"written by the tests): {', '.join(unrecorded)}.", ""]
    for nb, part in summary.groupby("notebook", sort=True):
        lines += [f"## {nb}: {tally_by_role(part[CLAIM_COLUMNS])}", "", *_report_table(part, compared), ""]
    report = "\n".join(lines)
    report_path = atomic_write(root / "REPORT.md", lambda tmp: tmp.write_text(report))
    return summary_path, report_path
