"""The SAM 2 segmenter (the real ``sam2`` package, a tiny random-weight model on CPU)."""
import re
import json

import numpy as np
import pytest
import webdataset as wds
from click.testing import CliRunner

pytest.importorskip("sam2")

from getok_data.cli import main as cli  # noqa: E402
from getok_data.config import load_config  # noqa: E402
from getok_data.segmenters import build_segmenter  # noqa: E402
from getok_data.segmenters.base import CandidateTable, grid_points, table_shape  # noqa: E402
from pipelines.build import run_build  # noqa: E402


def _image() -> np.ndarray:
    """Two flat shapes on a plain background (distinct edges for the masks to follow)."""
    import cv2

    img = np.full((150, 200, 3), 40, np.uint8)
    cv2.circle(img, (60, 70), 35, (220, 60, 60), -1)
    cv2.rectangle(img, (110, 30), (180, 120), (60, 200, 90), -1)
    return img


def test_tiny_sam2_build_passes_verify_with_its_identity(tmp_path):
    cfg = load_config(None, {
        "source": {"name": "synthetic", "split": "val", "size": 2},
        "grid": {"n": 4},
        "segmenter": {"name": "sam2", "sam_model": "tiny", "points_per_batch": 16, "device": "cpu"},
        "build": {"out": str(tmp_path / "b"), "images_per_shard": 2},
    })
    summary = run_build(cfg, progress=False)
    assert summary["images_written"] == 2 and summary["errors"] == 0
    res = CliRunner().invoke(cli, ["verify", str(tmp_path / "b")])
    assert res.exit_code == 0, res.output
    sample = next(iter(wds.WebDataset(str(tmp_path / "b" / "shard-000000.tar"), shardshuffle=False)))
    ident = json.loads(sample["json"])["segmenter"]
    assert ident["name"] == "sam2" and ident["model_type"] == "tiny" and ident["config"] == "sam2.1_hiera_t.yaml"
    assert ident["checkpoint_sha256"] == "random-seed-0" and ident["multimask"] == "best_iou"
    assert ident["points_per_batch"] == 16 and ident["mask_threshold"] == 0.0


def test_tiny_sam2_table_is_one_mask_per_grid_point_deduplicated_on_the_device():
    seg = build_segmenter({"name": "sam2", "sam_model": "tiny", "device": "cpu", "points_per_batch": 5})
    img = _image()
    n = 4
    table = seg.segment(img, n)
    # The same points decoded to host bool masks and deduplicated on the host: the same table.
    masks, scores = seg.segment_points(img, grid_points(*img.shape[:2], n))
    ref = CandidateTable.from_point_masks(masks, n, scores, shape=table_shape(*img.shape[:2]))
    assert table.equals(ref) and table.shape == (150, 200) and len(table) >= 2
    for p in range(n * n):  # every grid point's table mask is the mask SAM 2 gives that point
        u = table.index.reshape(-1)[p]
        assert (u == -1 and not masks[p].any()) or np.array_equal(table.masks[u], masks[p])
    # The multimask rule picks among the 3 outputs; a fixed output gives another table.
    fixed = build_segmenter({"name": "sam2", "sam_model": "tiny", "device": "cpu", "multimask": "0"})
    assert not fixed.segment(img, n).equals(table)


def test_sam2_models_need_a_checkpoint_and_a_known_name(tmp_path):
    with pytest.raises(ValueError, match=r"sam_checkpoint: required for hiera_l \(--sam-checkpoint PATH"):
        build_segmenter({"name": "sam2", "sam_model": "hiera_l"})
    with pytest.raises(FileNotFoundError, match="hiera_t"):
        build_segmenter({"name": "sam2", "sam_model": "hiera_t", "sam_checkpoint": str(tmp_path / "no.pt")})
    with pytest.raises(ValueError, match=re.escape("segmenter.sam_model: expected hiera_t | hiera_s | hiera_b+ | hiera_l | tiny, got 'vit_h'")):
        build_segmenter({"name": "sam2", "sam_model": "vit_h"})
