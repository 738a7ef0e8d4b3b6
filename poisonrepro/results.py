"""The results contract of a notebook run.

A run writes ``build/<profile>/<notebook>/`` (``paths.figures_dir``; ``make publish`` copies a
``cpu`` run to the committed ``figures/cpu/``):

- ``<artifact-id>.png`` for each figure and ``<artifact-id>.csv`` for each table;
- ``claims.csv`` with the columns ``CLAIM_COLUMNS``: each claim's stable ``id`` (its artifact,
  metric and key: the same at every profile, so two runs' claims are matched on it) and its
  ``role``: **headline** (a main result of the paper, as the seed artifacts state it) or
  **supporting** (a control, a sanity check, a diagnostic, a precondition); ``paper`` from the
  reference data and its citation in ``source``; ``measured`` from the run with the one-sided
  95% bounds of the test that decides the claim (``ci_low``, ``ci_high``), the claim's threshold
  (``expectation``, e.g. ``> 0.8``), the test's name and p-value, the Holm-adjusted p over the
  notebook's headline family (``p_holm``), and the ``verdict`` (``poisonrepro.stats``), computed
  from the per-trial data, never set by hand. ``n_needed`` says, for an inconclusive claim, how
  many trials would decide it.

  Three rules turn a test's verdict into the claim's (``Results.claims_frame``):

  - **preconditions**: a claim names the claims (``requires``) that make it a test, e.g. "the
    victims reach 80% clean accuracy" or "without the defence the backdoor is learned". Where one
    of them does not hold, the claim is **untested**, with the reason; its numbers are shown but
    decide nothing, and it counts as not reproduced;
  - **joint claims** ("the backdoor is removed *and* clean accuracy is kept", ``Results.joint``)
    hold only where every part holds (an intersection-union test: its p is the largest of the
    parts'); they fail where a part fails;
  - **multiplicity**: a headline claim holds only where its Holm-adjusted p over the notebook's
    tested headline claims is below 0.05 (else it is inconclusive, and ``reason`` says so).

  Preconditions and parts of joint claims are supporting claims, so that the headline family's
  adjustment cannot change what they decide.

``poisonrepro.summary`` gathers every notebook's claims (``gather_claims``) into ``summary.csv`` and
a readable ``REPORT.md`` beside them, optionally compared with the committed ``cpu`` run.
"""
from __future__ import annotations

import io
import math
import re
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
from scipy.stats import spearmanr

from . import paths, reference
from .cache import atomic_write
from .stats import ALPHA, Decision, holm, wilson  # noqa: F401  (wilson: the intervals of the tables and figures)

CLAIM_COLUMNS = ["id", "role", "artifact", "claim", "setting", "metric", "paper", "source", "measured", "n",
                 "ci_low", "ci_high", "expectation", "test", "p", "p_holm", "verdict", "reason", "requires",
                 "n_needed"]
#: the columns of the results contract before claim ids, roles and preconditions (read, upgraded)
CLAIM_COLUMNS_V1 = ["artifact", "claim", "setting", "metric", "paper", "source", "measured", "n",
                    "ci_low", "ci_high", "expectation", "test", "p", "verdict", "n_needed"]
ROLES = ("headline", "supporting")
#: the role of a claim recorded under the contract before roles existed
UNMARKED = "unmarked"


def slug(text: str) -> str:
    """A claim id's part: lower case, words joined by hyphens (``"ASR with ABL" -> "asr-with-abl"``)."""
    return re.sub(r"[^a-z0-9.+]+", "-", str(text).lower()).strip("-")


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


