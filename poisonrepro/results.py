"""The results contract of a notebook run.

A run writes ``figures/<profile>/<notebook>/``:

- ``<artifact-id>.png`` for each figure and ``<artifact-id>.csv`` for each table;
- ``claims.csv`` with the columns ``CLAIM_COLUMNS``: ``paper`` from the reference data (its
  locator in ``setting``), ``measured`` from the run, 95% Wilson intervals for success
  rates, ``expectation`` (the reduced-scale check, e.g. ``>= 0.8``) and ``holds``, computed
  from ``measured`` and ``expectation``, never set by hand.

``write_summary`` gathers every notebook's claims into ``figures/<profile>/summary.csv`` and a
readable ``REPORT.md``.
"""
from __future__ import annotations

import io
import math
import operator
import re
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
from scipy.stats import spearmanr

from . import paths, reference
from .cache import atomic_write

CLAIM_COLUMNS = ["artifact", "claim", "setting", "metric", "paper", "measured",
                 "n", "ci_low", "ci_high", "expectation", "holds"]
_OPS = {">=": operator.ge, "<=": operator.le, ">": operator.gt, "<": operator.lt}
_EXPECT = re.compile(r"^\s*(>=|<=|>|<)\s*(-?[0-9.]+(?:e-?[0-9]+)?)\s*$")


def wilson(successes: int, n: int, alpha: float = 0.05) -> tuple[float, float]:
    """95% Wilson score interval of a success rate (statsmodels)."""
    from statsmodels.stats.proportion import proportion_confint
    if n == 0:
        return (math.nan, math.nan)
    lo, hi = proportion_confint(successes, n, alpha=alpha, method="wilson")
    return float(lo), float(hi)


def rank_correlation(x, y) -> float:
    """Spearman's rho; NaN (the claim then does not hold) where either side is constant."""
    x, y = np.asarray(x, float), np.asarray(y, float)
    if len(x) < 3 or np.ptp(x) == 0 or np.ptp(y) == 0:
        return float("nan")
    return float(spearmanr(x, y).statistic)


def check(measured: float, expectation: str) -> bool:
    """Evaluate an expectation such as ``>= 0.8`` or ``< 0.1`` against a measured value."""
    m = _EXPECT.match(expectation)
    if m is None:
        raise ValueError(f"expectation {expectation!r}: write it as '<op> <number>', op one of {', '.join(_OPS)}")
    if measured is None or (isinstance(measured, float) and math.isnan(measured)):
        return False
    return bool(_OPS[m.group(1)](measured, float(m.group(2))))


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
        # a sweep's rows (numbers) change with the profile: name its index instead
        numeric = all(pd.api.types.is_numeric_dtype(df.index.get_level_values(i)) for i in range(df.index.nlevels))
        rows = f"indexed by {list(df.index.names)}" if numeric else f"rows={[str(i) for i in df.index]}"
        self.artifacts.setdefault(artifact, {})["table"] = f"table {rows} columns={[str(c) for c in df.columns]}"
        return path

    # ---- claims
    def claim(self, artifact: str, claim: str, metric: str, measured: float, expectation: str, *,
              setting: str = "", paper_key: str | None = None, successes: int | None = None,
              n: int | None = None) -> dict:
        """Record one claim. With ``successes`` and ``n`` the measured value is the success
        rate and a Wilson interval is attached. ``paper_key`` looks the paper's number up in
        the reference data; its locator goes into ``setting``."""
        paper_value = math.nan
        if paper_key is not None:
            ref = reference.get(self.paper, paper_key)
            paper_value = ref.value
            setting = f"{setting}; paper: {ref.citation}" if setting else f"paper: {ref.citation}"
        lo = hi = math.nan
        if successes is not None:
            measured = successes / n if n else math.nan
            lo, hi = wilson(successes, n)
        row = {"artifact": artifact, "claim": claim, "setting": setting, "metric": metric,
               "paper": paper_value, "measured": float(measured), "n": n if n is not None else "",
               "ci_low": lo, "ci_high": hi, "expectation": expectation,
               "holds": check(float(measured), expectation)}
        self.claims.append(row)
        return row

    def claims_frame(self) -> pd.DataFrame:
        return pd.DataFrame(self.claims, columns=CLAIM_COLUMNS)

    def write_claims(self) -> Path:
        text = self.claims_frame().to_csv(index=False, float_format="%.6g")
        return atomic_write(self.out_dir / "claims.csv", lambda tmp: tmp.write_text(text))

    def paper_vs_measured(self) -> pd.DataFrame:
        """The readable table shown in the notebook: paper and measured side by side."""
        df = self.claims_frame()
        ci = [f"[{lo:.2f}, {hi:.2f}]" if not math.isnan(lo) else "" for lo, hi in zip(df.ci_low, df.ci_high)]
        return pd.DataFrame({"artifact": df.artifact, "claim": df.claim, "setting": df.setting.map(short_setting),
                             "metric": df.metric,
                             "paper": df.paper, "measured": df.measured, "95% CI": ci,
                             "check": df.expectation, "holds": df.holds})

    def regenerated(self) -> str:
        """The artifact ids of this run with each table's row and column labels (a numeric
        sweep by its index names): the same at every profile, so nbval can compare it."""
        lines = []
        for aid in sorted(self.artifacts):
            kinds = self.artifacts[aid]
            lines.append(f"{aid}: " + "; ".join(kinds[k] for k in ("figure", "table") if k in kinds))
        lines.append("claims: " + ", ".join(sorted({c['artifact'] + ':' + c['metric'] for c in self.claims})))
        return "\n".join(lines)


