"""The compendium's summary of a run: every notebook's ``claims.csv`` gathered into
``summary.csv`` and a readable ``REPORT.md``, optionally beside the committed ``cpu`` run's claims
(paired by claim id). ``make reproduce`` and ``make publish`` write it; no notebook imports it.
"""
from __future__ import annotations

from pathlib import Path

import pandas as pd

from . import paths
from .cache import atomic_write
from .results import (_REPORT_INTRO, _VERDICT_MD, CLAIM_COLUMNS, compare_with, fmt, gather_claims, readable,
                      tally_by_role)


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
        committed = ("not in the committed run" if pd.isna(c.committed_verdict)
                     else f"{fmt(c.committed_measured)} ({c.committed_verdict})")
        same = "**verdict differs**" if c.changed else "yes"
        lines.append(f"| {x.claim} | {x.role} | {_VERDICT_MD[x.verdict]} | {x.why} | {x.measured} | {committed} | "
                     f"{same} | {x.paper} | `{x.check}` | {x._7} | {x.n} | {x._10} | {x.test} | {x.setting} | "
                     f"`{x.id}` |")
    return lines


def write_summary(profile: str, notebooks: list[str] | None = None, *, root: Path | None = None,
                  committed: Path | None = None) -> tuple[Path, Path]:
    """``summary.csv`` and ``REPORT.md`` in ``root`` (default ``paths.figures_dir(profile)``) from
    every notebook's ``claims.csv`` there.

    ``committed``: the ``summary.csv`` of the committed ``cpu`` run. The report then puts the
    paper, the committed run and this run side by side and flags each claim whose verdict
    differs from the committed run's (a reviewer's run compares itself)."""
    root = Path(root) if root is not None else paths.figures_dir(profile)
    summary, stale = gather_claims(root, notebooks)
    summary_path = atomic_write(root / "summary.csv",
                                lambda tmp: tmp.write_text(summary.to_csv(index=False, float_format="%.6g")))
    compared = committed is not None and Path(committed).is_file()
    if compared:
        summary = compare_with(summary, pd.read_csv(committed, keep_default_na=True))
    lines = [f"# poisonrepro report: profile `{profile}`", "", *_REPORT_INTRO, "",
             f"Overall: {tally_by_role(summary[CLAIM_COLUMNS])}.", ""]
    if compared:
        changed = summary[summary.changed]
        lines += [f"Compared with the committed `cpu` run (`figures/cpu/summary.csv`): {len(changed)} of "
                  f"{len(summary)} claims have another verdict"
                  + (" (a `smoke` run's numbers mean nothing: expect many)." if profile == "smoke" else ".")]
        lines += [f"- {r.notebook} `{r.id}`: committed "
                  f"{r.committed_verdict if isinstance(r.committed_verdict, str) else 'none'}, this run {r.verdict}"
                  for r in changed.itertuples()]
        lines.append("")
    if stale:
        lines += [f"Not in this report (claims written by an older version of the results contract; rerun "
                  f"them): {', '.join(stale)}.", ""]
    for nb, part in summary.groupby("notebook", sort=True):
        lines += [f"## {nb}: {tally_by_role(part[CLAIM_COLUMNS])}", "", *_report_table(part, compared), ""]
    report = "\n".join(lines)
    report_path = atomic_write(root / "REPORT.md", lambda tmp: tmp.write_text(report))
    return summary_path, report_path
