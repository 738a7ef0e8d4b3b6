"""Notebook 00: the index of papers and the taxonomy tables (L-TAX), from the registry."""
from __future__ import annotations

import pandas as pd

from . import catalog, registry


def paper_index() -> pd.DataFrame:
    rows = [{"notebook": stem, "paper": title, "link": link, "artifacts": ", ".join(ids),
             "status": catalog.status(stem)} for stem, title, link, ids in catalog.PAPERS]
    return pd.DataFrame(rows).set_index("notebook")


def paper_index_markdown():
    """The index as a Markdown table, shown in full (no truncated titles or artifact lists): each
    notebook links to its page (``NN_x.ipynb``: the notebook in Jupyter, its page in the book),
    each title to the paper."""
    from IPython.display import Markdown
    lines = ["| notebook | paper | artifacts | status |", "|---|---|---|---|"]
    for stem, title, link, ids in catalog.PAPERS:
        name = f"[{stem}]({stem}.ipynb)" if catalog.status(stem) == "done" else stem
        paper = f"[{title}]({link})" if link else title
        lines.append(f"| {name} | {paper} | {', '.join(ids)} | {catalog.status(stem)} |")
    return Markdown("\n".join(lines))


def attack_taxonomy() -> pd.DataFrame:
    """L-TAX: every registered method with the taxonomy it declares."""
    methods = registry.load_all()
    rows = []
    for m in sorted(methods.values(), key=lambda m: (m.kind, m.name)):
        row = {"method": m.name, "kind": m.kind, "paper": m.paper, "notebook": m.notebook}
        row.update({k: m.taxonomy.get(k, "") for k in registry.ALLOWED})
        row["defends"] = "; ".join("/".join(c) for c in m.defends)
        rows.append(row)
    return pd.DataFrame(rows).set_index("method")


def _barreno_table(cells) -> pd.DataFrame:
    """Barreno et al.'s grid (influence x specificity by violation), each cell listing the
    method names that ``cells`` yields for it as (influence, violation, specificity, name)."""
    index = pd.MultiIndex.from_product([registry.ALLOWED["influence"], registry.ALLOWED["specificity"]],
                                       names=["influence", "specificity"])
    out = pd.DataFrame("", index=index, columns=list(registry.ALLOWED["violation"]))
    for influence, violation, specificity, name in cells:
        cell = out.loc[(influence, specificity), violation]
        out.loc[(influence, specificity), violation] = f"{cell}, {name}" if cell else name
    return out


def barreno_attack_table() -> pd.DataFrame:
    """Barreno et al.'s attack model filled with the registered attacks."""
    attacks = sorted((m for m in registry.load_all().values() if m.kind == "attack"), key=lambda m: m.name)
    return _barreno_table((m.taxonomy["influence"], m.taxonomy["violation"], m.taxonomy["specificity"], m.name)
                          for m in attacks)


def barreno_defense_table() -> pd.DataFrame:
    """Barreno et al.'s defence model filled with the registered defences."""
    return _barreno_table((influence, violation, specificity, name)
                          for name, m in registry.load_all().items() for influence, violation, specificity in m.defends)
