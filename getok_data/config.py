"""Build configuration: defaults, YAML files, flag overrides, and the hash that guards resumes."""
from __future__ import annotations

import copy
import hashlib
import json
from pathlib import Path
from typing import Any

import yaml

DEFAULTS: dict[str, Any] = {
    "source": {
        "name": "synthetic", "split": None, "size": None, "seed": 0, "limit": None,
        "data_root": None, "image_root": None, "annotations": None, "split_by": None,
    },
    # m defaults to 2n; offset_masks: also store the masks one offset step from every anchor, so a
    # refined anchor decodes exactly (auto: on for superpixel, where it is nearly free; off for SAM,
    # where it costs about 4x the decoding and the table size)
    "grid": {"n": 32, "m": None, "offset_masks": "auto"},
    "segmenter": {
        "name": "superpixel", "sam_model": "vit_b", "sam_checkpoint": None, "points_per_batch": "auto",
        "fast_decoder": True, "sdpa": "auto", "compile": False, "multimask": "best_iou", "dtype": "float32", "device": "auto", "table_max_side": 256,
        "seed": 0,
    },
    "selection": {"method": "sorted", "tau": 0.9},
    "labelling": {
        "far_steps": 2.0, "proposals_k": 8, "refine_samples": 2,
        "weights": {"I": 1.0, "R": 3.0, "H": 1.0, "F": 0.25}, "seed": 0,
    },
    "build": {
        "out": "out/build", "images_per_shard": 64, "max_error_rate": 0.05, "runner": "local",
        "address": None, "num_actors": None, "gpus_per_actor": 0.0, "cpus_per_actor": 1.0,
        "shard_timeout_s": 3600.0, "max_retries": 3,
        # CPU workers per runner / Ray actor that annotate and pack while the segmenter runs
        # (1: a thread; k >= 2: k processes); the actor reserves max(cpus_per_actor, cpu_workers)
        "cpu_workers": 1,
    },
}

# Sections (and build keys) that change the bytes of the shards; the rest is how we run.
OUTPUT_SECTIONS = ("source", "grid", "segmenter", "selection", "labelling")
OUTPUT_BUILD_KEYS = ("images_per_shard",)
# Segmenter keys that select the hardware, not the result (points_per_batch and fast_decoder can
# move SAM scores in the last bits, so they are part of the hash; "auto" is hashed as written).
RUNTIME_SEGMENTER_KEYS = ("device",)


def deep_merge(base: dict, over: dict, where: str = "") -> dict:
    """Recursively merge ``over`` into a copy of ``base``; unknown keys are an error."""
    out = copy.deepcopy(base)
    for k, v in over.items():
        if k not in out:
            raise KeyError(f"unknown config key {where + k!r}")
        if isinstance(out[k], dict) and isinstance(v, dict) and k != "weights":
            out[k] = deep_merge(out[k], v, f"{where}{k}.")
        else:
            out[k] = copy.deepcopy(v)
    return out


def load_config(path: str | Path | None = None, overrides: dict | None = None) -> dict:
    """Defaults, then a YAML file, then flag overrides (``{"grid": {"n": 16}}``; None values skipped)."""
    cfg = copy.deepcopy(DEFAULTS)
    if path:
        with open(path) as f:
            data = yaml.safe_load(f) or {}
        if not isinstance(data, dict):
            raise ValueError(f"{path}: a config must be a mapping, got {type(data).__name__}")
        cfg = deep_merge(cfg, data)
    if overrides:
        cfg = deep_merge(cfg, _drop_none(overrides))
    return resolve(cfg)


def _drop_none(d: dict) -> dict:
    return {k: (_drop_none(v) if isinstance(v, dict) else v) for k, v in d.items()
            if v is not None and not (isinstance(v, dict) and not _drop_none(v))}


def resolve(cfg: dict) -> dict:
    """Fill derived defaults so the recorded config says exactly what ran."""
    cfg = copy.deepcopy(cfg)
    if cfg["grid"]["m"] is None:
        cfg["grid"]["m"] = 2 * int(cfg["grid"]["n"])
    om = cfg["grid"].get("offset_masks", "auto")
    if om == "auto":
        om = str(cfg["segmenter"]["name"]).lower() == "superpixel"
    if not isinstance(om, bool):
        raise ValueError(f"grid.offset_masks must be true, false or auto, got {om!r}")
    cfg["grid"]["offset_masks"] = om
    if cfg["selection"]["method"] not in ("sorted", "gain"):
        raise ValueError(f"selection.method must be sorted or gain, got {cfg['selection']['method']!r}")
    if not 0 < float(cfg["selection"]["tau"]) <= 1:
        raise ValueError(f"selection.tau must be in (0, 1], got {cfg['selection']['tau']}")
    if int(cfg["build"].get("cpu_workers") or 0) < 1:
        raise ValueError(f"build.cpu_workers must be an integer >= 1, got {cfg['build'].get('cpu_workers')!r}")
    if int(cfg["grid"]["n"]) < 1 or int(cfg["build"]["images_per_shard"]) < 1:
        raise ValueError("grid.n and build.images_per_shard must be >= 1")
    return cfg


def output_config(cfg: dict) -> dict:
    """The part of the config that determines the shards' bytes."""
    out = {k: copy.deepcopy(cfg[k]) for k in OUTPUT_SECTIONS}
    if not out["grid"].get("offset_masks"):  # off: hashed as before the key existed, so old builds resume
        out["grid"].pop("offset_masks", None)
    for k in RUNTIME_SEGMENTER_KEYS:
        out["segmenter"].pop(k, None)
    out["build"] = {k: cfg["build"][k] for k in OUTPUT_BUILD_KEYS}
    # A checkpoint is identified by its bytes, not by where it lies on this machine.
    ckpt = out["segmenter"].pop("sam_checkpoint", None)
    out["segmenter"]["checkpoint_sha256"] = file_sha256(ckpt) if ckpt else None
    return out


_SHA_CACHE: dict[tuple[str, float, int], str] = {}


def file_sha256(path: str | Path) -> str:
    """sha256 of a file, streamed; cached per (path, mtime, size)."""
    st = Path(path).stat()
    key = (str(Path(path).resolve()), st.st_mtime, st.st_size)
    if key not in _SHA_CACHE:
        h = hashlib.sha256()
        with open(path, "rb") as f:
            for chunk in iter(lambda: f.read(1 << 20), b""):
                h.update(chunk)
        _SHA_CACHE[key] = h.hexdigest()
    return _SHA_CACHE[key]


def config_hash(cfg: dict) -> str:
    """sha256 of the output-relevant config, canonical JSON."""
    blob = json.dumps(output_config(cfg), sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(blob.encode()).hexdigest()
