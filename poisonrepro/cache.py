"""Artifact cache: models, poisons and results keyed by the hash of what made them.

A stage's key (``stage_key``) is the hash of the config fields that feed the stage (each field
declares its stages: ``poisonrepro.config.stage_inputs``) and of the code that computes it
(``code_hash``: the source of the computing module and of every ``poisonrepro`` module it
imports, transitively). An edit to an attack, a model or the training loop therefore changes the
keys of every stage computed with it, and a stale artifact is never returned; an edit to a report
module (figures, tables, claims) changes none.

Every write is atomic (a temporary file in the same folder, then ``os.replace``), so a run
killed at any moment leaves either the finished artifact or nothing, and the next run
resumes from what is finished. Every artifact carries a sha256 checksum, verified when it is
read (``store``): a damaged, truncated or unfinished one is moved aside with a warning naming
it, and recomputed, never loaded. A stage is computed with the global random generators seeded
from its key and given back as they were after (``rng.seeded``): its result depends on its key
alone, not on which stages ran before it in the process, so a run that resumes from the cache
gives the numbers of a cold run, and the stages after it draw as they would have. Tensors are
saved as plain ``dict[str, Tensor]`` and read back with ``torch.load(..., weights_only=True)``:
nothing is ever unpickled.

The cache lives in ``data/derived/artifacts/``, apart from ``data/derived/clean/`` where
the decoded clean datasets are kept: poisoned data never lands in the clean-data cache.
"""
from __future__ import annotations

import ast
import functools
import hashlib
from pathlib import Path
from typing import Callable

from . import paths, store
from .config import config_hash, stage_values
from .precision import in_force
from .rng import seed_from, seeded

#: (kind, key, "hit" | "miss" | "corrupt") for every lookup in this process ("corrupt": moved aside, then a
#: "miss"); the tests and the colophon read it.
EVENTS: list[tuple[str, str, str]] = []


# storage (atomic writes, checksums verified on read) lives in ``store``; these names stay here for callers
atomic_write, save_tensors, load_tensors = store.atomic_write, store.save_tensors, store.load_tensors
save_json, load_json, save_array, load_array = store.save_json, store.load_json, store.save_array, store.load_array
CorruptArtifact = store.CorruptArtifact


# --------------------------------------------------------------------------- code hash
PACKAGE = "poisonrepro"
#: modules that store bytes or report progress and compute no result: left out of every code hash and
#: notebook fingerprint, so an edit to them changes no cache key and stales no committed notebook (a test
#: keeps them free of imports of computing modules)
STORAGE_MODULES = frozenset({"poisonrepro.store", "poisonrepro.progress"})


def _module_file(module: str, root: Path) -> Path | None:
    """The file of ``module`` (``poisonrepro.a.b``) below ``root`` (the folder holding the
    ``poisonrepro`` package): ``a/b.py`` or ``a/b/__init__.py``; None where neither exists."""
    parts = module.split(".")
    if parts[0] != PACKAGE:
        return None
    base = root.joinpath(*parts)
    for path in (base.with_suffix(".py"), base / "__init__.py"):
        if path.is_file():
            return path
    return None


def _imported_modules(module: str, path: Path, root: Path) -> set[str]:
    """The ``poisonrepro`` modules that ``module``'s source imports (at any depth of the file,
    function-level imports included), by static analysis: ``from X import name`` counts as
    ``X.name`` where that is a module, else as ``X``. Imports made at run time by name
    (``importlib.import_module``) are not seen, by design: the plan hooks use them for code
    that does not compute results."""
    tree = ast.parse(path.read_bytes(), filename=str(path))
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                anchor = package.split(".")[:len(package.split(".")) - (node.level - 1)]
                base = ".".join(anchor + ([node.module] if node.module else []))
            else:
                base = node.module or ""
            for alias in node.names:
                sub = f"{base}.{alias.name}"
                found.add(sub if _module_file(sub, root) is not None else base)
    return {m for m in found if m.split(".")[0] == PACKAGE and m not in STORAGE_MODULES
            and _module_file(m, root) is not None}


