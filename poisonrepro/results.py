"""The results contract of a notebook run.

A run writes ``build/<profile>/<notebook>/`` (``paths.figures_dir``; ``make publish`` copies a
``cpu`` run to the committed ``figures/cpu/``):

- ``<artifact-id>.png`` for each figure and ``<artifact-id>.csv`` for each table;
- ``claims.csv`` with the columns ``CLAIM_COLUMNS``: ``paper`` from the reference data and its
  citation in ``source``; ``measured`` from the run with the one-sided 95% bounds of the test
  that decides the claim (``ci_low``, ``ci_high``), the claim's threshold (``expectation``,
  e.g. ``> 0.8``), the test's name and p-value, and the ``verdict`` (holds, fails or
  inconclusive; ``poisonrepro.stats``), computed from the per-trial data, never set by hand.
  ``n_needed`` says, for an inconclusive claim, how many trials would decide it.

``write_summary`` gathers every notebook's claims into ``summary.csv`` and a readable ``REPORT.md``
beside them, optionally compared with the committed ``cpu`` run.
"""
from __future__ import annotations

import io
import math
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
from scipy.stats import spearmanr

from . import paths, reference
from .cache import atomic_write
from .stats import Decision, wilson  # noqa: F401  (wilson: the intervals of the tables and figures)

CLAIM_COLUMNS = ["artifact", "claim", "setting", "metric", "paper", "source", "measured", "n",
                 "ci_low", "ci_high", "expectation", "test", "p", "verdict", "n_needed"]


def rank_correlation(x, y) -> float:
    """Spearman's rho, a descriptive number for tables (claims use ``stats``); NaN where
    either side is constant."""
    x, y = np.asarray(x, float), np.asarray(y, float)
    if len(x) < 3 or np.ptp(x) == 0 or np.ptp(y) == 0:
        return float("nan")
    return float(spearmanr(x, y).statistic)


def success_columns(successes: int, n: int, prefix: str = "") -> dict:
    """A table's success rate and its 95% Wilson interval (``<prefix>success_rate``,
    ``<prefix>ci_low``, ``<prefix>ci_high``); NaN for no trials, never a division by zero."""
    lo, hi = wilson(successes, n)
    return {f"{prefix}success_rate": successes / n if n else math.nan, f"{prefix}ci_low": lo,
            f"{prefix}ci_high": hi}


def budget_table(res, artifact: str, measured: dict, tolerance: float = 1e-3) -> pd.DataFrame:
    """The measured L-inf budget of every attack's poisons, saved as ``artifact``: ``measured``
    maps an attack's label to (its poisons' L-inf distances from their bases on the 0-255 scale,
    the budget on that scale). Poisons over their budget raise: a table never shows them as kept."""
    rows = []
    for label, (linf_255, budget_255) in measured.items():
        empty = linf_255.numel() == 0
        rows.append({"attack": label, "poisons": linf_255.numel(), "budget_255": budget_255,
                     "max_linf_255": math.nan if empty else float(linf_255.max()),
                     "median_linf_255": math.nan if empty else float(linf_255.median())})
    table = pd.DataFrame(rows).set_index("attack")
    over = table["max_linf_255"] > table["budget_255"] + tolerance
    if over.any():
        raise AssertionError(f"poisons over the budget: {list(table.index[over])}")
    res.save_table(table, artifact)
    return table


def fmt(x, digits: int = 3) -> str:
    """A number for a reader: ``digits`` significant digits, never scientific notation,
    empty for NaN."""
    if x is None or (isinstance(x, float) and math.isnan(x)) or (isinstance(x, str) and not x):
        return ""
    if isinstance(x, str):
        return x
    x = float(x)
    if math.isinf(x):
        return "inf" if x > 0 else "-inf"
    if x == int(x) and abs(x) >= 1:
        return f"{int(x):,}" if abs(x) >= 1e4 else str(int(x))
    return np.format_float_positional(x, precision=digits, unique=False, fractional=False, trim="-")


def fmt_p(p) -> str:
    if p is None or (isinstance(p, float) and math.isnan(p)):
        return ""
    return "<0.001" if p < 0.001 else f"{p:.3f}"


