"""Profiles and configuration: one validated config per paper.

Every paper module in this package declares a frozen dataclass whose fields carry their
validation rules (``spec``) and a ``PROFILES`` mapping with the three profiles:

- ``smoke``: seconds; exercises the plumbing only, its numbers mean nothing;
- ``cpu``: minutes on 2 cores; the reduced-scale reproduction whose claims must hold;
- ``paper``: the published settings (each cited in the profile's ``_sources``), for a GPU.

``load_config(paper, profile, **overrides)`` rejects an unknown paper, profile or key, a
wrong type and an out-of-range value *before any compute*, with a message that names the
key and the allowed values. ``dry_run(cfg)`` shrinks every loop to one pass so that the
``paper`` profile can be exercised on a CPU in the tests.

A paper's config is the module ``poisonrepro.config.<paper>`` (the notebook's stem without its
number), found by name: adding a paper adds a module and edits no list.

Every field declares the cached stage(s) its value feeds (``param(..., stage=...)``); a config
class may name the stages upstream of a stage (``UPSTREAM = {"e2e_attack": ("e2e_victim",)}``:
the attack runs on the victim, so the victim's fields feed it too). ``stage_inputs`` turns these
declarations into the fields of a stage's cache key (``poisonrepro.cache.stage_key``), so that
no key is a list typed by hand and a field that declares no stage is an error.
"""
from __future__ import annotations

import dataclasses
import hashlib
import importlib
import json
import math
import os
import pkgutil
import re
from typing import get_args, get_origin

PROFILE_NAMES = ("smoke", "cpu", "paper")
#: a field's ``stage`` that feeds every stage of its config (the seed)
EVERY_STAGE = "*"
#: the largest seed every use accepts: numpy's legacy ``RandomState`` (behind scikit-learn's
#: ``random_state``, notebook 07's PCA) takes [0, 2**32 - 1] (torch's generators up to 2**64 - 1;
#: numpy's new ones no negative seed)
SEED_MAX = 2 ** 32 - 1


class ConfigError(ValueError):
    """A configuration value was rejected before any computation started."""


def spec(*, min=None, max=None, above=None, below=None, choices=None, epsilon=False, loop=False, dry=None, stage=None,
         doc=""):
    """Field metadata: range, allowed values, how a dry run shrinks the field, and the stages it feeds.

    ``min`` and ``max`` are inclusive bounds; ``above`` and ``below`` strict ones (a poisoning
    fraction lies in [0, 1), ``min=0, below=1``; a poison rate that must poison something in
    (0, 1), ``above=0, below=1``). A field gives at most one bound of each side.
    ``epsilon=True`` marks a perturbation budget on the [0, 1] pixel scale: a value above 1
    is almost always a 0-255 budget typed by mistake (8 instead of 8/255), so it is refused.
    ``loop=True`` marks an iteration count that a dry run sets to 1 (a tuple of settings: its first
    only); ``dry`` gives the value
    a dry run uses instead (for sizes).
    ``stage`` names the cached stage(s) whose results depend on the field's value (a name or a
    tuple of names, ``EVERY_STAGE`` for all of them), or ``()`` for a field that feeds no cached
    stage (read by the report only, or passed to a stage as an explicit argument that is part of
    its key, such as one value of a sweep). Every field must declare it.
    """
    if min is not None and above is not None or max is not None and below is not None:
        raise ValueError("spec: give min or above, max or below, not both of one side")
    if isinstance(stage, str) and stage != EVERY_STAGE:
        stage = (stage,)
    return {"min": min, "max": max, "above": above, "below": below, "choices": choices, "epsilon": epsilon,
            "loop": loop, "dry": dry, "stage": tuple(stage) if isinstance(stage, list) else stage, "doc": doc}


def param(**kw):
    """A required dataclass field carrying its ``spec`` (values come from the profiles)."""
    return dataclasses.field(metadata=spec(**kw))


@dataclasses.dataclass(frozen=True)
class BaseConfig:
    """The leading fields of every paper's config."""
    profile: str = param(choices=PROFILE_NAMES, stage=())  # in no key: results depend on the settings, not the name
    seed: int = param(min=0, max=SEED_MAX, stage=EVERY_STAGE)


@dataclasses.dataclass(frozen=True)
class ExtractorConfig(BaseConfig):
    """The leading fields of a config whose experiment runs on a frozen, pretrained feature
    extractor (``poisonrepro.pretrained.load_extractor``): the published one, or the project's
    CIFAR stand-in with these settings. A stage computed on its features names ``"extractor"``
    upstream of it."""
    extractor: str = param(choices=("standin_convnet", "inception_v3_imagenet"), stage="extractor")
    standin_width: int = param(min=4, max=256, dry=4, stage="extractor")
    standin_per_class: int = param(min=1, max=5000, dry=4, stage="extractor")
    standin_epochs: int = param(min=1, loop=True, stage="extractor")
    standin_lr: float = param(min=0, max=1, stage="extractor")


