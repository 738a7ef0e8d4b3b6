"""Notebook 00: the index of papers and the taxonomy tables (L-TAX), from the registry."""
from __future__ import annotations

import pandas as pd

from . import catalog, registry


def paper_index() -> pd.DataFrame:
    rows = [{"notebook": stem, "paper": title, "link": link, "artifacts": ", ".join(ids),
             "status": catalog.status(stem)} for stem, title, link, ids in catalog.PAPERS]
    return pd.DataFrame(rows).set_index("notebook")


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


def barreno_attack_table() -> pd.DataFrame:
    """Barreno et al.'s attack model (influence x specificity by violation), each cell the
    registered attacks that fall in it."""
    tax = attack_taxonomy()
    attacks = tax[tax.kind == "attack"]
    index = pd.MultiIndex.from_product([registry.ALLOWED["influence"], registry.ALLOWED["specificity"]],
                                       names=["influence", "specificity"])
    out = pd.DataFrame("", index=index, columns=list(registry.ALLOWED["violation"]))
    for name, r in attacks.iterrows():
        cell = out.loc[(r.influence, r.specificity), r.violation]
        out.loc[(r.influence, r.specificity), r.violation] = f"{cell}, {name}" if cell else name
    return out


def barreno_defense_table() -> pd.DataFrame:
    """Barreno et al.'s defence model filled with the registered defences."""
    tax = attack_taxonomy()
    index = pd.MultiIndex.from_product([registry.ALLOWED["influence"], registry.ALLOWED["specificity"]],
                                       names=["influence", "specificity"])
    out = pd.DataFrame("", index=index, columns=list(registry.ALLOWED["violation"]))
    for name, m in registry.load_all().items():
        for influence, violation, specificity in m.defends:
            cell = out.loc[(influence, specificity), violation]
            out.loc[(influence, specificity), violation] = f"{cell}, {name}" if cell else name
    del tax
    return out