@dataclass
class Results:
    """Collects a notebook's tables, figures and claims and writes them atomically."""
    notebook: str
    profile: str
    paper: str
    out_dir: Path = field(init=False)
    claims: list = field(default_factory=list)
    artifacts: dict = field(default_factory=dict)  # id -> {"figure": "figure", "table": "table ..."}

    def __post_init__(self):
        self.out_dir = paths.figures_dir(self.profile, self.notebook)
        self.out_dir.mkdir(parents=True, exist_ok=True)

    # ---- artifacts
    def save_figure(self, fig, artifact: str) -> Path:
        buf = io.BytesIO()
        fig.savefig(buf, format="png", dpi=110, bbox_inches="tight", metadata={"Software": None})
        path = atomic_write(self.out_dir / f"{artifact}.png", lambda tmp: tmp.write_bytes(buf.getvalue()))
        self.artifacts.setdefault(artifact, {})["figure"] = "figure"
        return path

    def save_table(self, df: pd.DataFrame, artifact: str) -> Path:
        text = df.to_csv(index=True)
        path = atomic_write(self.out_dir / f"{artifact}.csv", lambda tmp: tmp.write_text(text))
        # a sweep's rows (numbers) change with the profile: name a numeric level instead of listing it
        numeric = [pd.api.types.is_numeric_dtype(df.index.get_level_values(i)) for i in range(df.index.nlevels)]
        if all(numeric):
            rows = f"indexed by {list(df.index.names)}"
        elif any(numeric):
            named = {df.index.names[i]: list(dict.fromkeys(map(str, df.index.get_level_values(i))))
                     for i in range(df.index.nlevels) if not numeric[i]}
            rows = f"indexed by {list(df.index.names)} with {named}"
        else:
            rows = f"rows={[str(i) for i in df.index]}"
        self.artifacts.setdefault(artifact, {})["table"] = f"table {rows} columns={[str(c) for c in df.columns]}"
        return path

    # ---- claims
    def claim(self, artifact: str, claim: str, metric: str, decision: Decision, *,
              setting: str = "", paper_key: str | None = None) -> dict:
        """Record one claim, decided by ``decision`` (a test of ``poisonrepro.stats`` run on
        this run's per-trial data). ``paper_key`` looks the paper's number up in the
        reference data; its citation goes into ``source``."""
        if not isinstance(decision, Decision):
            raise TypeError(f"{artifact} {claim!r}: pass a poisonrepro.stats Decision, not {type(decision).__name__}")
        paper_value, source = math.nan, ""
        if paper_key is not None:
            ref = reference.get(self.paper, paper_key)
            paper_value, source = ref.value, ref.citation
        d = decision
        row = {"artifact": artifact, "claim": claim, "setting": setting, "metric": metric,
               "paper": paper_value, "source": source, "measured": d.measured, "n": d.n,
               "ci_low": d.ci_low, "ci_high": d.ci_high, "expectation": d.expectation, "test": d.test,
               "p": d.p, "verdict": d.verdict, "n_needed": d.n_needed}
        self.claims.append(row)
        return row

    def claims_frame(self) -> pd.DataFrame:
        return pd.DataFrame(self.claims, columns=CLAIM_COLUMNS)

    def write_claims(self) -> Path:
        text = self.claims_frame().to_csv(index=False, float_format="%.6g")
        return atomic_write(self.out_dir / "claims.csv", lambda tmp: tmp.write_text(text))

    def paper_vs_measured(self) -> pd.DataFrame:
        """The readable table shown in the notebook: paper and measured side by side, the
        verdict, its test and p-value (the paper's citation is in ``claims.csv``)."""
        return readable(self.claims_frame())

    def regenerated(self) -> str:
        """The artifact ids of this run with each table's row and column labels (a numeric
        sweep by its index names): the same at every profile, so nbval can compare it."""
        lines = []
        for aid in sorted(self.artifacts):
            kinds = self.artifacts[aid]
            lines.append(f"{aid}: " + "; ".join(kinds[k] for k in ("figure", "table") if k in kinds))
        lines.append("claims: " + ", ".join(sorted({c['artifact'] + ':' + c['metric'] for c in self.claims})))
        return "\n".join(lines)


def _bounds(lo, hi) -> str:
    return "" if pd.isna(lo) else f"[{fmt(lo)}, {fmt(hi)}]"


def _needed(row) -> str:
    if row.verdict != "inconclusive" or pd.isna(row.n_needed):
        return ""
    return "none at this effect" if math.isinf(row.n_needed) else f"~{fmt(row.n_needed)}"


def readable(df: pd.DataFrame) -> pd.DataFrame:
    """Claims as a reader sees them: numbers at sensible precision, no NaN."""
    return pd.DataFrame({
        "artifact": df.artifact, "claim": df.claim, "setting": df.setting.fillna(""), "metric": df.metric,
        "paper": df.paper.map(fmt), "measured": df.measured.map(fmt), "n": df.n,
        "95% bounds": [_bounds(lo, hi) for lo, hi in zip(df.ci_low, df.ci_high)],
        "check": df.expectation, "test": df.test, "p": df.p.map(fmt_p), "verdict": df.verdict,
        "trials to decide": [_needed(r) for r in df.itertuples()]}).reset_index(drop=True)


def tally(verdicts) -> str:
    v = list(verdicts)
    h, f, i = (sum(x == k for x in v) for k in ("holds", "fails", "inconclusive"))
    return f"{h} of {len(v)} claims hold, {f} fail, {i} inconclusive (not reproduced: {f + i})"


#: the columns that name a claim: a run's claim is compared with the committed run's by these and
#: by its place among claims of the same name (the setting is left out: it names the profile's
#: stand-ins and sizes, e.g. "ConvNet-8" at smoke and "ConvNet-32" at cpu)
CLAIM_KEY = ["notebook", "artifact", "claim", "metric"]


