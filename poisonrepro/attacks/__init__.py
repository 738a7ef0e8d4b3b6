"""Attacks, one module per method; importing this package registers them all.

Every module of this folder is imported, found with ``pkgutil`` rather than listed by hand, so
that a new attack is one new file and nothing here changes (the import by name also keeps the
methods out of each other's code hash: ``cache.code_hash`` follows import statements only)."""
import importlib
import pkgutil

for _module in pkgutil.iter_modules(__path__):
    importlib.import_module(f"{__name__}.{_module.name}")
