"""Independent re-check of a built dataset: checksums, tar structure, token IoU replays."""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Iterator

import numpy as np

from .masks import gt_at, ignore_mask
from .selection import PackedTable, select, union_iou
from .dataset import MANIFEST, Dataset, ManifestError, iter_tar as iter_samples, load_npz, shard_index, shard_name
from .checksums import sha256
from .storage import Storage
from .tokens import Grid, Mask, OffsetGroup, Polyline, Refinement, encode

IOU_TOL = 1e-9


@dataclass
class ShardReport:
    shard: str
    samples: int = 0
    targets: int = 0
    problems: list[str] = field(default_factory=list)


def check_sample(key: str, members: dict[str, bytes]) -> tuple[int, list[str]]:
    """Problems with one sample (empty list: fine) and its number of targets."""
    problems = []
    if "json" not in members or "cand.npz" not in members:
        return 0, [f"{key}: missing .json or .cand.npz"]
    meta = json.loads(members["json"])
    ext = meta.get("image_ext")
    if ext not in members:
        problems.append(f"{key}: missing image member .{ext}")
    if meta.get("key") != key:
        problems.append(f"{key}: json key {meta.get('key')!r} differs from the tar key")
    table = load_npz(members["cand.npz"])
    h, w = (int(v) for v in table["shape"])
    ptable = PackedTable.grid_of(table)
    n = meta["grid"]["n"]
    if table["index"].shape != (n, n):
        problems.append(f"{key}: index shape {table['index'].shape} != ({n}, {n})")
        return len(meta["targets"]), problems
    problems += check_offsets(key, table, n)
    for t in meta["targets"]:
        where = f"{key}/{t['target_id']}"
        if t.get("no_target"):
            problems += check_no_target(where, t, n)
            continue
        gt = np.packbits(gt_at(t["mask_rle"], (h, w)).reshape(-1))
        ign = ignore_mask(t, (h, w))
        ign = None if ign is None else np.packbits(ign.reshape(-1))
        ids = [int(table["index"][j, i]) for i, j in t["anchors"]]
        if any(u < 0 for u in ids):
            problems.append(f"{where}: an anchor has no candidate mask")
            continue
        iou = union_iou(ptable, ids, gt, ign)
        if abs(iou - t["token_iou"]) > IOU_TOL:
            problems.append(f"{where}: decoded IoU {iou:.6f} != recorded token_iou {t['token_iou']:.6f}")
        min_iou = meta["selection"].get("min_token_iou")
        if min_iou is not None and bool(t.get("low_quality")) != (t["token_iou"] < min_iou):
            problems.append(f"{where}: low_quality flag disagrees with token_iou {t['token_iou']:.6f} < {min_iou}")
        if meta["selection"]["method"] == "sorted":
            replay = select(ptable, gt, "sorted", meta["selection"]["tau"], ign).token_iou
            if abs(replay - t["token_iou"]) > IOU_TOL:
                problems.append(f"{where}: sorted-greedy replay IoU {replay:.6f} != {t['token_iou']:.6f}")
        raster = sorted((tuple(a) for a in t["anchors"]), key=lambda a: (a[1], a[0]))
        seg = encode(Mask(tuple(raster))) if raster else None
        if seg != t["tokens"]["seg"]:
            problems.append(f"{where}: tokens.seg does not match the anchors")
        if len(t["regions"]) != n * n:
            problems.append(f"{where}: regions has {len(t['regions'])} chars, expected {n * n}")
        if "polyline" in t:
            problems += check_polyline(where, t, meta)
    return len(meta["targets"]), problems


def check_no_target(where: str, t: dict, n: int) -> list[str]:
    """A no-target query: empty GT, no anchors, ``<seg></seg>``, token IoU 1, all Far/DELETE."""
    problems = []
    if gt_at(t["mask_rle"]).any():
        problems.append(f"{where}: no-target query with a non-empty mask")
    if t["anchors"] or t["tokens"]["seg"] != encode(Mask(())) or t["token_iou"] != 1.0:
        problems.append(f"{where}: no-target query must have no anchors, <seg></seg> and token_iou 1.0")
    if t["regions"] != "F" * (n * n) or t["offsets"] != "9" * (n * n):
        problems.append(f"{where}: no-target query must label every grid point F / <DELETE>")
    return problems