def _normalised_source(path: Path) -> str:
    """The module's syntax tree without docstrings: an edit to a comment, a docstring or the
    layout changes no key, an edit to the code does."""
    tree = ast.parse(path.read_bytes(), filename=str(path))
    for node in ast.walk(tree):
        body = getattr(node, "body", None)
        if (isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)) and body
                and isinstance(body[0], ast.Expr) and isinstance(body[0].value, ast.Constant)
                and isinstance(body[0].value.value, str)):
            node.body = body[1:] or [ast.Pass()]
    return ast.dump(tree, annotate_fields=False)


def module_closure(module: str, root: Path | None = None) -> list[str]:
    """``module`` and every ``poisonrepro`` module it imports, transitively, sorted."""
    root = Path(root) if root is not None else paths.PACKAGE_DIR.parent
    if _module_file(module, root) is None:
        raise ValueError(f"code_hash: no module {module!r} below {root} (a poisonrepro module such as "
                         f"'poisonrepro.papers.poison_frogs.experiments' is expected)")
    seen, todo = set(), [module]
    while todo:
        name = todo.pop()
        if name in seen:
            continue
        seen.add(name)
        todo.extend(_imported_modules(name, _module_file(name, root), root) - seen)
    return sorted(seen)


@functools.lru_cache(maxsize=None)
def _code_hash(module: str, root: Path) -> str:
    h = hashlib.sha256()
    for name in module_closure(module, root):
        h.update(name.encode() + b"\0" + _normalised_source(_module_file(name, root)).encode() + b"\0")
    return h.hexdigest()[:16]


def code_hash(module: str, *, root: Path | None = None) -> str:
    """sha256 (16 hex digits) of the source of ``module`` and of every ``poisonrepro`` module it
    imports, transitively (static import analysis with ``ast``; comments and docstrings left
    out). It replaces the hand-bumped ``CODE_VERSION``: an edit to an attack changes the hash of
    every module that imports it. Cached per process (the code of a running process does not
    change); ``root`` (the folder holding ``poisonrepro/``) defaults to this installation."""
    return _code_hash(module, Path(root).resolve() if root is not None else paths.PACKAGE_DIR.parent)


def stage_key(cfg, stage: str, module: str, **extra) -> str:
    """The cache key of ``stage`` computed by ``module`` at ``cfg``: the hash of the config fields
    that feed the stage (``config.stage_inputs``: declared on each field, with the stages
    upstream of it), of ``extra`` (run-time arguments, e.g. one value of a sweep) and of
    ``code_hash(module)``."""
    return config_hash({"fields": stage_values(cfg, stage), "extra": extra, "code": code_hash(module)})


class ArtifactCache:
    """``cache.tensors(kind, key, compute)`` returns the stored result or computes and stores it."""

    def __init__(self, root: Path | None = None, enabled: bool = True):
        self.root = Path(root) if root is not None else paths.artifact_dir()
        clean = paths.clean_cache_dir().resolve()
        if self.root.resolve() == clean or clean in self.root.resolve().parents:
            raise ValueError(f"the artifact cache may not live inside the clean-data cache {clean}")
        self.enabled = enabled

    def path(self, kind: str, key: str, suffix: str) -> Path:
        """Where an artifact lives; one computed under bf16 autocast (``precision.in_force``) is
        kept apart from the fp32 one of the same key, since trained networks differ between them."""
        tag = "" if in_force() == "fp32" else f"-{in_force()}"
        return self.root / kind / f"{key}{tag}{suffix}"

    def _lookup(self, kind, key, suffix, compute, save, load):
        path = self.path(kind, key, suffix)
        if self.enabled and path.exists():
            try:
                value = load(path)
            except CorruptArtifact as exc:  # damaged, truncated or unfinished: moved aside, then recomputed
                store.quarantine(path, exc)
                EVENTS.append((kind, key, "corrupt"))
            else:
                EVENTS.append((kind, key, "hit"))
                return value
        EVENTS.append((kind, key, "miss"))
        # seeded from the key, and leaking nothing: cold, warm, or in another order, the same draws
        with seeded(seed_from(kind, key)):
            value = compute()
        if self.enabled:
            save(path, value)
        return value

    def tensors(self, kind: str, key: str, compute: Callable[[], dict]) -> dict:
        """A ``dict[str, Tensor]`` artifact (model weights, poisons, per-target results)."""
        return self._lookup(kind, key, ".pt", compute, save_tensors, load_tensors)

    def json(self, kind: str, key: str, compute: Callable[[], dict]) -> dict:
        return self._lookup(kind, key, ".json", compute, save_json, load_json)
