"""Build configuration: typed sections, loaded as defaults < YAML file < flags, checked once.

    cfg = load_config("configs/x.yaml", {"grid": {"n": 16}})   # a frozen BuildConfig
    cfg.grid.n, cfg.source.name, cfg.source.options, cfg.hash

Every default lives in one place: the field defaults of the section dataclasses
(``sections.py``) and of each source's and segmenter's options dataclass (beside its class).
``configs/default.yaml`` mirrors them; a test keeps the two in step.
"""
from __future__ import annotations

import copy
import dataclasses
import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

import yaml

from ..checksums import file_sha256
from ..registry import Registry
from .sections import BuildOptions, GridConfig, LabellingConfig, SelectionConfig
from ..options import ConfigError, as_dict, build, check

__all__ = [
    "BuildConfig", "PluginConfig", "GridConfig", "SelectionConfig", "LabellingConfig", "BuildOptions",
    "ConfigError", "load_config", "read_yaml", "deep_merge", "drop_none", "default_dict", "describe_options",
]

SECTIONS: dict[str, type] = {"grid": GridConfig, "selection": SelectionConfig, "labelling": LabellingConfig,
                             "build": BuildOptions}
DEFAULT_PLUGINS = {"source": "synthetic", "segmenter": "superpixel"}
OUTPUT_BUILD_KEYS = ("images_per_shard",)  # the only build keys that change the shards' bytes


def _registries() -> dict[str, Registry]:
    from ..segmenters import SEGMENTERS
    from ..sources import SOURCES

    return {"source": SOURCES, "segmenter": SEGMENTERS}


@dataclass(frozen=True)
class PluginConfig:
    """A source or segmenter: its registry name and its own options dataclass."""

    name: str
    options: Any

    def to_dict(self) -> dict:
        return {"name": self.name, **as_dict(self.options)}

    def output_dict(self) -> dict:
        """What changes the shards: runtime-only fields dropped, files named by their sha256."""
        out: dict[str, Any] = {"name": self.name}
        for f in dataclasses.fields(self.options):
            value = getattr(self.options, f.name)
            if f.metadata.get("runtime"):
                continue
            if f.metadata.get("digest"):  # a checkpoint is identified by its bytes, not its path
                out[f.metadata["digest"]] = file_sha256(value) if value else None
                continue
            out[f.name] = value
        return out


@dataclass(frozen=True)
class BuildConfig:
    source: PluginConfig = field(default_factory=lambda: _default_plugin("source"))
    grid: GridConfig = field(default_factory=GridConfig)
    segmenter: PluginConfig = field(default_factory=lambda: _default_plugin("segmenter"))
    selection: SelectionConfig = field(default_factory=SelectionConfig)
    labelling: LabellingConfig = field(default_factory=LabellingConfig)
    build: BuildOptions = field(default_factory=BuildOptions)

    def to_dict(self) -> dict:
        """The whole resolved config (recorded in the manifest)."""
        return {"source": self.source.to_dict(), "grid": as_dict(self.grid),
                "segmenter": self.segmenter.to_dict(), "selection": as_dict(self.selection),
                "labelling": as_dict(self.labelling), "build": as_dict(self.build)}

    def output_dict(self) -> dict:
        """The part of the config that determines the shards' bytes."""
        return {"source": self.source.output_dict(), "grid": as_dict(self.grid),
                "segmenter": self.segmenter.output_dict(), "selection": as_dict(self.selection),
                "labelling": as_dict(self.labelling),
                "build": {k: getattr(self.build, k) for k in OUTPUT_BUILD_KEYS}}

    @property
    def hash(self) -> str:
        """sha256 of :meth:`output_dict` as canonical JSON: what guards resumes."""
        blob = json.dumps(self.output_dict(), sort_keys=True, separators=(",", ":"), default=str)
        return hashlib.sha256(blob.encode()).hexdigest()

    @property
    def offset_m(self) -> int | None:
        """The offset lattice when offset masks are stored, else None."""
        return self.grid.m if self.grid.offset_masks is True else None

    def replace(self, **sections: Any) -> "BuildConfig":
        return dataclasses.replace(self, **sections)


def _default_plugin(kind: str) -> PluginConfig:
    name = DEFAULT_PLUGINS[kind]
    return PluginConfig(name, _registries()[kind].get(name).options())


def drop_none(d: Mapping) -> dict:
    """Overrides without their unset (None) values, recursively; empty sections vanish."""
    out = {}
    for k, v in d.items():
        if isinstance(v, Mapping):
            v = drop_none(v)
            if not v:
                continue
        if v is not None:
            out[k] = v
    return out


