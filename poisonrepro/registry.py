"""The method registry: every attack and defence registers here with its taxonomy.

Two taxonomies are declared per method, both generated into the overview notebook (L-TAX):

- the attack taxonomy of the lecture deck "Data Poisoning: Attacks and Defenses" (Xingjun Ma, Fudan
  University; slide "A Recap of the Attack Taxonomy"):
  ``timing`` (poisoning | evasion), ``goal`` (targeted | untargeted),
  ``knowledge`` (white-box | gray-box | black-box), ``universality`` (individual | universal);
- Barreno et al. 2006 ("Can machine learning be secure?"): ``influence``
  (causative | exploratory), ``violation`` (integrity | availability), ``specificity``
  (targeted | indiscriminate). A defence lists the cells of that table it addresses.
"""
from __future__ import annotations

import importlib
from dataclasses import dataclass, field

ALLOWED = {
    "timing": ("poisoning", "evasion"),
    "goal": ("targeted", "untargeted"),
    "knowledge": ("white-box", "gray-box", "black-box"),
    "universality": ("individual", "universal"),
    "influence": ("causative", "exploratory"),
    "violation": ("integrity", "availability"),
    "specificity": ("targeted", "indiscriminate"),
}


@dataclass(frozen=True)
class Method:
    name: str
    kind: str  # "attack" | "defense"
    paper: str
    notebook: str
    summary: str
    function: object = field(repr=False, compare=False)
    taxonomy: dict = field(default_factory=dict)
    defends: tuple = ()  # for defences: ((influence, violation, specificity), ...)


REGISTRY: dict[str, Method] = {}


def _check(name, taxonomy):
    for key, value in taxonomy.items():
        if key not in ALLOWED:
            raise ValueError(f"{name}: unknown taxonomy key {key!r}; allowed: {', '.join(ALLOWED)}")
        if value not in ALLOWED[key]:
            raise ValueError(f"{name}: {key}={value!r}; allowed: {', '.join(ALLOWED[key])}")


def register_attack(name, *, paper, notebook, summary, **taxonomy):
    """Decorator: register an attack with its full taxonomy (all seven keys)."""
    missing = set(ALLOWED) - set(taxonomy)
    if missing:
        raise ValueError(f"{name}: taxonomy misses {', '.join(sorted(missing))}")
    _check(name, taxonomy)

    def deco(fn):
        REGISTRY[name] = Method(name, "attack", paper, notebook, summary, fn, dict(taxonomy))
        return fn
    return deco


def register_defense(name, *, paper, notebook, summary, defends):
    """Decorator: register a defence with the Barreno cells (influence, violation,
    specificity) that it addresses."""
    for cell in defends:
        _check(name, dict(zip(("influence", "violation", "specificity"), cell)))

    def deco(fn):
        REGISTRY[name] = Method(name, "defense", paper, notebook, summary, fn, {}, tuple(defends))
        return fn
    return deco


def get(name: str) -> Method:
    load_all()
    if name not in REGISTRY:
        raise KeyError(f"unknown method {name!r}; registered: {', '.join(sorted(REGISTRY))}")
    return REGISTRY[name]


def load_all() -> dict[str, Method]:
    """Import every method module so that all registrations have run."""
    # imported by name, not by an import statement: every attack imports this module to register
    # itself, and cache.code_hash follows import statements, so a static import here would put
    # every attack into the code hash of every stage (an edit to one attack would recompute all)
    for package in ("attacks", "defenses"):
        importlib.import_module(f"{__package__}.{package}")
    return REGISTRY
