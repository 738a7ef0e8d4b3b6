"""The method registry: every method module registers, with a complete taxonomy."""
import importlib
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from poisonrepro import registry

PKG = Path(registry.__file__).resolve().parent
# shared machinery inside the method folders: loops and formats that the methods use, not methods
SHARED_MODULES = {"attacks": {"crafting", "backdoor_poisoning", "availability"}, "defenses": set()}


def _registered_in_a_fresh_process():
    """{module: [method names]} after registry.load_all() in a new interpreter: in this process
    another test importing a module first would hide one the package fails to import (the
    overview's tables once lacked ABL for that reason)."""
    code = ("import json; from poisonrepro import registry; ms = registry.load_all().values(); "
            "out = {}; [out.setdefault(m.function.__module__, []).append(m.name) for m in ms]; print(json.dumps(out))")
    env = {**os.environ, "PYTHONPATH": str(PKG.parent) + os.pathsep + os.environ.get("PYTHONPATH", "")}
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=300)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout.strip().splitlines()[-1])


@pytest.mark.parametrize("folder", ["attacks", "defenses"])
def test_every_method_module_is_imported_and_registers_a_method(folder):
    registered = _registered_in_a_fresh_process()
    package = importlib.import_module(f"poisonrepro.{folder}")
    stems = {path.stem for path in (PKG / folder).glob("*.py") if path.stem != "__init__"}
    # the package finds its modules itself (pkgutil): no list kept by hand
    assert set(package.MODULES) == stems
    for stem in sorted(stems - SHARED_MODULES[folder]):
        assert registered.get(f"poisonrepro.{folder}.{stem}"), f"{folder}/{stem}.py registers nothing"
    for stem in SHARED_MODULES[folder]:
        assert f"poisonrepro.{folder}.{stem}" not in registered, f"{stem} is shared machinery, not a method"


def test_a_new_method_module_is_registered_without_touching_the_package(tmp_path):
    # a copy of the package with one more attack module: load_all() registers it
    import shutil
    root = tmp_path / "root"
    shutil.copytree(PKG, root / "poisonrepro", ignore=shutil.ignore_patterns("__pycache__"))
    (root / "poisonrepro" / "attacks" / "zz_new_attack.py").write_text(
        "from ..registry import register_attack\n"
        "@register_attack('zz_new', paper='p', notebook='n', summary='s', timing='poisoning', goal='untargeted',\n"
        "                 knowledge='black-box', universality='individual', influence='causative',\n"
        "                 violation='availability', specificity='indiscriminate')\n"
        "def zz(x):\n    return x\n")
    code = "from poisonrepro import registry; print(registry.get('zz_new').function.__module__)"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=root, timeout=300,
                          env={**os.environ, "PYTHONPATH": str(root)})
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip().splitlines()[-1] == "poisonrepro.attacks.zz_new_attack"


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
