"""The layout that takes more papers: one name per paper, config modules found by name, cache
keys from the fields' declared stages and from the code that computes them, the notebooks'
setup, and the colophon's memory line."""
import ast
import dataclasses
import importlib
import re
import shutil
from pathlib import Path

import nbformat
import pytest
import torch

from poisonrepro import cache as C
from poisonrepro import catalog, notebook, paths, reproduce
from poisonrepro.config import (BaseConfig, ConfigError, known_papers, load_config, param, stage_inputs, stages,
                                upstream_of)

REPO = Path(__file__).resolve().parents[1]
PAPERS = [p for p in catalog.PAPERS if (REPO / "notebooks" / f"{p.notebook}.ipynb").exists() and p.name != "overview"]
EXPERIMENTS = "poisonrepro.papers.{}.experiments"


# --------------------------------------------------------------------------- one name per paper
@pytest.mark.parametrize("paper", PAPERS, ids=lambda p: p.name)
def test_each_paper_has_its_files_under_one_name(paper):
    pkg = REPO / "poisonrepro"
    for path in (pkg / "config" / f"{paper.name}.py", pkg / "reference" / f"{paper.name}.csv",
                 *(pkg / "papers" / paper.name / f for f in ("__init__.py", "experiments.py", "report.py"))):
        assert path.is_file(), f"{paper.notebook}: {path.relative_to(REPO)} missing"
    assert paper.name in known_papers()
    # the package's __init__ imports nothing, so that a stage's code hash never covers the report
    init = ast.parse((pkg / "papers" / paper.name / "__init__.py").read_text())
    assert not [n for n in ast.walk(init) if isinstance(n, (ast.Import, ast.ImportFrom))]


def test_config_modules_are_found_by_name():
    modules = sorted(p.stem for p in (REPO / "poisonrepro" / "config").glob("[a-z]*.py"))
    assert known_papers() == modules
    with pytest.raises(ConfigError, match=re.escape(f"unknown paper 'frogs'; known papers: {', '.join(modules)}")):
        load_config("frogs", "smoke")
    with pytest.raises(ConfigError, match="unknown paper"):
        load_config("../config", "smoke")


# --------------------------------------------------------------------------- stages and keys
@pytest.mark.parametrize("name", known_papers())
def test_every_field_declares_its_stages_and_every_cached_stage_is_declared(name):
    cfg = load_config(name, "smoke")
    declared = stages(cfg)
    for stage in declared:
        assert "seed" in stage_inputs(cfg, stage)  # the seed feeds every stage
        assert "profile" not in stage_inputs(cfg, stage)
    # every stage the experiments key (``_key(cfg, stage)``), run as trials (``Trial(stage, ...)``)
    # or evaluate through the shared trial (``evaluate_poisons(..., stage=...)``, "victims" by
    # default; a ``stage`` passed on, or a function's ``stage`` default) is declared: a typo would
    # key on the seed alone
    source = (REPO / "poisonrepro" / "papers" / name / "experiments.py")
    if source.exists():
        module = importlib.import_module(EXPERIMENTS.format(name))
        used = set()
        for node in ast.walk(ast.parse(source.read_text())):
            if isinstance(node, ast.Call) and getattr(node.func, "id", None) in ("_key", "Trial"):
                arg = node.args[1 if node.func.id == "_key" else 0]
                used.add(arg.value if isinstance(arg, ast.Constant) else eval(compile(ast.Expression(arg), "", "eval"),
                                                                               vars(module)))
            elif isinstance(node, ast.Call):
                kw = {k.arg: k.value for k in node.keywords}
                if isinstance(kw.get("stage"), ast.Constant):
                    used.add(kw["stage"].value)
                elif getattr(node.func, "attr", None) == "evaluate_poisons" and "stage" not in kw:
                    used.add("victims")
            elif isinstance(node, ast.FunctionDef):
                names = [a.arg for a in node.args.args + node.args.kwonlyargs]
                defaults = dict(zip(names[::-1], node.args.kw_defaults[::-1] + node.args.defaults[::-1]))
                if isinstance(defaults.get("stage"), ast.Constant):
                    used.add(defaults["stage"].value)
        assert used and used <= declared, used - declared