#: how a table's machine-readable column (and index) names read in a notebook (``readable_table``);
#: names not here get ``_label``'s generic rewording
COLUMN_LABELS = {
    "success_rate": "success rate", "ci_low": "95% CI low", "ci_high": "95% CI high",
    "beta_01": "beta (pixels on the 0-1 scale)", "beta_multiplier": "beta (x the paper's)",
    "budget_255": "L-inf budget (/255)", "max_linf_255": "largest L-inf (/255)",
    "median_linf_255": "median L-inf (/255)", "median_l2_255": "median L2 (/255)",
    "median_linf_255_from_base": "median L-inf from the base (/255)",
    "median_linf_255_beyond_watermark": "median L-inf beyond the watermark (/255)",
    "linf_box_255": "L-inf box (/255)", "share_within_gate": "share within the clean-label gate",
    "median_feature_dist": "median feature distance to the target",
    "median_base_feature_dist": "median base-target feature distance",
    "median_wrong_confidence": "median confidence in the wrong class",
    "mean_control_wrong_confidence": "mean control confidence in the wrong class",
    "mean_clean_accuracy_drop": "mean clean accuracy drop", "mean_clean_accuracy": "mean clean accuracy",
    "clean_label_success_rate": "clean-label success rate", "test_accuracy": "test accuracy",
    "clean_test_error": "clean test error", "attacked_test_error": "attacked test error",
    "test_error_most_attack_points": "test error, most attack points", "mean_iterations": "mean iterations",
    "attacked_max": "attacked (max)", "attacked_min": "attacked (min)", "poison_fraction": "poisoned share",
    "poisons_flagged_by_defender": "poisons the defender flags", "clean_with_detector": "clean, with detector",
    "attacked_with_detector": "attacked, with detector", "clean_8_as_3": "clean: 8 classified as 3",
    "attacked_8_as_3": "attacked: 8 classified as 3", "accuracy_drop": "accuracy drop",
    "accuracy_drop_sd": "accuracy drop (SD)", "amortised_seconds_per_poison": "seconds per poison (amortised)",
    "seconds_per_poison": "seconds per poison", "training_seconds": "training (s)",
    "victim_accuracy": "victim accuracy", "generator_seed": "generator seed", "genuine_spread": "genuine spread",
    "poison_spread": "poison spread", "poisons_flagged": "poisons flagged", "mean_D_score": "mean discriminator score",
    "early_auroc": "early AUROC", "bad_removed_recall": "bad samples removed (recall)",
    "removed_bad_precision": "removed samples that are bad (precision)", "truly_bad": "truly bad",
    "attack_success_rate": "attack success rate", "max_abs_actual": "largest |actual|",
    "max_abs_predicted": "largest |predicted|", "pearson": "Pearson r", "spearman": "Spearman rho",
    "perturbed_images": "perturbed images", "control_success_rate": "control success rate",
    "prediction_stands": "prediction stands", "runner_up": "runner-up", "test_point": "test point",
    "votes_flipped": "votes flipped", "rho": "rho",
}


def _label(name) -> str:
    """A column or index name in words: ``COLUMN_LABELS``, else underscores as spaces with the
    usual abbreviations spelled (``clean_ci_low`` -> ``clean 95% CI low``, ``x_255`` -> ``x (/255)``)."""
    if not isinstance(name, str):
        return name
    if name in COLUMN_LABELS:
        return COLUMN_LABELS[name]
    text = re.sub(r"(?<![a-z0-9])ci_(low|high)(?![a-z0-9])", r"95% CI \1", re.sub(r"_255(?=_|$)", " (/255)", name))
    return re.sub(r"(?<![a-z])linf(?![a-z])", "L-inf", text.replace("_", " "))


def _cell(x) -> str:
    if isinstance(x, (bool, np.bool_)):
        return "yes" if x else "no"
    if isinstance(x, (int, float, np.integer, np.floating)):
        return fmt(float(x)) if isinstance(x, (float, np.floating)) else fmt(int(x))
    if x is None or (not isinstance(x, str) and pd.api.types.is_scalar(x) and pd.isna(x)):
        return ""
    return str(x)


