"""The packaging metadata agrees with itself and with the code:

- environment.yml (conda) pins the same lower bounds as pyproject.toml, for every package;
- every lower bound admits the newest API the code uses from that package (``API_MINIMUMS``:
  each entry is checked to be really used, so that the table cannot go stale silently);
- LICENSE is the MIT license that pyproject declares, and CITATION.cff agrees with pyproject.
"""
from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml
from packaging.requirements import Requirement
from packaging.specifiers import SpecifierSet
from packaging.utils import canonicalize_name
from packaging.version import Version

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10
    tomllib = pytest.importorskip("tomli")

REPO = Path(__file__).resolve().parents[1]
PYPROJECT = REPO / "pyproject.toml"

#: pyproject requirements whose conda-forge packages are named differently: (name, extras) -> conda names
CONDA_NAMES = {("dask", frozenset({"distributed"})): ("dask", "distributed")}

#: (package as pyproject names it, minimum version, regex of the use, where it is used, the API).
#: Where: "code" (poisonrepro/ and tests/, Python files) or "pyproject" (pyproject.toml itself).
API_MINIMUMS = [
    ("scipy", "1.12", r"\bcg\([^\n]*\brtol=", "code",
     "scipy.sparse.linalg.cg(rtol=...): rtol replaced tol in 1.12"),
    ("scipy", "1.8", r"\bpermutation_test\(", "code", "scipy.stats.permutation_test"),
    ("scipy", "1.7", r"\bbinomtest\(", "code", "scipy.stats.binomtest"),
    ("setuptools", "77", r'(?m)^license\s*=\s*"[^"]+"', "pyproject",
     "an SPDX license expression as project.license (PEP 639)"),
    ("dask", "2025.4", r"\bscheduler_info\(n_workers=", "code",
     "distributed's Client.scheduler_info(n_workers=...)"),
    ("matplotlib", "3.4", r"\.supxlabel\(", "code", "Figure.supxlabel"),
    ("matplotlib", "3.4", r"\.subfigures\(", "code", "Figure.subfigures"),
    ("matplotlib", "3.5", r"\.set_[xy]ticks\([^,]+,\s*(?!\w+\s*=)\S", "code",
     "Axes.set_xticks(ticks, labels) (the labels argument)"),
    ("seaborn", "0.11", r"\bsns\.histplot\(", "code", "seaborn.histplot"),
    ("seaborn", "0.12", r"\bsns\.barplot\([^)]*\berrorbar=", "code", "seaborn.barplot(errorbar=...)"),
    ("statsmodels", "0.12", r"\btest_proportions_2indep\b", "code",
     "statsmodels.stats.proportion.test_proportions_2indep"),
    ("statsmodels", "0.12", r"\bconfint_proportions_2indep\b", "code",
     "statsmodels.stats.proportion.confint_proportions_2indep"),
    ("torch", "2.0", r"\bfrom torch\.func import\b", "code", "torch.func (functional_call, vmap, grad)"),
]


# ----------------------------------------------------------------------------- helpers
def load_pyproject() -> dict:
    with PYPROJECT.open("rb") as f:
        return tomllib.load(f)


def pyproject_requirements(pyproject: dict) -> list[Requirement]:
    """Every requirement: runtime, every optional extra, and the build system's."""
    project = pyproject.get("project", {})
    reqs = list(project.get("dependencies", []))
    for extra in project.get("optional-dependencies", {}).values():
        reqs += extra
    reqs += pyproject.get("build-system", {}).get("requires", [])
    return [Requirement(r) for r in reqs]


def lower_bound(spec: SpecifierSet) -> tuple[Version, bool] | None:
    """The lowest version a specifier admits, from its ``>=``/``==``/``~=`` clause, and whether it
    is an exact pin; None when it has no lower bound (``>`` alone is not counted either)."""
    bounds = [(Version(s.version), s.operator in ("==", "===")) for s in spec
              if s.operator in (">=", "==", "===", "~=") and "*" not in s.version]
    return max(bounds, key=lambda b: b[0]) if bounds else None


def conda_spec(entry: str) -> tuple[str, SpecifierSet | None]:
    """``numpy>=1.26`` -> ("numpy", >=1.26); a conda-only spec (``python=3.11``) gives None."""
    m = re.fullmatch(r"\s*([A-Za-z0-9][A-Za-z0-9._-]*)\s*(.*?)\s*", entry)
    assert m, f"unreadable conda spec {entry!r}"
    name, rest = m.groups()
    try:
        return canonicalize_name(name), SpecifierSet(rest.replace(" ", ""))
    except Exception:
        return canonicalize_name(name), None


def environment_specs(env: dict) -> dict[str, SpecifierSet | None]:
    """name -> specifier of every conda and pip entry of environment.yml (not ``-e .``)."""
    specs: dict[str, SpecifierSet | None] = {}
    for dep in env["dependencies"]:
        if isinstance(dep, dict):
            for entry in dep.get("pip", []):
                if entry.strip().startswith("-"):
                    continue
                req = Requirement(entry)
                specs[canonicalize_name(req.name)] = req.specifier
        else:
            name, spec = conda_spec(dep)
            specs[name] = spec
    return specs


def conda_names(req: Requirement) -> tuple[str, ...]:
    names = CONDA_NAMES.get((canonicalize_name(req.name), frozenset(req.extras)))
    return tuple(canonicalize_name(n) for n in names) if names else (canonicalize_name(req.name),)


