"""Paper-reported numbers, one CSV per paper, every number with its locator.

Columns: ``key, value, unit, paper, locator, note``. These numbers are only ever shown
*beside* a measured value (``poisonrepro.results``), never instead of one.
"""
from __future__ import annotations

import csv
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

HERE = Path(__file__).resolve().parent


@dataclass(frozen=True)
class Reference:
    key: str
    value: float
    unit: str
    paper: str
    locator: str
    note: str

    @property
    def citation(self) -> str:
        return f"{self.paper}, {self.locator}"


@lru_cache(maxsize=None)
def load(paper: str) -> dict[str, Reference]:
    path = HERE / f"{paper}.csv"
    if not path.exists():
        raise KeyError(f"no reference data for {paper!r}; have: "
                       + ", ".join(sorted(p.stem for p in HERE.glob('*.csv'))))
    with open(path, newline="") as fh:
        rows = [r for r in csv.DictReader(fh) if r["key"] and not r["key"].startswith("#")]
    out = {}
    for r in rows:
        if not r["locator"].strip():
            raise ValueError(f"{path.name}: {r['key']} has no locator")
        out[r["key"]] = Reference(r["key"], float(r["value"]), r["unit"], r["paper"], r["locator"], r["note"])
    return out


def get(paper: str, key: str) -> Reference:
    refs = load(paper)
    if key not in refs:
        raise KeyError(f"{paper}: no reference value {key!r}; have: {', '.join(refs)}")
    return refs[key]