def check_polyline(where: str, t: dict, meta: dict) -> list[str]:
    """A lane target's ``<pl>``: anchors, steps and token strings re-derived from its vertices."""
    from .lanes import nearest_step

    pl = t["polyline"]
    grid = Grid(meta["grid"]["n"], meta["width"], meta["height"], meta["grid"]["m"])
    anchors = [grid.nearest(x, y) for x, y in pl["xy"]]
    if [list(a) for a in anchors] != pl["anchors"]:
        return [f"{where}: polyline anchors are not the cells of its vertices"]
    if any(a == b for a, b in zip(anchors, anchors[1:])) or len(anchors) < 2:
        return [f"{where}: polyline repeats an anchor consecutively or has fewer than 2"]
    steps = [nearest_step(tuple(v), a, grid) for v, a in zip(pl["xy"], anchors)]
    tokens = encode(Polyline(tuple(anchors)))
    answer = encode(Refinement((OffsetGroup("pl", tuple(steps)),)))
    if [list(s) for s in steps] != pl["steps"] or pl["refine"] != {"prompt": tokens, "answer": answer}:
        return [f"{where}: polyline steps / refinement do not match its vertices"]
    if pl["tokens"] != tokens or t["tokens"].get("pl") != tokens:
        return [f"{where}: tokens.pl does not match the polyline anchors"]
    return []


def check_offsets(key: str, table: dict[str, np.ndarray], n: int) -> list[str]:
    """Problems with the optional ``offsets`` member of a candidate table."""
    if "offsets" not in table:
        return []
    off, count = table["offsets"], len(table["masks"])
    if off.shape != (n, n, 9):
        return [f"{key}: offsets shape {off.shape} != ({n}, {n}, 9)"]
    if off.min() < -1 or off.max() >= count:
        return [f"{key}: offsets values outside [-1, {count})"]
    if not np.array_equal(off[..., 4], table["index"]):
        return [f"{key}: offsets[..., 4] (keep) differs from index"]
    return []


def verify_shard(storage: Storage, name: str, sidecar: dict | None, expected: dict | None = None) -> ShardReport:
    """One shard: its bytes against its sidecar (and the manifest's entry), every sample replayed."""
    report = ShardReport(name)
    try:
        data = storage.read_bytes(name)
    except FileNotFoundError:
        report.problems.append("missing shard file")
        return report
    digest = sha256(data)
    if sidecar is None:
        report.problems.append("missing sidecar")
    elif sidecar.get("sha256") != digest:
        report.problems.append(f"sha256 {digest[:12]} != sidecar {str(sidecar.get('sha256', ''))[:12]}")
    if expected is not None and expected.get("sha256") != digest:
        report.problems.append(f"sha256 {digest[:12]} != manifest {str(expected.get('sha256', ''))[:12]}")
    try:
        for key, members in iter_samples(data):
            count, problems = check_sample(key, members)
            report.samples += 1
            report.targets += count
            report.problems += problems
    except Exception as e:  # any corruption (tar, zip CRC, JSON) is a finding, not a crash
        report.problems.append(f"unreadable: {type(e).__name__}: {e}")
    return report


def verify_dir(url: str) -> Iterator[ShardReport]:
    """One report per shard, then (under the name ``manifest.json``) what makes the folder an
    unfinished or inconsistent build: no or a corrupt manifest, status not complete, planned
    shards missing, a sidecar of another config, checksums that differ from the manifest's."""
    ds = Dataset(url)
    folder = ShardReport(MANIFEST)
    try:
        manifest = ds.manifest
    except ManifestError as e:
        manifest = None
        folder.problems.append(f"unreadable manifest: {e}")
    else:
        if manifest is None:
            folder.problems.append("no manifest.json: not a finished build (rerun the build command)")
        elif not manifest.complete:
            folder.problems.append(f"build not complete (status {manifest.status!r}): rerun the build command "
                                   "to finish it")
    listed = {s["shard"]: s for s in manifest.shards} if manifest else {}
    names = ds.shard_names()
    if manifest is not None and manifest.complete:
        planned = manifest.planned_shards if manifest.planned_shards is not None else len(listed)
        expected = {shard_name(k) for k in range(planned)}
        for name in sorted(expected - set(names)):
            folder.problems.append(f"planned shard {name} is missing")
        for name in sorted(set(names) - expected - set(listed)):
            folder.problems.append(f"{name} is not part of this build (not in the manifest)")
    for name in names:
        index = shard_index(name)
        try:
            sidecar = ds.sidecar(index)
        except ManifestError as e:
            report = ShardReport(name, problems=[f"unreadable sidecar: {e}"])
            yield report
            continue
        if sidecar is not None and manifest is not None and sidecar.get("config_hash") != manifest.config_hash:
            folder.problems.append(f"{name}: built with another config (sidecar hash "
                                   f"{str(sidecar.get('config_hash'))[:12]} != manifest {manifest.config_hash[:12]})")
        yield verify_shard(ds.storage, name, sidecar, listed.get(name))
    if folder.problems:
        yield folder