def default_profile() -> str:
    """The profile named by ``POISONREPRO_PROFILE``, else (unset) ``smoke``; set but empty is an
    error (a typo such as ``POISONREPRO_PROFILE=$PROFILE`` would otherwise run smoke silently)."""
    profile = os.environ.get("POISONREPRO_PROFILE")
    if profile is None:
        return "smoke"
    if not profile.strip():
        raise ConfigError(f"POISONREPRO_PROFILE={profile!r} is empty; allowed profiles: {', '.join(PROFILE_NAMES)} "
                          "(unset it for the default, smoke)")
    return check_profile(profile)


def check_profile(profile: str) -> str:
    if isinstance(profile, str) and not profile.strip():
        raise ConfigError(f"profile={profile!r} is empty; allowed profiles: {', '.join(PROFILE_NAMES)}")
    if profile not in PROFILE_NAMES:
        raise ConfigError(f"unknown profile {profile!r}; allowed profiles: {', '.join(PROFILE_NAMES)}")
    return profile


def _type_ok(value, annotation) -> bool:
    if annotation in (float, "float"):
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if annotation in (int, "int"):
        return isinstance(value, int) and not isinstance(value, bool)
    if annotation in (bool, "bool"):
        return isinstance(value, bool)
    if annotation in (str, "str"):
        return isinstance(value, str)
    return True


def _element_type(annotation):
    """(container, element) for ``tuple[float, ...]``-style annotations, else (None, ann)."""
    if isinstance(annotation, str):
        for name, typ in (("float", float), ("int", int), ("str", str)):
            if annotation == f"tuple[{name}, ...]":
                return tuple, typ
        return None, {"float": float, "int": int, "str": str, "bool": bool}.get(annotation, annotation)
    if get_origin(annotation) is tuple:
        return tuple, get_args(annotation)[0]
    return None, annotation


def _check_scalar(name, value, elem_type, meta):
    if not _type_ok(value, elem_type):
        raise ConfigError(f"{name}={value!r}: expected {getattr(elem_type, '__name__', elem_type)}, "
                          f"got {type(value).__name__}")
    if isinstance(value, float) and not math.isfinite(value):
        raise ConfigError(f"{name}={value!r}: must be a finite number")
    if meta.get("epsilon") and value > 1:
        raise ConfigError(f"{name}={value!r}: perturbation budgets are on the [0, 1] pixel scale; "
                          f"did you mean {value}/255 = {value / 255:.5f}?")
    choices = meta.get("choices")
    if choices is not None and value not in choices:
        raise ConfigError(f"{name}={value!r}: allowed values are {', '.join(map(repr, choices))}")
    lo, hi, above, below = meta.get("min"), meta.get("max"), meta.get("above"), meta.get("below")
    if (lo is not None and value < lo or above is not None and value <= above
            or hi is not None and value > hi or below is not None and value >= below):
        raise ConfigError(f"{name}={value!r}: must lie in {range_text(meta)}")


def range_text(meta: dict) -> str:
    """A field's allowed range as an interval: ``[0, 1)``, ``(0, 1]``, ``[1, inf)``."""
    lo, hi, above, below = meta.get("min"), meta.get("max"), meta.get("above"), meta.get("below")
    left = f"({above!r}" if above is not None else "(-inf" if lo is None else f"[{lo!r}"
    right = f"{below!r})" if below is not None else "inf)" if hi is None else f"{hi!r}]"
    return f"{left}, {right}"


def validate(cfg) -> None:
    """Check every field of a config dataclass against its ``spec``; raise ConfigError."""
    for f in dataclasses.fields(cfg):
        value = getattr(cfg, f.name)
        container, elem = _element_type(f.type)
        if container is tuple:
            if not isinstance(value, tuple) or len(value) == 0:
                raise ConfigError(f"{f.name}={value!r}: expected a non-empty tuple")
            for v in value:
                _check_scalar(f.name, v, elem, f.metadata)
        else:
            _check_scalar(f.name, value, elem, f.metadata)
    post = getattr(cfg, "check", None)
    if callable(post):
        post()


def known_papers() -> list[str]:
    """The papers with a config module in this package (``poisonrepro.config.<paper>``), sorted."""
    return sorted(m.name for m in pkgutil.iter_modules(__path__) if not m.name.startswith("_"))


def _module(paper: str):
    """The config module of ``paper``, found by name: ``poisonrepro.config.<paper>``."""
    if not isinstance(paper, str) or not re.fullmatch(r"[a-z][a-z0-9_]*", paper) or paper not in known_papers():
        raise ConfigError(f"unknown paper {paper!r}; known papers: {', '.join(known_papers())}")
    mod = importlib.import_module(f"{__name__}.{paper}")
    if not (hasattr(mod, "Config") and hasattr(mod, "PROFILES")):
        raise ConfigError(f"{mod.__name__} declares no Config and PROFILES: not a paper's config module")
    return mod


