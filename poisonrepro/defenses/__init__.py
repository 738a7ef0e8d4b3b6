"""Defences, one module per method; importing this package registers them all.

Every module of the package is imported (found by ``pkgutil``), so that adding a defence touches
only its own module (as for ``poisonrepro.attacks``).
"""
import importlib
import pkgutil

MODULES = tuple(sorted(info.name for info in pkgutil.iter_modules(__path__) if not info.name.startswith("_")))
for _name in MODULES:
    importlib.import_module(f"{__name__}.{_name}")