def readable_table(df: pd.DataFrame) -> pd.DataFrame:
    """``df`` as a reader sees it in a notebook: column and index names in words (``_label``),
    numbers at three significant digits without scientific notation (``fmt``), empty for NaN,
    booleans as yes/no. The saved CSV (``save_table``) keeps the machine-readable original."""
    out = df.copy()
    out.columns = (pd.MultiIndex.from_tuples([tuple(_label(n) for n in c) for c in df.columns], names=df.columns.names)
                   if isinstance(df.columns, pd.MultiIndex) else [_label(c) for c in df.columns])
    out = out.astype(object)
    for j in range(out.shape[1]):
        out.iloc[:, j] = [_cell(x) for x in out.iloc[:, j]]
    if isinstance(out.index, pd.MultiIndex):
        out.index = pd.MultiIndex.from_arrays([[_cell(x) for x in out.index.get_level_values(i)]
                                               for i in range(out.index.nlevels)],
                                              names=[_label(n) for n in out.index.names])
    else:
        out.index = pd.Index([_cell(x) for x in out.index], name=_label(out.index.name))
    return out


def register_readable_tables(shell=None) -> bool:
    """Show every DataFrame of an IPython session as ``readable_table`` (HTML and text); the
    objects themselves are unchanged. False outside IPython."""
    if shell is None:
        import sys
        ipython = sys.modules.get("IPython")
        shell = ipython.get_ipython() if ipython is not None else None
    if shell is None:
        return False
    formatters = shell.display_formatter.formatters
    formatters["text/html"].for_type(pd.DataFrame, lambda df: readable_table(df).to_html())
    formatters["text/plain"].for_type(pd.DataFrame, lambda df, p, cycle: p.text(readable_table(df).to_string()))
    return True


#: the resolution of the saved figures
FIGURE_DPI = 110
#: the width of the book's column, in px: a wider figure is shown scaled down to it
COLUMN_PX = 672
#: the smallest height of a text, in px at the column's width, that reads comfortably
MIN_TEXT_PX = 9.0


def png_width(data: bytes) -> int:
    """The width in pixels of a PNG (its IHDR chunk)."""
    if data[:8] != b"\x89PNG\r\n\x1a\n":
        raise ValueError("not a PNG")
    return int.from_bytes(data[16:20], "big")


def drawn_texts(fig) -> list[tuple[str, float]]:
    """Every text ``fig`` draws, as (text, size in points): the renderer's own calls, so hidden
    axes, tick labels outside the view and empty strings never count."""
    from matplotlib.backends.backend_agg import RendererAgg

    class Recorder(RendererAgg):
        def draw_text(self, gc, x, y, s, prop, angle, ismath=False, mtext=None):
            if str(s).strip():
                seen.append((str(s), float(prop.get_size_in_points())))

        def draw_tex(self, gc, x, y, s, prop, angle, *, mtext=None):
            self.draw_text(gc, x, y, s, prop, angle)

    seen: list[tuple[str, float]] = []
    width, height = fig.get_size_inches() * fig.dpi
    fig.draw(Recorder(int(width), int(height), fig.dpi))
    return seen


