"""inspect --gallery: targets spread over token IoU, best / median / worst always in."""
from __future__ import annotations


import cv2
from click.testing import CliRunner

from getok_data.cli import main
from getok_data.config import load_config
from getok_data.dataset import Dataset
from getok_data.gallery import spread_ranks
from pipelines.build import run_build


def test_spread_ranks():
    assert spread_ranks(225, 9) == [0, 28, 56, 84, 112, 140, 168, 196, 224]
    assert spread_ranks(10, 4) == [0, 3, 4, 6, 9]  # the median (rank 4) is added
    assert spread_ranks(3, 9) == [0, 1, 2] and spread_ranks(0, 9) == []


def test_gallery_of_a_small_build(tmp_path):
    out = tmp_path / "b"
    run_build(load_config(None, {"source": {"name": "synthetic", "split": "val", "size": 6},
                                 "grid": {"n": 8}, "build": {"out": str(out)}}), progress=False)
    png = tmp_path / "g.png"
    res = CliRunner().invoke(main, ["inspect", str(out), "--gallery", str(png), "--count", "5"])
    assert res.exit_code == 0, res.output
    ious = sorted((t["token_iou"] for s in Dataset(str(out)).samples() for t in s.meta["targets"]), reverse=True)
    lines = res.output.strip().splitlines()[1:]
    want = [ious[r] for r in spread_ranks(len(ious), 5)]
    assert [float(line.split("token IoU ")[1].split()[0]) for line in lines] == [round(v, 3) for v in want]
    assert lines[0].startswith("best") and lines[-1].startswith("worst") and any(x.startswith("median") for x in lines)
    img = cv2.imread(str(png))
    assert img is not None and img.shape[0] == 2 * (220 + 36)  # 5 tiles: 2 rows of 3
    bad = CliRunner().invoke(main, ["inspect", str(out)])
    assert bad.exit_code != 0 and "--png or --gallery" in bad.output
