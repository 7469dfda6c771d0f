"""Reading an image's original bytes and decoding them strictly (truncated files are errors)."""
from __future__ import annotations

import io

import numpy as np
from PIL import Image

from .types import ImageRecord

# Member extensions for the formats we pass through unchanged.
FORMAT_EXT = {"JPEG": "jpg", "PNG": "png", "WEBP": "webp", "BMP": "bmp", "TIFF": "tiff"}


class ImageError(ValueError):
    """An image that cannot be used; the message is the quarantine reason."""


def read_bytes(record: ImageRecord) -> bytes:
    if record.image_bytes is not None:
        return record.image_bytes
    if record.image_path is None:
        raise ImageError("no image for this record")
    try:
        with open(record.image_path, "rb") as f:
            return f.read()
    except OSError as e:
        raise ImageError(f"cannot read image file {record.image_path}: {e.strerror or e}") from e


def decode(data: bytes, record: ImageRecord) -> tuple[np.ndarray, str]:
    """RGB uint8 [H, W, 3] and the member extension; EXIF orientation is ignored, as in COCO."""
    try:
        with Image.open(io.BytesIO(data)) as im:
            fmt = im.format
            im.load()  # raises on truncated data
            rgb = np.asarray(im.convert("RGB"))
    except Exception as e:  # PIL raises many types for corrupt data
        raise ImageError(f"cannot decode image: {type(e).__name__}: {e}") from e
    ext = FORMAT_EXT.get(fmt or "")
    if ext is None:
        raise ImageError(f"unsupported image format {fmt!r}")
    h, w = rgb.shape[:2]
    if (w, h) != (record.width, record.height):
        raise ImageError(f"image is {w}x{h} but the annotations say {record.width}x{record.height}")
    return rgb, ext