def check_legible(fig, width_px: int, dpi: float, artifact: str) -> None:
    """Raise where a text of ``fig``, saved ``width_px`` wide at ``dpi``, would be under
    ``MIN_TEXT_PX`` tall once the book scales the figure down to its ``COLUMN_PX`` column (the
    width of a figure in inches, not its dpi, decides: px at display = points x 672 / 72 /
    width in inches)."""
    scale = min(1.0, COLUMN_PX / width_px)
    texts = drawn_texts(fig)
    if not texts:
        return
    text, size = min(texts, key=lambda t: t[1])
    shown = size * dpi / 72 * scale
    if shown < MIN_TEXT_PX:
        width_in = width_px / dpi
        max_width_in = size * COLUMN_PX / 72 / MIN_TEXT_PX
        min_size = MIN_TEXT_PX * 72 / COLUMN_PX * width_in
        raise ValueError(
            f"figure {artifact}: the text {text[:60]!r} ({size:g} pt) would be {shown:.1f} px tall in the book's "
            f"{COLUMN_PX} px column (minimum {MIN_TEXT_PX:g} px): the saved figure is {width_in:.1f} in wide; "
            f"make it at most {max_width_in:.1f} in wide at this font size, or its smallest font at least "
            f"{min_size:.1f} pt (more rows instead of a wide grid)")


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
        """Save ``fig`` as ``<artifact>.png``; raises ``ValueError`` (and writes nothing) where a
        text of it would be illegible in the book's column (``check_legible``)."""
        buf = io.BytesIO()
        fig.savefig(buf, format="png", dpi=FIGURE_DPI, bbox_inches="tight", metadata={"Software": None})
        check_legible(fig, png_width(buf.getvalue()), FIGURE_DPI, artifact)
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
    def claim(self, artifact: str, claim: str, metric: str, decision: Decision, *, role: str,
              setting: str = "", paper_key: str | None = None, key: str = "", requires=(),
              unit: str = "fraction") -> dict:
        """Record one claim, decided by ``decision`` (a test of ``poisonrepro.stats`` run on
        this run's per-trial data).

        ``role``: ``"headline"`` or ``"supporting"``. ``paper_key`` looks the paper's number up in
        the reference data; its citation goes into ``source``. ``unit``: the unit of ``measured``
        (one of ``reference.UNITS``; a rate, accuracy or share is a ``fraction``): the paper's
        number must be in the same unit, else this raises (a count such as a radius belongs in
        ``setting``). ``key`` tells apart claims of one artifact and metric (an attack, a k); the
        claim's id is ``<artifact>:<metric>[:<key>]``, unique in the run. ``requires``: the claims
        (rows returned by ``claim``) whose holding makes this one a test; where one does not
        hold, this claim is ``untested``."""
        if not isinstance(decision, Decision):
            raise TypeError(f"{artifact} {claim!r}: pass a poisonrepro.stats Decision, not {type(decision).__name__}")
        if unit not in reference.UNITS:
            raise ValueError(f"{artifact} {claim!r}: unit={unit!r}; must be one of {', '.join(reference.UNITS)}")
        paper_value, source = math.nan, ""
        if paper_key is not None:
            ref = reference.get(self.paper, paper_key)
            if ref.unit != unit:  # the paper column sits beside measured: one unit for both
                raise ValueError(f"{artifact} {claim!r}: paper_key {paper_key!r} (poisonrepro/reference/{self.paper}.csv) "
                                 f"is in unit {ref.unit!r}, but the claim's metric {metric!r} is in {unit!r}; "
                                 "pass a reference value in the claim's unit (or put a count in setting)")
            paper_value, source = ref.value, ref.citation
        d, requires = decision, list(requires)
        row = {"id": self._new_id(artifact, metric, key), "role": self._role(role, artifact, claim),
               "artifact": artifact, "claim": claim, "setting": setting, "metric": metric,
               "paper": paper_value, "source": source, "measured": d.measured, "n": d.n,
               "ci_low": d.ci_low, "ci_high": d.ci_high, "expectation": d.expectation, "test": d.test,
               "p": d.p, "p_holm": math.nan, "verdict": d.verdict, "reason": "",
               "requires": " ".join(self._dependencies(requires, "requires")), "n_needed": d.n_needed}
        blocked = self._blocking(requires)
        if blocked:
            row.update(verdict="untested", n_needed=math.nan, reason="precondition not met: " + "; ".join(blocked))
        self.claims.append(row)
        return row

    def joint(self, artifact: str, claim: str, parts, *, role: str, setting: str = "", key: str = "",
              metric: str = "joint", paper_key: str | None = None) -> dict:
        """Record a joint claim ("the backdoor is removed and clean accuracy is kept"): it holds
        only where every part (rows returned by ``claim``, supporting) holds, fails where one
        fails, and is untested where one is; else inconclusive. Its p is the largest of the
        parts' (the intersection-union test, valid at the parts' level)."""
        parts = list(parts)
        if len(parts) < 2:
            raise ValueError(f"{artifact} {claim!r}: a joint claim needs at least two parts (got {len(parts)})")
        ids = self._dependencies(parts, "parts")
        verdicts = [p["verdict"] for p in parts]
        verdict = ("untested" if "untested" in verdicts else "fails" if "fails" in verdicts
                   else "holds" if all(v == "holds" for v in verdicts) else "inconclusive")
        ps = [p["p"] for p in parts]
        paper_value, source = math.nan, ""
        if paper_key is not None:
            ref = reference.get(self.paper, paper_key)
            paper_value, source = ref.value, ref.citation
        row = {"id": self._new_id(artifact, metric, key), "role": self._role(role, artifact, claim),
               "artifact": artifact, "claim": claim, "setting": setting, "metric": metric,
               "paper": paper_value, "source": source, "measured": math.nan, "n": min(p["n"] for p in parts),
               "ci_low": math.nan, "ci_high": math.nan, "expectation": "all parts hold",
               "test": "joint: every part must hold (intersection-union; p = the largest part's p)",
               "p": math.nan if any(pd.isna(x) for x in ps) else max(ps), "p_holm": math.nan,
               "verdict": verdict, "reason": "parts: " + "; ".join(f"{i} {v}" for i, v in zip(ids, verdicts)),
               "requires": " ".join(ids), "n_needed": math.nan}
        self.claims.append(row)
        return row

    def _role(self, role: str, artifact: str, claim: str) -> str:
        if role not in ROLES:
            raise ValueError(f"{artifact} {claim!r}: role={role!r}; must be one of {ROLES}")
        return role

    def _new_id(self, artifact: str, metric: str, key: str) -> str:
        cid = ":".join(part for part in (artifact, slug(metric), slug(key)) if part)
        if any(c["id"] == cid for c in self.claims):
            raise ValueError(f"claim id {cid!r} is already taken in this run: give the claim a key= that tells it "
                             "apart (an attack, a k, an architecture)")
        return cid

    def _dependencies(self, rows, what: str) -> list[str]:
        """The ids of ``rows``: claims of this run, supporting (a headline claim's verdict can still
        change with the family's Holm adjustment, so nothing may depend on it)."""
        ids = []
        for r in rows:
            if not isinstance(r, dict) or not any(c is r for c in self.claims):
                raise ValueError(f"{what}: pass rows returned by this run's claim() (got {r!r:.80})")
            if r["role"] != "supporting":
                raise ValueError(f"{what}: {r['id']} is a {r['role']} claim; preconditions and parts of joint "
                                 "claims must be supporting claims")
            ids.append(r["id"])
        return ids

    @staticmethod
    def _blocking(requires) -> list[str]:
        return [f"{r['id']} {r['verdict']} ({r['metric']} {fmt(r['measured'])}, needs {r['expectation']})"
                for r in requires if r["verdict"] != "holds"]

    def claims_frame(self) -> pd.DataFrame:
        """The claims with the headline family's Holm adjustment applied (``adjust_headline``)."""
        return adjust_headline(pd.DataFrame(self.claims, columns=CLAIM_COLUMNS))

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