_REPORT_INTRO = [
    "Measured values come from the notebook runs; paper values from `poisonrepro/reference/`",
    "(the citation in `source`). Each claim is decided by the stated test on the per-trial data",
    "(`poisonrepro/stats.py`): **holds** when the one-sided 95% bound on the claim's side clears",
    "the threshold in `check`, **fails** when the other bound falls short of it, **inconclusive**",
    "otherwise (too little data to tell at 95%; counted as not reproduced). `p` is the one-sided",
    "p-value of the claim's null (for trends and correlations: of no trend at all; the bound then",
    "decides against the minimum effect, and a claim holds only if both agree); `trials to decide`",
    "estimates how many trials would decide an inconclusive claim if the observed effect and",
    "spread held."]

_VERDICT_MD = {"holds": "holds", "fails": "**fails**", "inconclusive": "*inconclusive*"}


def gather_claims(root: Path, notebooks: list[str] | None = None) -> tuple[pd.DataFrame, list[str]]:
    """Every notebook's ``claims.csv`` below ``root`` as one frame (a ``notebook`` column first),
    and the notebooks left out because their claims follow an older results contract."""
    frames, stale = [], []
    for claims in sorted(Path(root).glob("*/claims.csv")):
        if notebooks and claims.parent.name not in notebooks:
            continue
        df = pd.read_csv(claims, keep_default_na=True)
        if list(df.columns) != CLAIM_COLUMNS:  # an older results contract: left out, and said so
            stale.append(claims.parent.name)
            continue
        df.insert(0, "notebook", claims.parent.name)
        frames.append(df)
    summary = pd.concat(frames, ignore_index=True) if frames else pd.DataFrame(columns=["notebook"] + CLAIM_COLUMNS)
    return summary, stale


def compare_with(summary: pd.DataFrame, committed: pd.DataFrame) -> pd.DataFrame:
    """``summary`` with the committed run's measured value and verdict of the same claim (matched
    on ``CLAIM_KEY`` and the claim's place among those of the same key; empty where the committed
    run has no such claim) and ``changed``: True where the verdicts differ or the committed run
    lacks the claim."""
    def keyed(df):
        k = df[CLAIM_KEY].fillna("").astype(str)
        k["occurrence"] = k.groupby(CLAIM_KEY).cumcount()
        return k
    theirs = keyed(committed).assign(committed_measured=committed.measured.values,
                                     committed_verdict=committed.verdict.values)
    out = keyed(summary).merge(theirs, on=CLAIM_KEY + ["occurrence"], how="left")
    result = summary.copy()
    result["committed_measured"] = out.committed_measured.values
    result["committed_verdict"] = out.committed_verdict.values
    result["changed"] = out.committed_verdict.fillna("").values != summary.verdict.values
    return result


def _report_table(part: pd.DataFrame, compared: bool) -> list[str]:
    if not compared:
        lines = ["| artifact | claim | setting | metric | paper | source | measured | n | 95% bounds | check "
                 "| test | p | verdict | trials to decide |",
                 "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
        for r, src in zip(readable(part).itertuples(index=False), part.source.fillna("")):
            lines.append(f"| {r.artifact} | {r.claim} | {r.setting} | {r.metric} | {r.paper} | {src} | "
                         f"{r.measured} | {r.n} | {r._7} | `{r.check}` | {r.test} | {r.p} | "
                         f"{_VERDICT_MD[r.verdict]} | {r._12} |")
        return lines
    lines = ["| artifact | claim | setting | metric | paper | committed `cpu` run | this run | n | 95% bounds "
             "| check | test | p | verdict | same as committed? |",
             "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for r, (_, c) in zip(readable(part).itertuples(index=False), part.iterrows()):
        committed = ("not in the committed run" if pd.isna(c.committed_verdict)
                     else f"{fmt(c.committed_measured)} ({c.committed_verdict})")
        same = "**verdict differs**" if c.changed else "yes"
        lines.append(f"| {r.artifact} | {r.claim} | {r.setting} | {r.metric} | {r.paper} | {committed} | "
                     f"{r.measured} | {r.n} | {r._7} | `{r.check}` | {r.test} | {r.p} | "
                     f"{_VERDICT_MD[r.verdict]} | {same} |")
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
             f"Overall: {tally(summary.verdict)}.", ""]
    if compared:
        changed = summary[summary.changed]
        lines += [f"Compared with the committed `cpu` run (`figures/cpu/summary.csv`): {len(changed)} of "
                  f"{len(summary)} claims have another verdict"
                  + (" (a `smoke` run's numbers mean nothing: expect many)." if profile == "smoke" else ".")]
        lines += [f"- {r.notebook} {r.artifact}, {r.metric}: committed "
                  f"{r.committed_verdict if isinstance(r.committed_verdict, str) else 'none'}, this run {r.verdict}"
                  for r in changed.itertuples()]
        lines.append("")
    if stale:
        lines += [f"Not in this report (claims written by an older version of the results contract; rerun "
                  f"them): {', '.join(stale)}.", ""]
    for nb, part in summary.groupby("notebook", sort=True):
        lines += [f"## {nb}: {tally(part.verdict)}", "", *_report_table(part, compared), ""]
    report = "\n".join(lines)
    report_path = atomic_write(root / "REPORT.md", lambda tmp: tmp.write_text(report))
    return summary_path, report_path
