"""Attacks, one module per method; importing this package registers them all.

Every module of the package is imported (found by ``pkgutil``), so that adding an attack touches
only its own module; shared machinery (``crafting``, ``availability``, ``backdoor_poisoning``)
is imported too and registers nothing. Imported by name at run time, never by an import
statement: ``cache.code_hash`` follows import statements, and no stage's code hash should
contain every attack.
"""
import importlib
import pkgutil

MODULES = tuple(sorted(info.name for info in pkgutil.iter_modules(__path__) if not info.name.startswith("_")))
for _name in MODULES:
    importlib.import_module(f"{__name__}.{_name}")
