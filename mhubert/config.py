"""Configuration as dataclasses with YAML presets.

``mhubert/presets/<name>.yaml`` holds one mapping per section (``model``, ``data``, ``train``,
``clustering``, ``lid``, ``serve``). ``base`` is the paper's configuration; ``tiny`` runs the tests
and the demo on 2 CPU cores. A section is turned into its dataclass with :func:`from_preset`, and
overrides (``key=value`` strings or a dict) are applied on top with type checking.
"""

from __future__ import annotations

import dataclasses
import importlib.resources
from typing import Any, TypeVar

import yaml

from mhubert.errors import BadInput

T = TypeVar("T")
PRESETS = ("base", "tiny")


def load_preset(name: str) -> dict[str, Any]:
    """The whole preset as nested dicts. ``name`` is a preset name or a YAML file/URL."""
    if name in PRESETS:
        text = importlib.resources.files("mhubert.presets").joinpath(f"{name}.yaml").read_text()
    else:
        from mhubert import storage

        if not name.endswith((".yaml", ".yml")) or not storage.exists(name):
            raise BadInput(f"unknown preset {name!r}: use {' | '.join(PRESETS)} or a YAML file/URL")
        text = storage.read_text(name)
    try:
        data = yaml.safe_load(text) or {}
    except yaml.YAMLError as e:
        raise BadInput(f"preset {name!r} is not valid YAML: {e}") from e
    if not isinstance(data, dict):
        raise BadInput(f"preset {name!r} must be a mapping of sections")
    return data


ITERATION_KEYS = frozenset({"features", "layer", "label_rate", "num_clusters", "warm_start", "train"})


def iteration_schedule(preset: str) -> list[dict[str, Any]]:
    """The preset's 3-iteration schedule: ``[{features, layer, label_rate, num_clusters}]``, each
    optionally with ``warm_start`` (start the encoder from the previous iteration's model rather
    than from scratch) and ``train`` (``key=value`` training overrides for that iteration only)."""
    its = load_preset(preset).get("iterations")
    if not isinstance(its, list) or len(its) != 3 or not all(isinstance(it, dict) for it in its):
        raise BadInput(f"preset {preset!r} must define 3 iterations, got {its!r}")
    for n, it in enumerate(its, 1):
        unknown = set(it) - ITERATION_KEYS
        if unknown:
            raise BadInput(f"preset {preset!r} iteration {n}: unknown keys {sorted(unknown)} "
                           f"(known: {sorted(ITERATION_KEYS)})")
        train = it.get("train", [])
        if not isinstance(train, list) or not all(isinstance(o, str) and "=" in o for o in train):
            raise BadInput(f"preset {preset!r} iteration {n}: 'train' must be a list of key=value, "
                           f"got {train!r}")
        if not isinstance(it.get("warm_start", False), bool):
            raise BadInput(f"preset {preset!r} iteration {n}: 'warm_start' must be true or false")
    return its


def iteration_train_overrides(preset: str, iteration: int, overrides: list[str] | None = None) -> list[str]:
    """Training overrides of ``iteration`` (1-3): the preset's own for it, then ``overrides`` (so
    the caller's win: later overrides replace earlier ones)."""
    if iteration not in (1, 2, 3):
        raise BadInput(f"iteration must be 1, 2 or 3, got {iteration}")
    return [*iteration_schedule(preset)[iteration - 1].get("train", []), *(overrides or [])]


def _coerce(value: Any, current: Any, key: str) -> Any:
    if isinstance(value, str) and not isinstance(current, str) and current is not None:
        try:
            value = yaml.safe_load(value)
        except yaml.YAMLError as e:
            raise BadInput(f"bad value for {key}: {value!r}") from e
    if isinstance(current, bool) and not isinstance(value, bool):
        raise BadInput(f"{key} must be true/false, got {value!r}")
    if isinstance(current, float) and isinstance(value, int) and not isinstance(value, bool):
        value = float(value)
    if isinstance(current, float) and isinstance(value, str):
        try:  # YAML 1.1 reads 1e-9 (no dot) as a string; Python's float does not
            value = float(value)
        except ValueError:
            pass
    if isinstance(current, (int, float)) and not isinstance(current, bool) \
            and (not isinstance(value, (int, float)) or isinstance(value, bool)):
        raise BadInput(f"{key} must be a number, got {value!r}")
    if isinstance(current, (list, tuple)) and isinstance(value, list):
        value = type(current)(tuple(v) if isinstance(v, list) else v for v in value)
    return value