def short_setting(setting) -> str:
    """The setting without the paper locator (which stays in claims.csv)."""
    return "" if pd.isna(setting) else str(setting).split("; paper:")[0].removeprefix("paper:").strip()


def write_summary(profile: str, notebooks: list[str] | None = None) -> tuple[Path, Path]:
    """``summary.csv`` and ``REPORT.md`` for a profile from every notebook's ``claims.csv``."""
    root = paths.figures_dir(profile)
    frames = []
    for claims in sorted(root.glob("*/claims.csv")):
        if notebooks and claims.parent.name not in notebooks:
            continue
        df = pd.read_csv(claims)
        df.insert(0, "notebook", claims.parent.name)
        frames.append(df)
    summary = pd.concat(frames, ignore_index=True) if frames else pd.DataFrame(columns=["notebook"] + CLAIM_COLUMNS)
    summary_path = atomic_write(root / "summary.csv",
                                lambda tmp: tmp.write_text(summary.to_csv(index=False, float_format="%.6g")))
    lines = [f"# poisonrepro report: profile `{profile}`", "",
             "Measured values come from the notebook runs; paper values from `poisonrepro/reference/`.",
             "`holds` is the reduced-scale check of each claim, computed in the run.", ""]
    for nb, part in summary.groupby("notebook", sort=True):
        held = int(part.holds.astype(bool).sum())
        lines += [f"## {nb}: {held} of {len(part)} checks hold", "",
                  "| artifact | claim | setting | metric | paper | measured | 95% CI | check | holds |",
                  "|---|---|---|---|---|---|---|---|---|"]
        for r in part.itertuples():
            ci = f"[{r.ci_low:.2f}, {r.ci_high:.2f}]" if not pd.isna(r.ci_low) else ""
            paper = "" if pd.isna(r.paper) else f"{r.paper:.3g}"
            lines.append(f"| {r.artifact} | {r.claim} | {short_setting(r.setting)} | {r.metric} | {paper} | "
                         f"{r.measured:.3g} | {ci} | "
                         f"`{r.expectation}` | {'yes' if bool(r.holds) else '**no**'} |")
        lines.append("")
    report = "\n".join(lines)
    report_path = atomic_write(root / "REPORT.md", lambda tmp: tmp.write_text(report))
    return summary_path, report_path
