"""The claims' ``paper`` column: every number a report module attaches resolves in the reference
data, carries a locator, and is in the unit of the value measured beside it.

The report modules are read as source (``ast``), not run: a ``paper_key`` that only some
profile reaches (a k, an architecture) must resolve too. An f-string key is checked as a
pattern (each ``{...}`` any text) against the keys of the module's paper.
"""
from __future__ import annotations

import ast
import csv
import math
import re
from pathlib import Path

import pytest

from poisonrepro import reference
from poisonrepro import stats as S
from poisonrepro.results import Results

REPO = Path(__file__).resolve().parents[1]
REPORTS = sorted((REPO / "poisonrepro" / "papers").glob("*/report.py"))
CSVS = sorted((REPO / "poisonrepro" / "reference").glob("*.csv"))


def paper_keys(tree: ast.AST) -> list[tuple[int, ast.expr]]:
    """(line, expression) of every ``paper_key=`` argument of a call in ``tree``."""
    return [(node.lineno, kw.value) for node in ast.walk(tree) if isinstance(node, ast.Call)
            for kw in node.keywords if kw.arg == "paper_key"]


def loop_bindings(tree: ast.AST) -> dict[str, list[ast.expr]]:
    """The values a name takes in ``for a, key in (("x", "k1"), ("y", "k2")):`` loops over a
    literal, so that ``paper_key=key`` inside one is checked key by key."""
    bound: dict[str, list[ast.expr]] = {}
    for node in ast.walk(tree):
        if not (isinstance(node, ast.For) and isinstance(node.iter, (ast.Tuple, ast.List))):
            continue
        for item in node.iter.elts:
            if isinstance(node.target, ast.Name):
                bound.setdefault(node.target.id, []).append(item)
            elif isinstance(node.target, ast.Tuple) and isinstance(item, ast.Tuple) \
                    and len(item.elts) == len(node.target.elts):
                for name, value in zip(node.target.elts, item.elts):
                    if isinstance(name, ast.Name):
                        bound.setdefault(name.id, []).append(value)
    return bound


def key_patterns(expr: ast.expr, bound: dict[str, list[ast.expr]] | None = None) -> list[str]:
    """The keys ``expr`` can evaluate to, as regular expressions (None, the no-paper-value
    branch, gives none). A name bound by a loop over a literal (``bound``) gives the keys of
    each of its values. Raises on an expression that cannot be checked statically."""
    bound = bound or {}
    if isinstance(expr, ast.Name) and expr.id in bound:
        return [p for value in bound[expr.id] for p in key_patterns(value, bound)]
    if isinstance(expr, ast.Constant) and expr.value is None:
        return []
    if isinstance(expr, ast.Constant) and isinstance(expr.value, str):
        return [re.escape(expr.value)]
    if isinstance(expr, ast.JoinedStr):
        return ["".join(re.escape(v.value) if isinstance(v, ast.Constant) else ".+" for v in expr.values)]
    if isinstance(expr, ast.IfExp):
        return key_patterns(expr.body, bound) + key_patterns(expr.orelse, bound)
    raise ValueError(f"paper_key={ast.unparse(expr)}: not a string, f-string, None or a conditional of those")


def test_the_scan_finds_the_keys_and_reads_their_forms():
    tree = ast.parse('res.claim("A", "c", "m", d, paper_key="x.y")\n'
                     'res.claim("A", "c", "m", d, paper_key=f"k1_minus_{b}.{arch[vi]}")\n'
                     'res.claim("A", "c", "m", d, paper_key="a" if attack == "badnets" else None)\n'
                     'res.claim("A", "c", "m", d)\n')
    found = [key_patterns(e) for _, e in paper_keys(tree)]
    assert found == [[r"x\.y"], [r"k1_minus_.+\..+"], ["a"]]
    with pytest.raises(ValueError, match="paper_key=name"):
        key_patterns(ast.parse("f(paper_key=name)").body[0].value.keywords[0].value)
    looped = ast.parse('for kind, key in (("a", "k.one"), ("b", "k.two")):\n'
                       '    res.claim("A", "c", "m", d, paper_key=key)\n')
    assert [key_patterns(e, loop_bindings(looped)) for _, e in paper_keys(looped)] == [[r"k\.one", r"k\.two"]]


