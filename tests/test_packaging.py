"""The packaging metadata agrees with itself and with the code:

- environment.yml (conda) pins the same lower bounds as pyproject.toml, for every package;
- every lower bound admits the newest API the code uses from that package (``API_MINIMUMS``:
  each entry is checked to be really used, so that the table cannot go stale silently);
- the extras are split: a plain install and ``.[book]`` pull no test, cluster or browser tools, and
  ``.[test]`` (what the Makefile installs) holds everything ``make test`` needs;
- requirements-lock.txt pins every package exactly, satisfies pyproject's ranges, and is the
  environment the committed notebooks' colophons name;
- LICENSE is the MIT license that pyproject declares, and CITATION.cff agrees with pyproject and lists
  the reproduced papers under ``references``.
"""
from __future__ import annotations

import re
import unicodedata
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
    ("torchvision", "0.16", r"\bv2\.(?:MixUp|CutMix)\(", "code", "torchvision.transforms.v2.MixUp and CutMix"),
    ("torchvision", "0.16", r"\bv2\.ToDtype\([^)]*\bscale=", "code", "torchvision.transforms.v2.ToDtype(scale=...)"),
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
    # an extra that pulls in another (poisonrepro[book]) names this package, not a dependency
    return [r for r in map(Requirement, reqs) if canonicalize_name(r.name) != canonicalize_name(project.get("name", ""))]


def extra_requirements(project: dict, extra: str | None) -> list[Requirement]:
    """What ``pip install -e .[extra]`` asks for (``None``: a plain ``pip install -e .``): the
    runtime dependencies and the extra's, with the extras it names of this package itself
    (``poisonrepro[book]``) expanded."""
    extras = project.get("optional-dependencies", {})
    me = canonicalize_name(project["name"])
    reqs, todo, seen = [Requirement(r) for r in project.get("dependencies", [])], [extra] if extra else [], set()
    while todo:
        name = todo.pop()
        if name in seen:
            continue
        if name not in extras:
            raise KeyError(f"pyproject has no extra {name!r}; extras: {', '.join(sorted(extras))}")
        seen.add(name)
        for r in map(Requirement, extras[name]):
            if canonicalize_name(r.name) == me:
                todo += sorted(r.extras)
            else:
                reqs.append(r)
    return reqs


def names(reqs: list[Requirement]) -> set[str]:
    """Canonical package names, with dask[distributed] counted as dask and distributed."""
    out = set()
    for r in reqs:
        out |= set(conda_names(r))
    return out


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
    reqs += [r for extra in project["optional-dependencies"] for r in extra_requirements(project, extra)]
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


# ----------------------------------------------------------------------------- extras
#: what `make test` runs needs beyond the runtime: pytest and its plugins, dask for the executor's
#: tests on a local cluster, the book's Sphinx stack and playwright (tests/test_book.py)
TEST_TOOLS = {"pytest", "pytest-xdist", "nbval", "dask", "distributed", "sphinx", "myst-nb", "sphinx-book-theme",
              "playwright"}
BOOK = {"sphinx", "myst-nb", "sphinx-book-theme"}
NOT_FOR_USERS = {"pytest", "pytest-xdist", "nbval", "dask", "distributed", "dask-jobqueue", "playwright"}


def test_a_plain_install_and_the_book_extra_pull_no_test_cluster_or_browser_tools():
    project = load_pyproject()["project"]
    plain = names(extra_requirements(project, None))
    assert not plain & (NOT_FOR_USERS | BOOK), f"pip install -e . would pull {sorted(plain & (NOT_FOR_USERS | BOOK))}"
    book = names(extra_requirements(project, "book"))
    assert BOOK <= book, f"the book extra lacks {sorted(BOOK - book)}"
    assert not book & NOT_FOR_USERS, f"pip install -e .[book] would pull {sorted(book & NOT_FOR_USERS)}"
    cluster = names(extra_requirements(project, "cluster"))
    assert {"dask", "distributed", "dask-jobqueue"} <= cluster and not cluster & (BOOK | {"pytest", "playwright"})


def test_the_test_extra_holds_what_make_test_needs_and_the_makefile_installs_it():
    project = load_pyproject()["project"]
    test = names(extra_requirements(project, "test"))
    assert TEST_TOOLS <= test, f"the test extra lacks {sorted(TEST_TOOLS - test)}"
    makefile = (REPO / "Makefile").read_text()
    assert re.search(r"pip install [^\n]*-e '\.\[test\]'", makefile), "the Makefile's venv must install .[test]"


def test_extras_that_name_the_package_itself_are_expanded():
    fake = {"name": "poisonrepro", "dependencies": ["numpy>=1.26"],
            "optional-dependencies": {"book": ["sphinx>=8.0"], "cluster": ["dask[distributed]>=2025.4"],
                                      "test": ["poisonrepro[book,cluster]", "pytest>=8"],
                                      "all": ["poisonrepro[test]", "poisonrepro[all]"]}}
    assert names(extra_requirements(fake, None)) == {"numpy"}
    assert names(extra_requirements(fake, "test")) == {"numpy", "sphinx", "dask", "distributed", "pytest"}
    assert "poisonrepro" not in names(extra_requirements(fake, "all"))  # a cycle ends
    with pytest.raises(KeyError, match="no extra 'docs'; extras: all, book, cluster, test"):
        extra_requirements(fake, "docs")