def deep_merge(base: dict, over: Mapping, where: str = "") -> dict:
    """``over`` merged into a copy of ``base``; unknown keys are an error (trainer configs)."""
    out = copy.deepcopy(base)
    for k, v in over.items():
        if k not in out:
            raise ConfigError(f"{where}{k}: unknown config key")
        if isinstance(out[k], dict) and isinstance(v, Mapping) and k not in ("weights", "tasks"):
            out[k] = deep_merge(out[k], v, f"{where}{k}.")
        else:
            out[k] = copy.deepcopy(v)
    return out


def read_yaml(path: str | Path) -> dict:
    """A YAML mapping; syntax errors and non-mappings are one-line ``ConfigError``s naming the file."""
    try:
        data = yaml.safe_load(Path(path).read_text(encoding="utf-8"))
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        at = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        raise ConfigError(f"{path}: YAML syntax error{at}: {getattr(e, 'problem', None) or e}") from None
    except (OSError, UnicodeDecodeError) as e:
        raise ConfigError(f"{path}: cannot read config: {e}") from None
    data = {} if data is None else data
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: a config must be a mapping, got {type(data).__name__}")
    return data


def load_config(path: str | Path | None = None, overrides: Mapping | None = None) -> BuildConfig:
    """Defaults, then a YAML file, then flag overrides (``{"grid": {"n": 16}}``; None skipped)."""
    layers: list[tuple[dict, str]] = []
    if path:
        layers.append((read_yaml(path), str(path)))
    if overrides:
        layers.append((drop_none(overrides), "command line"))
    known = set(SECTIONS) | set(DEFAULT_PLUGINS)
    for raw, where in layers:
        for key in raw:
            if key not in known:
                raise ConfigError(f"{key}: unknown config section; expected {', '.join(sorted(known))} ({where})")
    registries = _registries()
    plugins = {}
    for kind, default in DEFAULT_PLUGINS.items():
        name, name_where = default, "defaults"
        for raw, where in layers:
            sec = raw.get(kind) or {}
            if isinstance(sec, Mapping) and "name" in sec:
                name, name_where = sec["name"], where
        if not isinstance(name, str):
            raise ConfigError(f"{kind}.name: expected a string, got {name!r} ({name_where})")
        try:
            plugins[kind] = registries[kind].get(name)
        except ValueError as e:
            raise ConfigError(f"{kind}.name: {e} ({name_where})") from None
    values: dict[str, dict] = {k: {} for k in known}
    for raw, where in layers:
        for sec, cls in SECTIONS.items():
            values[sec].update(check(cls, raw.get(sec) or {}, f"{sec}.", where))
        for kind, plugin in plugins.items():
            sec = dict(raw.get(kind) or {})
            sec.pop("name", None)
            values[kind].update(check(plugin.options, sec, f"{kind}.", where, f"{kind} {plugin.name}"))
    where = str(path) if path else "command line"
    sections = {sec: build(cls, values[sec], f"{sec}.", where) for sec, cls in SECTIONS.items()}
    for kind, plugin in plugins.items():
        sections[kind] = PluginConfig(plugin.name, build(plugin.options, values[kind], f"{kind}.", where))
    cfg = BuildConfig(**sections)
    return resolve(cfg, plugins["segmenter"].options)


def resolve(cfg: BuildConfig, segmenter_options: type) -> BuildConfig:
    """Fill the derived defaults so the recorded config says exactly what ran."""
    grid = cfg.grid
    offset_masks = grid.offset_masks
    if offset_masks == "auto":  # each segmenter says whether offset masks are cheap for it
        offset_masks = bool(getattr(segmenter_options, "OFFSET_MASKS_BY_DEFAULT", False))
    return cfg.replace(grid=dataclasses.replace(grid, m=grid.m if grid.m is not None else 2 * grid.n,
                                                offset_masks=offset_masks))


def describe_options() -> str:
    """Every config key with its type and default: the sections, then each source's and each
    segmenter's own options (what ``getok-data options`` prints)."""
    from ..options import describe_type, fields_of

    def block(title: str, cls: type) -> list[str]:
        lines = [title]
        for f in dataclasses.fields(cls):
            default = f.default if f.default is not dataclasses.MISSING else f.default_factory()
            lines.append(f"  {f.name}: {describe_type(fields_of(cls)[f.name])} (default {default!r})")
        return lines

    out: list[str] = []
    for name, cls in SECTIONS.items():
        out += block(f"{name}:", cls)
    for kind, registry in _registries().items():
        for name in registry.names():
            out += block(f"{kind}: {{name: {name}}}", registry.get(name).options)
    return "\n".join(out)


def default_dict() -> dict:
    """The defaults as a nested mapping (what ``configs/default.yaml`` spells out)."""
    return BuildConfig().to_dict()