def adjust_headline(df: pd.DataFrame) -> pd.DataFrame:
    """``p_holm``: Holm's adjustment of the p-values of the tested headline claims (those not
    ``untested``, with a p); a headline claim that holds on its own but whose adjusted p is not
    below 0.05 becomes inconclusive, and ``reason`` says so."""
    df = df.copy()
    family = (df.role == "headline") & (df.verdict != "untested") & df.p.notna()
    if not family.any():
        return df
    df["p_holm"] = df["p_holm"].astype(float)
    df.loc[family, "p_holm"] = holm(df.loc[family, "p"].to_numpy(float))
    demoted = family & (df.verdict == "holds") & (df.p_holm >= ALPHA)
    m = int(family.sum())
    for i in df.index[demoted]:
        df.at[i, "verdict"] = "inconclusive"
        df.at[i, "reason"] = (f"holds alone (p {fmt_p(df.at[i, 'p'])}), but not after Holm's adjustment over the "
                              f"{m} tested headline claims (adjusted p {fmt_p(df.at[i, 'p_holm'])})")
    return df


def upgrade(df: pd.DataFrame) -> pd.DataFrame:
    """A ``claims.csv`` written under the contract before ids and roles (``CLAIM_COLUMNS_V1``) in
    today's columns: ids from the artifact and metric (with the occurrence where repeated), role
    ``unmarked``, no preconditions. Today's contract passes unchanged; any other raises."""
    if set(df.columns) == set(CLAIM_COLUMNS):
        return df[CLAIM_COLUMNS]
    if set(df.columns) != set(CLAIM_COLUMNS_V1):
        raise ValueError(f"claims with columns {list(df.columns)} follow no known results contract")
    df = df.copy()
    base = df.artifact.astype(str) + ":" + df.metric.map(slug)
    nth = base.groupby(base).cumcount()
    df["id"] = [b if k == 0 else f"{b}:{k + 1}" for b, k in zip(base, nth)]
    df["role"], df["p_holm"], df["reason"], df["requires"] = UNMARKED, math.nan, "", ""
    return df[CLAIM_COLUMNS]