def test_a_field_without_a_stage_or_an_unknown_stage_is_refused():
    @dataclasses.dataclass(frozen=True)
    class Forgetful(BaseConfig):
        steps: int = param(min=1)  # declares no stage

    with pytest.raises(ConfigError, match="Forgetful.steps declares no stage"):
        stage_inputs(Forgetful, "train")
    cfg = load_config("poison_frogs", "smoke")
    with pytest.raises(ConfigError, match="unknown stage 'transfer_atack'.*transfer_attack"):
        C.stage_key(cfg, "transfer_atack", EXPERIMENTS.format("poison_frogs"))


def test_a_stage_key_changes_with_the_fields_that_feed_it_and_only_those():
    module = EXPERIMENTS.format("poison_frogs")
    cfg = load_config("poison_frogs", "smoke")
    assert upstream_of(cfg, "e2e_attack") == {"e2e_attack", "e2e_victim"}
    keys = lambda c: {s: C.stage_key(c, s, module) for s in ("transfer_attack", "e2e_victim", "e2e_attack")}  # noqa: E731
    base = keys(cfg)
    # the victim's training feeds the victim and the attack on it, not the transfer experiment
    changed = keys(dataclasses.replace(cfg, e2e_pretrain_lr=2e-3))
    assert changed["e2e_victim"] != base["e2e_victim"] and changed["e2e_attack"] != base["e2e_attack"]
    assert changed["transfer_attack"] == base["transfer_attack"]
    # the extractor feeds the transfer attack (upstream of it), nothing end to end
    changed = keys(dataclasses.replace(cfg, standin_epochs=2))
    assert changed["transfer_attack"] != base["transfer_attack"] and changed["e2e_attack"] == base["e2e_attack"]
    # a report-only field feeds no stage; the seed feeds every stage
    assert keys(dataclasses.replace(cfg, clean_label_linf_255=8.0)) == base
    assert all(a != b for a, b in zip(keys(dataclasses.replace(cfg, seed=1)).values(), base.values()))
    # a sweep's value is part of the key as an explicit argument
    assert C.stage_key(cfg, "transfer_attack", module, beta_multiplier=0.1) != base["transfer_attack"]
    # more repeats reuse the repeats already made (pGAN: the counts feed no key)
    pg = load_config("pgan", "smoke")
    more = dataclasses.replace(pg, gen_trials=pg.gen_trials + 1, pgan_seeds=pg.pgan_seeds + 1)
    for stage in ("gen_attack", "pgan_sweep"):
        assert C.stage_key(more, stage, EXPERIMENTS.format("pgan"), trial=0) == \
            C.stage_key(pg, stage, EXPERIMENTS.format("pgan"), trial=0)


# the trials' keys (biggio_svm: spec-based, through the executor) follow the declared stages
BIGGIO_CHANGES = {"pairs": ("7v1",), "kernels": ("linear",), "n_train": 41, "n_val": 61, "n_test": 201, "splits": 2,
                  "C": 2.0, "rbf_gamma": 0.02, "step": 0.4, "max_iter": 6, "patience": 11,
                  "attack_fractions": (0.0, 0.1), "multi_kernel": "rbf", "multi_splits": 2, "multi_max_iter": 4,
                  "toy_per_class": 11, "toy_gamma": 0.4, "toy_step": 0.2, "toy_grid": 9, "seed": 1}
BIGGIO_BASE = {"rbf_gamma": {"multi_kernel": "rbf"}}  # the multi-point attack uses gamma with the RBF kernel only