# ----------------------------------------------------------------------------- the lock file
LOCK = REPO / "requirements-lock.txt"


def lock_pins(text: str) -> dict[str, Version]:
    """name -> exact version of every requirement line; an unpinned line is an error."""
    pins = {}
    for n, line in enumerate(text.splitlines(), 1):
        line = line.split("#", 1)[0].strip()
        if not line:
            continue
        req = Requirement(line)
        spec = list(req.specifier)
        assert len(spec) == 1 and spec[0].operator == "==", f"requirements-lock.txt:{n}: {line!r} is not an exact pin"
        pins[canonicalize_name(req.name)] = Version(spec[0].version)
    return pins


def colophon_versions() -> set[str]:
    """The distinct "python X, torch Y, numpy Z, ..." lines of the committed notebooks' colophons."""
    import nbformat
    lines = set()
    for path in sorted((REPO / "notebooks").glob("[0-9][0-9]_*.ipynb")):
        cell = nbformat.read(path, as_version=4).cells[-1]
        for out in cell.get("outputs", []):
            lines |= {ln.strip() for ln in str(out.get("text", "")).splitlines() if ln.startswith("python ")}
    return lines


def test_the_lock_file_pins_every_package_and_satisfies_pyprojects_ranges():
    pins = lock_pins(LOCK.read_text())
    project = load_pyproject()["project"]
    missing, outside = [], []
    for req in extra_requirements(project, "test"):
        name = canonicalize_name(req.name)
        if name not in pins:
            missing.append(str(req))
        elif not req.specifier.contains(pins[name], prereleases=True):
            outside.append(f"{req} but the lock has {pins[name]}")
    assert not missing, f"requirements-lock.txt lacks {missing}"
    assert not outside, f"requirements-lock.txt breaks pyproject's ranges: {outside}"
    assert "poisonrepro" not in pins  # the package itself is installed editable, not pinned


def test_the_lock_file_is_the_environment_the_committed_colophons_name():
    lines = colophon_versions()
    assert len(lines) == 1, f"the committed notebooks ran in different environments: {sorted(lines)}"
    versions = dict(part.strip().split(" ", 1) for part in lines.pop().split(","))
    text = LOCK.read_text()
    header = "\n".join(ln for ln in text.splitlines() if ln.startswith("#"))
    assert f"Python {versions.pop('python')}" in header, "the lock file's header must name the colophons' Python"
    pins = lock_pins(text)
    for package, version in versions.items():  # torch 2.14.1+cu130: the local label is the build, not the version
        assert pins[canonicalize_name(package)] == Version(Version(version).public), \
            f"requirements-lock.txt pins {package} {pins[canonicalize_name(package)]}, the colophons say {version}"
    assert f"torch {pins['torch']}" in header


def test_the_lock_parser_refuses_a_range():
    assert lock_pins("# c\nnumpy==2.4.6  # why\n\n") == {"numpy": Version("2.4.6")}
    with pytest.raises(AssertionError, match=r"requirements-lock.txt:2: 'numpy>=2' is not an exact pin"):
        lock_pins("torch==2.14.1\nnumpy>=2\n")


# ----------------------------------------------------------------------------- CITATION.cff references
#: the reference types CITATION.cff uses, from the CFF 1.2.0 schema's list (cffconvert --validate
#: checks the whole schema; this test keeps the fields a reader needs)
CFF_TYPES = {"conference-paper", "article"}


def ascii_letters(name: str) -> str:
    """Muñoz-González -> Munoz-Gonzalez: the catalogue spells names without accents."""
    return "".join(c for c in unicodedata.normalize("NFKD", name) if not unicodedata.combining(c))


def test_citation_cff_lists_every_reproduced_paper_under_references():
    from poisonrepro import catalog
    cff = yaml.safe_load((REPO / "CITATION.cff").read_text())
    refs = cff.get("references", [])
    papers = [p for p in catalog.PAPERS if p.link]
    assert len(papers) == 14 and len(refs) == len(papers), f"{len(refs)} references for {len(papers)} papers"
    for paper, ref in zip(papers, refs):
        where = f"CITATION.cff references[{refs.index(ref)}] ({paper.notebook})"
        assert ref["url"] == paper.link, f"{where}: url {ref['url']} is not the catalogue's {paper.link}"
        # the catalogue's title is "Authors year, Title": the reference's title and year must be in it
        assert paper.title.endswith(ref["title"]), f"{where}: title {ref['title']!r} vs {paper.title!r}"
        assert f" {ref['year']}, " in paper.title, f"{where}: year {ref['year']} vs {paper.title!r}"
        assert ref["type"] in CFF_TYPES, f"{where}: type {ref['type']!r}, allowed {sorted(CFF_TYPES)}"
        assert ref["authors"] and all({"family-names", "given-names"} <= set(a) for a in ref["authors"]), where
        first = ref["authors"][0]["family-names"]
        assert paper.title.startswith(ascii_letters(first)), f"{where}: first author {first}"
        venue = ref.get("conference", {}).get("name") if ref["type"] == "conference-paper" else ref.get("journal")
        assert venue, f"{where}: no venue (conference.name or journal)"
        assert re.fullmatch(r"10\.\d{4,9}/\S+", ref["doi"]), f"{where}: doi {ref['doi']!r}"