@pytest.mark.parametrize("report", REPORTS, ids=lambda p: p.parent.name)
def test_every_paper_key_of_a_report_resolves_in_its_papers_reference_data(report):
    paper = report.parent.name   # Results(paper=...) is the package's name: reference/<paper>.csv
    keys = set(reference.load(paper))
    missing = []
    tree = ast.parse(report.read_text())
    bound = loop_bindings(tree)
    for line, expr in paper_keys(tree):
        for pattern in key_patterns(expr, bound):
            if not any(re.fullmatch(pattern, k) for k in keys):
                missing.append(f"{report.relative_to(REPO)}:{line}: {ast.unparse(expr)}")
    assert not missing, f"paper_key not in poisonrepro/reference/{paper}.csv: {missing}"


def test_the_witches_brew_per_architecture_keys_exist_for_every_baseline_and_column():
    # the f-string key of the per-architecture comparisons: every baseline x every paper column
    from poisonrepro.papers.witches_brew.report import BASELINES, PAPER_COLUMN, _paper_arch
    from poisonrepro.config.witches_brew import VICTIMS
    assert {_paper_arch(v) for v in VICTIMS} <= set(PAPER_COLUMN)
    for b in BASELINES:
        for column in PAPER_COLUMN:
            ref = reference.get("witches_brew", f"k1_minus_{b}.{column}")
            cells = reference.get("witches_brew", f"gradient_matching_K1.{column}").value - \
                reference.get("witches_brew", f"{b}.{column}").value
            assert ref.value == pytest.approx(cells, abs=1e-9) and "derived" in ref.locator


def rows(path: Path) -> list[dict]:
    with open(path, newline="") as fh:
        return [r for r in csv.DictReader(fh) if r["key"] and not r["key"].startswith("#")]


@pytest.mark.parametrize("path", CSVS, ids=lambda p: p.name)
def test_every_reference_row_has_a_locator_a_known_unit_and_a_fraction_in_0_1(path):
    for r in rows(path):
        assert r["locator"].strip(), f"{path.name}: {r['key']} has no locator"
        assert r["unit"] in reference.UNITS, f"{path.name}: {r['key']} unit {r['unit']!r} not in {reference.UNITS}"
        value = float(r["value"])
        if r["unit"] == "fraction":
            assert 0 <= value <= 1, f"{path.name}: {r['key']} = {value}: a fraction must lie in [0, 1]"
        if "derived" in r["note"]:   # a number the paper does not print says so where it is cited
            assert "derived" in r["locator"], f"{path.name}: {r['key']}: derived in its note, not in its locator"
    # every file loads (the loader's own checks: locator, unit)
    reference.load.cache_clear()
    reference.load(path.stem)


def test_the_loader_rejects_a_unit_outside_the_vocabulary(tmp_path, monkeypatch):
    (tmp_path / "toy.csv").write_text("key,value,unit,paper,locator,note\n"
                                      "radius,9,poisoned samples,P,Table 1,\n")
    monkeypatch.setattr(reference, "HERE", tmp_path)
    reference.load.cache_clear()
    try:
        with pytest.raises(ValueError, match=r"toy.csv: radius has unit 'poisoned samples'; allowed: fraction"):
            reference.load("toy")
    finally:
        reference.load.cache_clear()


def test_a_count_reference_beside_a_share_claim_raises(isolated_artifacts):
    # DPA's median certified robustness is a count of poisoned samples: it is the radius the
    # claim is tested at (its setting), never the paper's value of the certified share
    res = Results("10_dpa", "smoke", "dpa")
    assert reference.get("dpa", "cifar_k50_median_robustness").unit == "count"
    with pytest.raises(ValueError, match=r"paper_key 'cifar_k50_median_robustness' .*dpa\.csv.* unit 'count'.*'fraction'"):
        res.claim("DPA-1", "half certified", "certified accuracy at the paper's median radius",
                  S.rate_test(60, 100, 0.5), role="headline", paper_key="cifar_k50_median_robustness")
    assert res.claims == []   # nothing recorded
    row = res.claim("DPA-1", "half certified", "certified accuracy at the paper's median radius",
                    S.rate_test(60, 100, 0.5), role="headline", setting="radius 9", paper_key="certified_share_at_median")
    assert row["paper"] == 0.5 and 0 <= row["measured"] <= 1
    # a claim whose metric is a count takes the count
    n = res.claim("DPA-1", "radius", "median certified robustness", S.mean_test([9.0, 10.0, 11.0], 5, ">"),
                  role="supporting", paper_key="cifar_k50_median_robustness", unit="count")
    assert n["paper"] == 9 and not math.isnan(n["paper"])
    with pytest.raises(ValueError, match=r"unit='points'; must be one of fraction, percent, count, pixels_255"):
        res.claim("DPA-1", "x", "y", S.rate_test(1, 2, 0.5), role="supporting", unit="points")