def test_the_trials_keys_change_with_exactly_the_fields_declared_for_their_stage():
    from poisonrepro import executor
    from poisonrepro.papers.biggio_svm import experiments as B
    cfg = load_config("biggio_svm", "smoke")
    make = {"biggio_svm/single_point": B.single_point_trials, "biggio_svm/multi_point": B.multi_point_trials,
            "biggio_svm/toy_surface": B.toy_trials}

    def keys(c):
        return {stage: {executor.trial_key(t) for t in trials(c)} for stage, trials in make.items()}

    fields = {f.name for f in dataclasses.fields(cfg)} - {"profile"}
    assert set(BIGGIO_CHANGES) == fields, "a new field needs its change here"
    for name, value in BIGGIO_CHANGES.items():
        start = dataclasses.replace(cfg, **BIGGIO_BASE.get(name, {}))
        base, changed = keys(start), keys(dataclasses.replace(start, **{name: value}))
        moved = {stage for stage in make if changed[stage] != base[stage]}
        declared = {stage for stage in make if name in stage_inputs(cfg, stage)}
        assert moved == declared, f"{name}: changes the keys of {sorted(moved)}, declares {sorted(declared)}"


# --------------------------------------------------------------------------- code hash
def _copy_package(dst: Path) -> Path:
    shutil.copytree(paths.PACKAGE_DIR, dst / "poisonrepro", ignore=shutil.ignore_patterns("__pycache__", "*.csv"))
    return dst


def _edit(root: Path, rel: str, text: str) -> None:
    path = root / "poisonrepro" / rel
    path.write_text(path.read_text() + text)


@pytest.fixture(scope="module")
def copies(tmp_path_factory):
    """Copies of the package: unedited, an attack edited, its comment edited, a report edited."""
    out = {}
    for name, rel, text in (("original", None, None),
                            ("attack", "attacks/feature_collision.py", "\n_EDITED = 1  # a change of code\n"),
                            ("comment", "attacks/feature_collision.py", "\n# a comment, no code\n"),
                            ("report", "papers/poison_frogs/report.py", "\n_EDITED = 1\n")):
        root = _copy_package(tmp_path_factory.mktemp(name))
        if rel:
            _edit(root, rel, text)
        out[name] = root
    return out


def test_an_edit_to_an_attack_changes_the_code_hash_of_what_is_computed_with_it(copies):
    frogs, bg = EXPERIMENTS.format("poison_frogs"), EXPERIMENTS.format("back_gradient")
    h = {name: (C.code_hash(frogs, root=root), C.code_hash(bg, root=root)) for name, root in copies.items()}
    assert h["original"][0] == C.code_hash(frogs)  # the copy hashes as the installed package
    assert h["attack"][0] != h["original"][0]       # feature collision computes the Poison Frogs stages
    assert h["attack"][1] == h["original"][1]       # ... and none of back-gradient's
    assert h["comment"] == h["original"]            # comments and docstrings are not code
    # an edit to a report changes no experiment's hash (the experiments never import it)
    assert h["report"] == h["original"]
    assert C.code_hash("poisonrepro.papers.poison_frogs.report", root=copies["report"]) != \
        C.code_hash("poisonrepro.papers.poison_frogs.report", root=copies["original"])
    closure = C.module_closure(frogs)
    assert "poisonrepro.attacks.feature_collision" in closure and "poisonrepro.train" in closure
    assert not [m for m in closure if m.endswith(".report") or m in ("poisonrepro.results", "poisonrepro.plots")]


