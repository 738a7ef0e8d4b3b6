"""The method registry: every method module registers, with a complete taxonomy."""
import ast
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from poisonrepro import registry

PKG = Path(registry.__file__).resolve().parent
REGISTERS = ("register_attack", "register_defense")


def registers(path: Path) -> bool:
    """Whether a module of a method folder calls ``register_attack`` or ``register_defense``:
    a method module; the rest is shared machinery (the crafting loop, backdoor poisoning)."""
    tree = ast.parse(path.read_text())
    return any(isinstance(n, ast.Call) and getattr(n.func, "id", getattr(n.func, "attr", None)) in REGISTERS
               for n in ast.walk(tree))


@pytest.mark.parametrize("folder", ["attacks", "defenses"])
def test_every_method_module_is_imported_and_registers_a_method(folder):
    # the package imports every module of its folder by itself, with no list to extend (another test
    # importing a module first would hide a missing import: the overview's tables once lacked ABL)
    subprocess_code = ("import sys; from poisonrepro import registry; registry.load_all(); "
                       f"print(sorted(m for m in sys.modules if m.startswith('poisonrepro.{folder}.')))")
    out = subprocess.run([sys.executable, "-c", subprocess_code], capture_output=True, text=True, check=True)
    imported = set(ast.literal_eval(out.stdout.strip()))
    modules = {m.function.__module__ for m in registry.load_all().values()}
    files = sorted(p for p in (PKG / folder).glob("*.py") if p.stem != "__init__")
    assert any(registers(p) for p in files) and any(f"poisonrepro.{folder}.{p.stem}" in modules for p in files)
    for path in files:
        name = f"poisonrepro.{folder}.{path.stem}"
        assert name in imported, f"{folder}/__init__.py does not import {path.stem}"
        # a module that calls a register function registers a method on its own functions; one that does
        # not is shared machinery and never appears as a method's module
        assert (name in modules) == registers(path), f"{folder}/{path.name}: registers {name in modules}"


def test_a_new_method_file_is_imported_without_editing_the_package(tmp_path):
    """A copy of the package with one more attack file: ``load_all`` registers it by itself."""
    shutil.copytree(PKG, tmp_path / "poisonrepro", ignore=shutil.ignore_patterns("__pycache__"))
    (tmp_path / "poisonrepro" / "attacks" / "zz_new_attack.py").write_text(
        "from ..registry import register_attack\n\n"
        "@register_attack('zz_new', paper='p', notebook='99_x', summary='s', timing='poisoning', goal='untargeted',\n"
        "                 knowledge='white-box', universality='universal', influence='causative',\n"
        "                 violation='availability', specificity='indiscriminate')\n"
        "def craft():\n    return None\n")
    code = "from poisonrepro import registry; print('zz_new' in registry.load_all())"
    out = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True,
                         env={**os.environ, "PYTHONPATH": str(tmp_path)}, check=True)
    assert out.stdout.strip() == "True"


def test_attacks_declare_all_seven_taxonomy_keys_and_defences_their_cells():
    for m in registry.load_all().values():
        if m.kind == "attack":
            assert set(m.taxonomy) == set(registry.ALLOWED), m.name
        else:
            assert m.defends and all(len(cell) == 3 for cell in m.defends), m.name
    with pytest.raises(ValueError, match="taxonomy misses"):
        registry.register_attack("x", paper="p", notebook="n", summary="s", timing="poisoning")
    with pytest.raises(KeyError, match="unknown method 'nope'"):
        registry.get("nope")


def test_a_method_is_registered_on_its_own_function():
    # a helper once slipped between the decorator and targeted_pgd and was registered in its place
    registry.load_all()
    assert registry.get("pgd_evasion").function.__name__ == "targeted_pgd"


def test_the_overview_lists_the_defences_of_notebooks_09_to_11_in_their_cells():
    from poisonrepro import overview
    table = overview.barreno_defense_table()
    cell = table.loc[("causative", "targeted"), "integrity"]
    for name in ("trimmed_loss", "deep_partition_aggregation", "anti_backdoor_learning"):
        assert name in cell, (name, cell)
