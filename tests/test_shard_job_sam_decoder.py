"""The SAM decoder's GPU options, exercised on CPU with the tiny random-weight SAM: fused
attention (SDPA) agrees with the explicit softmax, the torch.compile path gives the same table."""
import numpy as np
import pytest

from getok_data.segmenters import build_segmenter
from getok_data.segmenters.base import grid_points


def _image() -> np.ndarray:
    import cv2

    img = np.full((120, 160, 3), 30, np.uint8)
    cv2.circle(img, (50, 60), 30, (230, 80, 40), -1)
    cv2.rectangle(img, (90, 20), (150, 100), (40, 190, 220), -1)
    return img


@pytest.fixture(scope="module")
def plain():
    return build_segmenter({"name": "sam", "sam_model": "tiny", "device": "cpu", "points_per_batch": 16})


def test_sdpa_is_off_on_cpu_by_default_and_close_to_the_explicit_softmax_when_forced(plain):
    assert plain.sdpa is False and "attention" not in plain.identity
    fused = build_segmenter({"name": "sam", "sam_model": "tiny", "device": "cpu", "points_per_batch": 16,
                             "sdpa": True})
    assert fused.identity["attention"] == "sdpa"
    img = _image()
    pts = grid_points(*img.shape[:2], 6)
    (m0, s0), (m1, s1) = plain.segment_points(img, pts), fused.segment_points(img, pts)
    assert np.allclose(s0, s1, atol=1e-4)
    assert (m0 != m1).mean() < 1e-3  # only pixels whose logit is within rounding of the threshold
    with pytest.raises(ValueError, match="segmenter.sdpa: expected true or false or auto"):
        build_segmenter({"name": "sam", "sam_model": "tiny", "device": "cpu", "sdpa": "maybe"})


def test_torch_compile_path_gives_the_same_table(plain):
    compiled = build_segmenter({"name": "sam", "sam_model": "tiny", "device": "cpu", "points_per_batch": 16,
                                "compile": "eager"})  # dynamo tracing, no C++ toolchain needed
    img = _image()
    assert compiled.segment(img, 5).equals(plain.segment(img, 5))