def from_dict(cls: type[T], data: dict[str, Any], where: str = "") -> T:
    """Build dataclass ``cls`` from a dict, rejecting unknown keys with a clear message."""
    names = {f.name for f in dataclasses.fields(cls)}  # type: ignore[arg-type]
    unknown = sorted(set(data) - names)
    if unknown:
        raise BadInput(f"unknown {where or cls.__name__} option(s): {', '.join(unknown)}; "
                       f"known: {', '.join(sorted(names))}")
    defaults = cls()  # type: ignore[call-arg]
    kwargs = {k: _coerce(v, getattr(defaults, k), k) for k, v in data.items()}
    return cls(**kwargs)


def apply_overrides(obj: T, overrides: dict[str, Any] | list[str] | None) -> T:
    """Return a copy of dataclass ``obj`` with ``overrides`` (dict or ``["k=v", ...]``) applied."""
    if not overrides:
        return obj
    if isinstance(overrides, list):
        d: dict[str, Any] = {}
        for item in overrides:
            if "=" not in item:
                raise BadInput(f"override {item!r} must look like key=value")
            k, v = item.split("=", 1)
            d[k.strip()] = v
        overrides = d
    names = {f.name for f in dataclasses.fields(obj)}  # type: ignore[arg-type]
    unknown = sorted(set(overrides) - names)
    if unknown:
        raise BadInput(f"unknown option(s): {', '.join(unknown)}; known: {', '.join(sorted(names))}")
    kwargs = {k: _coerce(v, getattr(obj, k), k) for k, v in overrides.items()}
    return dataclasses.replace(obj, **kwargs)  # type: ignore[type-var]


def route_overrides(items: list[str] | None, sections: dict[str, type]) -> dict[str, list[str]]:
    """The one ``--set`` parser: route ``section.key=value`` to its section, and a bare ``key=value``
    to the one section (of ``sections``: name -> dataclass) that has that key. An unknown section or
    key, or a bare key that several sections have, is an error naming them."""
    known = {s: {f.name for f in dataclasses.fields(c)} for s, c in sections.items()}
    out: dict[str, list[str]] = {s: [] for s in sections}
    for item in items or []:
        if "=" not in item:
            raise BadInput(f"--set {item!r} must look like section.key=value (e.g. train.lr=1e-4)")
        key, value = item.split("=", 1)
        key = key.strip()
        if "." in key:
            section, name = key.split(".", 1)
            if section not in known:
                raise BadInput(f"--set {item!r}: unknown section {section!r}; this command takes "
                               f"{', '.join(sorted(known))}")
            if name not in known[section]:
                raise BadInput(f"--set {item!r}: {section} has no option {name!r}; known: "
                               f"{', '.join(sorted(known[section]))}")
        else:
            owners = sorted(s for s, names in known.items() if key in names)
            if not owners:
                raise BadInput(f"--set {item!r}: no section of this command ({', '.join(sorted(known))}) "
                               f"has an option {key!r}")
            if len(owners) > 1:
                raise BadInput(f"--set {item!r}: {key!r} is ambiguous, it is in {', '.join(owners)}; "
                               f"write e.g. {owners[0]}.{key}={value}")
            section, name = owners[0], key
        out[section].append(f"{name}={value}")
    return out


def load_sections(preset: str, sections: dict[str, type], overrides: list[str] | None = None
                  ) -> dict[str, Any]:
    """``{section: dataclass instance}`` from a preset plus ``--set`` overrides (routed by
    :func:`route_overrides`)."""
    routed = route_overrides(overrides, sections)
    return {s: from_preset(c, s, preset, routed[s]) for s, c in sections.items()}


def from_preset(cls: type[T], section: str, preset: str = "base",
                overrides: dict[str, Any] | list[str] | None = None) -> T:
    """``from_preset(ModelConfig, "model", "tiny", ["num_layers=2"])``."""
    data = load_preset(preset).get(section, {})
    return apply_overrides(from_dict(cls, data, f"{section} ({preset})"), overrides)