def test_an_edited_attack_never_returns_stale_cached_poisons(copies, tmp_path, monkeypatch):
    """The same config before and after an edit to the attack: the second lookup misses and
    recomputes instead of returning the poisons of the old code."""
    cfg = load_config("poison_frogs", "smoke")
    store = C.ArtifactCache(tmp_path / "artifacts")
    made = []

    def craft(version):
        def compute():
            made.append(version)
            return {"poison": torch.full((2,), float(version))}
        return compute

    for version, root in enumerate((copies["original"], copies["original"], copies["attack"])):
        monkeypatch.setattr(paths, "PACKAGE_DIR", root / "poisonrepro")  # the code this run imports
        out = store.tensors("transfer_attack", C.stage_key(cfg, "transfer_attack", EXPERIMENTS.format("poison_frogs")),
                            craft(version))
        assert float(out["poison"][0]) == made[-1]
    assert made == [0, 2], "the unchanged code reuses its poisons; the edited attack recomputes them"


def test_code_hash_rejects_a_module_outside_the_package():
    with pytest.raises(ValueError, match="no module 'numpy'"):
        C.code_hash("numpy")


# --------------------------------------------------------------------------- notebooks
@pytest.mark.parametrize("paper", PAPERS, ids=lambda p: p.name)
def test_the_notebook_sets_up_with_its_own_name(paper):
    nb = nbformat.read(REPO / "notebooks" / f"{paper.notebook}.ipynb", as_version=4)
    code = "\n".join(c.source for c in nb.cells if c.cell_type == "code")
    assert f'notebook.setup("{paper.name}", profile, seed, dry_run)' in code
    assert f"from poisonrepro.papers.{paper.name} import experiments" in code
    assert "load_config(" not in code and "ArtifactCache(" not in code and "Results(" not in code


def test_setup_returns_the_validated_config_the_cache_and_the_results(tmp_path, monkeypatch):
    monkeypatch.setenv("POISONREPRO_FIGURES", str(tmp_path))
    cfg, store, res = notebook.setup("influence", "paper", seed=3, dry_run=True)
    assert cfg.profile == "paper" and cfg.seed == 3 and cfg.attack_iters == 1  # every loop once
    assert isinstance(store, C.ArtifactCache)
    assert (res.notebook, res.profile, res.paper) == ("08_influence", "paper", "influence")
    assert res.out_dir == tmp_path / "paper" / "08_influence"
    assert notebook.config_frame(cfg).columns.tolist() == ["paper profile"]
    with pytest.raises(ConfigError, match="unknown profile 'gpu'"):
        notebook.setup("influence", "gpu")


def test_the_colophon_reports_peak_memory_and_reproduce_reads_it(tmp_path):
    text = notebook.colophon("smoke")
    line = next(x for x in text.splitlines() if x.startswith(notebook.PEAK_MEMORY_LABEL))
    gib = float(line.split()[2])
    assert gib == pytest.approx(notebook.peak_memory_gib(), rel=0.5) and 0.01 < gib < 1024
    nb = nbformat.v4.new_notebook()
    cell = nbformat.v4.new_code_cell("print(notebook.colophon(profile))")
    cell.outputs = [nbformat.v4.new_output("stream", name="stdout", text=text + "\n")]
    nb.cells.append(cell)
    nbformat.write(nb, tmp_path / "run.ipynb")
    assert reproduce.peak_memory(tmp_path / "run.ipynb") == f"{gib:.2f} GiB"
    nb.cells[0].outputs = []
    nbformat.write(nb, tmp_path / "run.ipynb")
    assert reproduce.peak_memory(tmp_path / "run.ipynb") == "?"


@pytest.mark.parametrize("paper", PAPERS, ids=lambda p: p.name)
def test_every_experiments_module_plans_its_stages(paper):
    experiments = importlib.import_module(EXPERIMENTS.format(paper.name))
    if not hasattr(experiments, "plan"):
        pytest.skip(f"{paper.name}: no plan hook")
    rows = experiments.plan(load_config(paper.name, "cpu"))  # (paper: InceptionV3 takes long to count on a CPU)
    assert rows and all(set(r) == {"stage", "trials", "flops_per_trial", "basis"} for r in rows)
    assert all(r["trials"] >= 1 and r["flops_per_trial"] > 0 and r["basis"] for r in rows)