def load_config(paper: str, profile: str | None = None, **overrides):
    """The validated config of ``paper`` at ``profile`` (default: ``default_profile()``)."""
    mod = _module(paper)
    profile = check_profile(default_profile() if profile is None else profile)
    values = {k: v for k, v in mod.PROFILES[profile].items() if not k.startswith("_")}
    names = {f.name for f in dataclasses.fields(mod.Config)}
    unknown = sorted(set(overrides) - names)
    if unknown:
        raise ConfigError(f"unknown config key(s) {', '.join(unknown)} for {paper}; "
                          f"allowed keys: {', '.join(sorted(names - {'profile'}))}")
    values.update(overrides)
    values["profile"] = profile
    try:
        cfg = mod.Config(**values)
    except TypeError as exc:  # a profile that forgot a key: a bug in the package itself
        raise ConfigError(f"{paper}/{profile}: {exc}") from None
    validate(cfg)
    return cfg


def profile_sources(paper: str, profile: str) -> dict:
    """The citations a profile gives for its settings (the ``_sources`` entry)."""
    return dict(_module(paper).PROFILES[check_profile(profile)].get("_sources", {}))


def dry_run(cfg):
    """A copy of ``cfg`` with every loop run once and every size at its dry value."""
    changes = {}
    for f in dataclasses.fields(cfg):
        meta = f.metadata
        value = getattr(cfg, f.name)
        if meta.get("loop"):
            changes[f.name] = value[:1] if isinstance(value, tuple) else 1
        elif meta.get("dry") is not None:
            changes[f.name] = meta["dry"]
    out = dataclasses.replace(cfg, **changes)
    validate(out)
    return out


def as_dict(cfg) -> dict:
    return {f.name: getattr(cfg, f.name) for f in dataclasses.fields(cfg)}


def _declared(cls) -> dict:
    """{field: its stages (a tuple, or EVERY_STAGE)}; a field that declares none is an error."""
    out = {}
    for f in dataclasses.fields(cls):
        stage = f.metadata.get("stage")
        if stage is None:
            raise ConfigError(f"{cls.__module__}.{cls.__qualname__}.{f.name} declares no stage: give "
                              f"param(..., stage=...) the cached stage(s) it feeds, or stage=() for none")
        out[f.name] = stage
    return out


def stages(cfg_or_cls) -> set[str]:
    """Every stage a config declares: on its fields and in its ``UPSTREAM`` mapping."""
    cls = cfg_or_cls if isinstance(cfg_or_cls, type) else type(cfg_or_cls)
    upstream = getattr(cls, "UPSTREAM", {})
    names = {s for st in _declared(cls).values() if st != EVERY_STAGE for s in st}
    return names | set(upstream) | {s for ups in upstream.values() for s in ups}


def upstream_of(cfg_or_cls, stage: str) -> set[str]:
    """``stage`` and every stage upstream of it (``UPSTREAM``, transitively)."""
    cls = cfg_or_cls if isinstance(cfg_or_cls, type) else type(cfg_or_cls)
    upstream = getattr(cls, "UPSTREAM", {})
    if stage not in stages(cls):
        raise ConfigError(f"unknown stage {stage!r} of {cls.__module__}.{cls.__qualname__}; "
                          f"declared stages: {', '.join(sorted(stages(cls)))}")
    seen, todo = set(), [stage]
    while todo:
        s = todo.pop()
        if s not in seen:
            seen.add(s)
            todo.extend(upstream.get(s, ()))
    return seen


def stage_inputs(cfg_or_cls, stage: str) -> list[str]:
    """The names of the fields whose values feed ``stage``, in field order: those declaring the
    stage, one upstream of it, or every stage."""
    wanted = upstream_of(cfg_or_cls, stage)
    cls = cfg_or_cls if isinstance(cfg_or_cls, type) else type(cfg_or_cls)
    return [name for name, st in _declared(cls).items() if st == EVERY_STAGE or wanted & set(st)]


def stage_values(cfg, stage: str) -> dict:
    """``{field: value}`` of the fields that feed ``stage`` (the config part of its cache key)."""
    return {name: getattr(cfg, name) for name in stage_inputs(cfg, stage)}


def config_hash(cfg_or_dict, *, keys=None, extra: dict | None = None) -> str:
    """A short stable hash of (a subset of) a config, used as the artifact-cache key."""
    d = cfg_or_dict if isinstance(cfg_or_dict, dict) else as_dict(cfg_or_dict)
    if keys is not None:
        d = {k: d[k] for k in keys}
    d = dict(d, **(extra or {}))
    blob = json.dumps(d, sort_keys=True, default=str).encode()
    return hashlib.sha256(blob).hexdigest()[:16]
