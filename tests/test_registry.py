"""The method registry: every method module registers, with a complete taxonomy."""
import ast
from pathlib import Path

import pytest

from poisonrepro import registry

PKG = Path(registry.__file__).resolve().parent
# shared machinery inside the method folders: loops that the methods use, not methods
SHARED_MODULES = {"attacks": {"crafting", "backdoor_poisoning"}, "defenses": set()}


@pytest.mark.parametrize("folder", ["attacks", "defenses"])
def test_every_method_module_is_imported_and_registers_a_method(folder):
    methods = registry.load_all().values()
    modules = {m.function.__module__ for m in methods}
    # the package itself imports every method (another test importing a module first would hide a
    # missing import: the overview's tables once lacked ABL for that reason)
    init = ast.parse((PKG / folder / "__init__.py").read_text())
    imported = {a.name for n in ast.walk(init) if isinstance(n, ast.ImportFrom) for a in n.names}
    for path in sorted((PKG / folder).glob("*.py")):
        if path.stem != "__init__" and path.stem not in SHARED_MODULES[folder]:
            assert f"poisonrepro.{folder}.{path.stem}" in modules, f"{folder}/{path.name} registers nothing"
            assert path.stem in imported, f"{folder}/__init__.py does not import {path.stem}"
    for stem in SHARED_MODULES[folder]:
        assert f"poisonrepro.{folder}.{stem}" not in modules, f"{stem} is shared machinery, not a method"


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
