"""Defences, one module per method; importing this package registers them all.

Every module of this folder is imported, found with ``pkgutil`` rather than listed by hand, so
that a new defence is one new file and nothing here changes."""
import importlib
import pkgutil

for _module in pkgutil.iter_modules(__path__):
    importlib.import_module(f"{__name__}.{_module.name}")