def too_low(pyproject: dict, table=API_MINIMUMS) -> list[str]:
    """The table's entries that pyproject's bounds do not admit: a requirement of the package
    with no lower bound or one below the API's minimum, or the package not required at all."""
    reqs = pyproject_requirements(pyproject)
    problems = []
    for package, minimum, _, _, api in table:
        mine = [r for r in reqs if canonicalize_name(r.name) == canonicalize_name(package)]
        if not mine:
            problems.append(f"{package} is not in pyproject, but the code uses {api} (needs >= {minimum})")
        for r in mine:
            bound = lower_bound(r.specifier)
            if bound is None or bound[0] < Version(minimum):
                problems.append(f"{r}: {api} needs {package} >= {minimum}")
    return problems


def code_text() -> str:
    files = sorted((REPO / "poisonrepro").rglob("*.py")) + sorted((REPO / "tests").rglob("*.py"))
    return "\n".join(f.read_text() for f in files if f.resolve() != Path(__file__).resolve())


# ----------------------------------------------------------------------------- environment.yml
def test_environment_yml_has_pyprojects_lower_bounds_for_every_package():
    pyproject = load_pyproject()
    env = environment_specs(yaml.safe_load((REPO / "environment.yml").read_text()))
    project = pyproject["project"]
    reqs = [Requirement(r) for r in project["dependencies"]]
    reqs += [Requirement(r) for extra in project["optional-dependencies"].values() for r in extra]
    missing, differ = [], []
    for req in reqs:
        for name in conda_names(req):
            if name not in env:
                missing.append(f"{req} (as {name})")
                continue
            theirs = lower_bound(env[name]) if env[name] is not None else None
            if theirs != lower_bound(req.specifier):
                differ.append(f"pyproject {req} vs environment.yml {name}{env[name] or ''}")
    assert not missing, f"pyproject requirements missing from environment.yml: {missing}"
    assert not differ, f"lower bounds differ: {differ}"


def test_environment_parser_reads_conda_and_pip_entries():
    env = environment_specs({"dependencies": ["python=3.11", "pip", "scipy>=1.12", "dask >=2025.4",
                                              {"pip": ["torch==2.14.1", "mlxtend", "-e ."]}]})
    assert lower_bound(env["scipy"]) == (Version("1.12"), False)
    assert lower_bound(env["dask"]) == (Version("2025.4"), False)
    assert lower_bound(env["torch"]) == (Version("2.14.1"), True)
    assert lower_bound(env["mlxtend"]) is None and lower_bound(env["pip"]) is None
    assert env["python"] is None  # a conda-only spec: not compared
    assert conda_names(Requirement("dask[distributed]>=2025.4")) == ("dask", "distributed")


# ----------------------------------------------------------------------------- API minimums
@pytest.mark.parametrize("package, minimum, pattern, where, api", API_MINIMUMS,
                         ids=[f"{e[0]}-{e[4][:40]}" for e in API_MINIMUMS])
def test_each_api_in_the_table_is_really_used(package, minimum, pattern, where, api):
    text = PYPROJECT.read_text() if where == "pyproject" else code_text()
    assert re.search(pattern, text), f"{api} ({package} >= {minimum}) is no longer used: drop it from the table"


def test_pyproject_bounds_admit_every_api_the_code_uses():
    assert too_low(load_pyproject()) == []


def test_a_too_low_or_missing_bound_is_caught():
    table = [("scipy", "1.12", "", "code", "cg(rtol=)"), ("setuptools", "77", "", "pyproject", "SPDX license"),
             ("dask", "2025.4", "", "code", "scheduler_info(n_workers=)")]
    fake = {"build-system": {"requires": ["setuptools>=68"]},
            "project": {"dependencies": ["scipy>=1.11", "numpy"],
                        "optional-dependencies": {"test": ["dask[distributed]>=2025.4"],
                                                  "cluster": ["dask[distributed]"]}}}
    problems = too_low(fake, table)
    assert len(problems) == 3, problems
    assert any(p.startswith("scipy>=1.11") for p in problems)
    assert any(p.startswith("setuptools>=68") for p in problems)
    assert any(p.startswith("dask[distributed]:") for p in problems)  # no lower bound at all
    fake["project"]["dependencies"] = ["numpy"]
    assert any("scipy is not in pyproject" in p for p in too_low(fake, table))
    ok = {"build-system": {"requires": ["setuptools>=77"]},
          "project": {"dependencies": ["scipy==1.12.0"], "optional-dependencies": {"t": ["dask[distributed]>=2025.4"]}}}
    assert too_low(ok, table) == []


# ----------------------------------------------------------------------------- LICENSE, CITATION.cff
def test_license_is_mit_as_pyproject_declares():
    assert load_pyproject()["project"]["license"] == "MIT"
    text = (REPO / "LICENSE").read_text()
    assert text.startswith("MIT License")
    assert "Copyright (c) 2026 the poisonrepro authors" in text
    assert "Permission is hereby granted, free of charge" in text
    assert 'THE SOFTWARE IS PROVIDED "AS IS", WITHOUT WARRANTY OF ANY KIND' in text


def test_citation_cff_agrees_with_pyproject():
    project = load_pyproject()["project"]
    cff = yaml.safe_load((REPO / "CITATION.cff").read_text())
    for key in ("cff-version", "message", "title", "authors", "version", "date-released", "license", "type"):
        assert key in cff, f"CITATION.cff lacks {key}"
    assert cff["cff-version"] == "1.2.0"
    assert str(cff["version"]) == project["version"]
    assert cff["license"] == project["license"]
    assert cff["type"] == "software"
    assert cff["title"].startswith(f"{project['name']}: ")
    assert all("name" in a or "family-names" in a for a in cff["authors"])
    assert re.fullmatch(r"\d{4}-\d{2}-\d{2}", str(cff["date-released"]))
