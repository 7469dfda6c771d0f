"""Ignore regions (ReasonSeg label 255): pixels counted in neither intersection nor union, in the
shared IoU, the selection / token IoU, verify, labelling's proposals and the rewards. A hand-made
16 x 16 image whose answers are known: the GT is the top-left 8 x 8 block, the ignore region the
top-right one, and grid point (0, 0)'s candidate covers both (the whole top half)."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from getok_data.annotate import annotate_image
from getok_data.config import load_config
from getok_data.decode import TableDecoder, grid_for
from getok_data.tokens.rules import intersection_union, mask_iou as masked_iou
from getok_data.masks import mask_to_rle
from getok_data.rewards import score_grid_answer
from getok_data.dataset import json_bytes, npz_bytes
from getok_data.types import ImageRecord, Target
from getok_data.verify import check_sample


def _block(y0, y1, x0, x1) -> np.ndarray:
    m = np.zeros((16, 16), bool)
    m[y0:y1, x0:x1] = True
    return m


GT, IGNORE = _block(0, 8, 0, 8), _block(0, 8, 8, 16)
TOP, BOTTOM = _block(0, 8, 0, 16), _block(8, 16, 0, 16)


@dataclass
class HandTable:
    """A candidate table by hand, as a segmenter returns it: top half for the grid's top row."""

    index = np.array([[0, 0], [1, 1]], np.int32)  # [j, i]: both top points -> TOP, bottom -> BOTTOM
    shape = (16, 16)
    scores = np.ones(2, np.float32)
    offsets = None

    def packed(self) -> np.ndarray:
        return np.packbits(np.stack([TOP, BOTTOM]).reshape(2, -1), axis=1)


def _sample(ignore: bool, min_token_iou=None):
    target = Target(target_id="t0", sentences=["the left block"], category="", mask_rle=mask_to_rle(GT),
                    box=[0.0, 0.0, 8.0, 8.0], ref_id="t0", ignore_rle=mask_to_rle(IGNORE) if ignore else None)
    rec = ImageRecord(source="reasonseg", split="val", image_id="hand", width=16, height=16, targets=[target])
    cfg = load_config(overrides={"grid": {"n": 2}, "selection": {"min_token_iou": min_token_iou}})
    sample, arrays, errors = annotate_image(rec, HandTable(), cfg.grid, cfg.selection, cfg.labelling, {"name": "hand"}, "png")
    assert not errors
    return sample, arrays


def test_shared_iou_known_answers():
    assert masked_iou(TOP, GT) == 0.5  # 64 / 128
    assert masked_iou(TOP, GT, IGNORE) == 1.0  # the 64 ignored pixels leave the union
    assert intersection_union(TOP | BOTTOM, GT, IGNORE) == (64, 192)  # 256 pixels less the 64 ignored
    assert masked_iou(np.zeros_like(GT), np.zeros_like(GT), empty=1.0) == 1.0  # correct no-target answer
    assert masked_iou(np.zeros_like(GT), np.zeros_like(GT)) == 0.0


def test_ignore_changes_token_iou_as_documented():
    plain, _ = _sample(ignore=False)
    ign, arrays = _sample(ignore=True)
    assert plain["targets"][0]["token_iou"] == 0.5 and ign["targets"][0]["token_iou"] == 1.0
    assert plain["targets"][0]["tokens"]["seg"] == ign["targets"][0]["tokens"]["seg"] == "<seg><grid_0_0></seg>"
    # verify replays the selection with the ignore region and agrees
    members = {"png": b"", "json": json_bytes(ign), "cand.npz": npz_bytes(arrays)}
    count, problems = check_sample(ign["key"], members)
    assert count == 1 and problems == []
    # a tampered ignore region no longer replays
    tampered = dict(ign, targets=[dict(ign["targets"][0], ignore_rle=mask_to_rle(_block(0, 4, 8, 16)))])
    _, problems = check_sample(ign["key"], dict(members, json=json_bytes(tampered)))
    assert any("token_iou" in p for p in problems)


def test_proposals_never_sample_anchors_in_the_ignore_region():
    ign, _ = _sample(ignore=True)
    plain, _ = _sample(ignore=False)
    sampled = [r["prompt"] for r in ign["targets"][0]["refine"] if r["origin"] == "sampled"]
    assert sampled and all("<grid_1_0>" not in p for p in sampled)  # (1, 0)'s anchor (12, 4) is ignored
    assert any("<grid_1_0>" in r["prompt"] for r in plain["targets"][0]["refine"] if r["origin"] == "sampled")


def test_rewards_respect_the_ignore_region():
    ign, arrays = _sample(ignore=True)
    plain, _ = _sample(ignore=False)
    dec = TableDecoder(arrays, 2)
    answer = "<seg><grid_0_0></seg>"
    assert score_grid_answer(answer, ign["targets"][0], dec, grid_for(ign), "seg")["mask_iou"] == 2.0  # IoU 1
    assert score_grid_answer(answer, plain["targets"][0], dec, grid_for(plain), "seg")["mask_iou"] == 1.0  # 0.5 + 0.5


def test_min_token_iou_flags_only_when_set():
    plain, _ = _sample(ignore=False)
    assert "low_quality" not in plain["targets"][0] and "min_token_iou" not in plain["selection"]
    assert "low_quality" not in plain["stats"]
    flagged, arrays = _sample(ignore=False, min_token_iou=0.6)
    assert flagged["targets"][0]["low_quality"] is True and flagged["stats"]["low_quality"] == 1
    assert flagged["selection"]["min_token_iou"] == 0.6
    members = {"png": b"", "json": json_bytes(flagged), "cand.npz": npz_bytes(arrays)}
    assert check_sample(flagged["key"], members)[1] == []
    ok, _ = _sample(ignore=True, min_token_iou=0.6)  # IoU 1 with the ignore region
    assert "low_quality" not in ok["targets"][0] and ok["stats"]["low_quality"] == 0


def test_trainer_skips_low_quality_targets_unless_told():
    from getok_data.train.data import expand_sample

    flagged, _ = _sample(ignore=False, min_token_iou=0.6)
    image = np.zeros((8, 8, 3), np.uint8)
    run = lambda cfg: list(expand_sample(flagged, image, cfg, "grid", np.random.default_rng(0)))  # noqa: E731
    assert run({}) == []
    assert [e.answer for e in run({"keep_low_quality": True, "tasks": {"seg": 1.0}})] == ["<seg><grid_0_0></seg>"]


def test_quality_flag_is_hashed_and_hf_keys_belong_to_the_hf_source():
    """The flag changes what a build writes, so it is part of the config hash; the hf source's
    options exist only in an hf source section."""
    off = load_config().output_dict()
    assert off["selection"]["min_token_iou"] is None and not {"data_files", "columns", "preset"} & set(off["source"])
    on = load_config(overrides={"selection": {"min_token_iou": 0.6}})
    assert on.output_dict()["selection"]["min_token_iou"] == 0.6 and on.hash != load_config().hash