def _bounds(lo, hi) -> str:
    return "" if pd.isna(lo) else f"[{fmt(lo)}, {fmt(hi)}]"


def _needed(row) -> str:
    if row.verdict != "inconclusive" or pd.isna(row.n_needed):
        return ""
    return "none at this effect" if math.isinf(row.n_needed) else f"~{fmt(row.n_needed)}"


def readable(df: pd.DataFrame) -> pd.DataFrame:
    """Claims as a reader sees them, the claim and its verdict first: numbers at sensible
    precision, no NaN."""
    df = upgrade(df.drop(columns=[c for c in ("notebook",) if c in df.columns]))
    return pd.DataFrame({
        "role": df.role, "claim": df.claim, "verdict": df.verdict, "why": df.reason.fillna(""),
        "measured": df.measured.map(fmt), "paper": df.paper.map(fmt), "check": df.expectation,
        "95% bounds": [_bounds(lo, hi) for lo, hi in zip(df.ci_low, df.ci_high)], "n": df.n,
        "p": df.p.map(fmt_p), "p (Holm)": df.p_holm.map(fmt_p), "test": df.test,
        "trials to decide": [_needed(r) for r in df.itertuples()], "metric": df.metric,
        "setting": df.setting.fillna(""), "artifact": df.artifact, "id": df.id}).reset_index(drop=True)


def tally(verdicts) -> str:
    v = list(verdicts)
    h, f, i, u = (sum(x == k for x in v) for k in ("holds", "fails", "inconclusive", "untested"))
    return (f"{h} of {len(v)} claims hold, {f} fail, {i} inconclusive, {u} untested "
            f"(not reproduced: {f + i + u})")


def tally_by_role(df: pd.DataFrame) -> str:
    """Headline claims counted first, then supporting ones (and claims of runs made before roles)."""
    df = upgrade(df.drop(columns=[c for c in ("notebook",) if c in df.columns]))
    parts = [f"{role}: {tally(df.verdict[df.role == role])}" for role in (*ROLES, UNMARKED)
             if (df.role == role).any()]
    return "; ".join(parts) if parts else tally([])


def gather_claims(root: Path, notebooks: list[str] | None = None) -> tuple[pd.DataFrame, list[str]]:
    """Every notebook's ``claims.csv`` below ``root`` as one frame (a ``notebook`` column first),
    and the notebooks left out because their claims follow an older results contract."""
    frames, stale = [], []
    for claims in sorted(Path(root).glob("*/claims.csv")):
        if notebooks and claims.parent.name not in notebooks:
            continue
        try:
            df = upgrade(pd.read_csv(claims, keep_default_na=True))
        except ValueError:  # an unknown results contract: left out, and said so
            stale.append(claims.parent.name)
            continue
        df.insert(0, "notebook", claims.parent.name)
        frames.append(df)
    summary = pd.concat(frames, ignore_index=True) if frames else pd.DataFrame(columns=["notebook"] + CLAIM_COLUMNS)
    return summary, stale


def _upgrade_summary(summary: pd.DataFrame) -> pd.DataFrame:
    """A ``summary.csv`` (a ``notebook`` column, then claims) of any known contract in today's columns."""
    parts = [upgrade(part.drop(columns="notebook")).assign(notebook=nb)
             for nb, part in summary.groupby("notebook", sort=False)]
    if not parts:
        return pd.DataFrame(columns=["notebook"] + CLAIM_COLUMNS)
    return pd.concat(parts, ignore_index=True)[["notebook"] + CLAIM_COLUMNS]
