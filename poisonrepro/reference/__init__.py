"""Paper-reported numbers, one CSV per paper, every number with its locator.

Columns: ``key, value, unit, paper, locator, note``. These numbers are only ever shown
*beside* a measured value (``poisonrepro.results``), never instead of one. ``unit`` is one of
``UNITS``; what the value is a share of (test images, triggered images) goes in the note.
A value the paper does not print (a mean or a difference of its cells) says ``derived`` in its
locator and its note.
"""
from __future__ import annotations

import csv
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

HERE = Path(__file__).resolve().parent
#: the units a reference value may have: a share in [0, 1], a percentage, a count (of samples,
#: images, poisons), a pixel value or budget on the 0-255 scale
UNITS = ("fraction", "percent", "count", "pixels_255")


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
        if r["unit"] not in UNITS:
            raise ValueError(f"{path.name}: {r['key']} has unit {r['unit']!r}; allowed: {', '.join(UNITS)}")
        out[r["key"]] = Reference(r["key"], float(r["value"]), r["unit"], r["paper"], r["locator"], r["note"])
    return out


def get(paper: str, key: str) -> Reference:
    refs = load(paper)
    if key not in refs:
        raise KeyError(f"{paper}: no reference value {key!r}; have: {', '.join(refs)}")
    return refs[key]
