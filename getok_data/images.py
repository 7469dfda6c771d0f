"""Reading an image's original bytes and decoding them strictly.

Truncated files are errors, including a PNG whose complete zlib stream holds fewer rows than its
header declares (PIL fills those rows with black and says nothing). 16-bit grayscale is rescaled
to 8 bits (``round(v * 255 / 65535)``), never clipped. EXIF orientation is not applied (as in
COCO) but returned, so the sample can record it. Reasons name the file as the annotations give
it and hold no memory addresses, so ``errors.jsonl`` is the same on every machine.
"""
from __future__ import annotations

import io
import re
import struct
import zlib

import numpy as np
from PIL import Image

from .location import open_input
from .types import ImageRecord

# Member extensions for the formats we pass through unchanged.
FORMAT_EXT = {"JPEG": "jpg", "PNG": "png", "WEBP": "webp", "BMP": "bmp", "TIFF": "tiff"}
#: PIL modes holding 16-bit samples (PNG 16-bit grayscale opens as one of these, or as ``I``).
_MODES_16 = ("I;16", "I;16B", "I;16L", "I;16N")
_ADDRESS = re.compile(r"<[^<>]* at 0x[0-9a-fA-F]+>| at 0x[0-9a-fA-F]+")
_EXIF_ORIENTATION = 0x0112


class ImageError(ValueError):
    """An image that cannot be used; the message is the quarantine reason."""


def image_label(record: ImageRecord) -> str:
    """How reasons name the image: its file name under the image root, or the in-memory bytes."""
    if record.image_name is not None:
        return record.image_name.encode("utf-8", "backslashreplace").decode("utf-8")
    return "(image bytes)" if record.image_bytes is not None else "(no image)"


def read_bytes(record: ImageRecord) -> bytes:
    if record.image_bytes is not None:
        return record.image_bytes
    if record.image_path is None:
        raise ImageError("no image for this record")
    try:
        with open_input(record.image_path) as f:
            return f.read()
    except OSError as e:
        raise ImageError(f"cannot read image file {image_label(record)}: {e.strerror or type(e).__name__}") from e


def _png_short_rows(data: bytes) -> str | None:
    """A reason when the PNG's image data inflates to fewer bytes than IHDR implies; else None."""
    if not data.startswith(b"\x89PNG\r\n\x1a\n"):
        return None
    pos, idat, ihdr = 8, [], None
    while pos + 8 <= len(data):
        length, kind = struct.unpack(">I4s", data[pos:pos + 8])
        body = data[pos + 8:pos + 8 + length]
        if kind == b"IHDR" and len(body) == 13:
            ihdr = struct.unpack(">IIBBBBB", body)
        elif kind == b"IDAT":
            idat.append(body)
        elif kind == b"IEND":
            break
        pos += 12 + length
    if ihdr is None:
        return None
    w, h, depth, ctype, _, _, interlace = ihdr
    channels = {0: 1, 2: 3, 3: 1, 4: 2, 6: 4}.get(ctype)
    if channels is None or w == 0 or h == 0:
        return None
    bits = channels * depth
    if interlace:  # Adam7: seven reduced images, each row with its own filter byte
        passes = [(0, 0, 8, 8), (4, 0, 8, 8), (0, 4, 4, 8), (2, 0, 4, 4), (0, 2, 2, 4), (1, 0, 2, 2), (0, 1, 1, 2)]
        need = 0
        for x0, y0, dx, dy in passes:
            pw, ph = (w - x0 + dx - 1) // dx, (h - y0 + dy - 1) // dy
            if pw and ph:
                need += ph * (1 + (pw * bits + 7) // 8)
    else:
        need = h * (1 + (w * bits + 7) // 8)
    z, got = zlib.decompressobj(), 0
    try:
        for part in idat:
            got += len(z.decompress(part, max(1, need + 1 - got)))
            while z.unconsumed_tail and got <= need:
                got += len(z.decompress(z.unconsumed_tail, need + 1 - got))
            if got > need:
                break
    except zlib.error:
        return None  # PIL's own decoder reports corrupt streams
    if got < need:
        rows = got // (1 + (w * bits + 7) // 8) if not interlace else None
        held = f"about {rows} of {h} rows" if rows is not None else f"{got} of {need} bytes"
        return f"truncated PNG: the image data holds {held} the header declares"
    return None


def _to_rgb(im: Image.Image) -> np.ndarray:
    if im.mode in _MODES_16 or (im.mode == "I" and im.format == "PNG"):
        v = np.asarray(im).astype(np.int64)
        if v.ndim != 2:
            raise ImageError(f"unsupported 16-bit image layout {v.shape}")
        g = ((np.clip(v, 0, 65535) * 255 + 32767) // 65535).astype(np.uint8)
        return np.repeat(g[..., None], 3, axis=2)
    if im.mode in ("I", "F"):
        raise ImageError(f"unsupported {'32-bit integer' if im.mode == 'I' else 'floating-point'} image "
                         f"(PIL mode {im.mode}): no defined 8-bit range")
    return np.asarray(im.convert("RGB"))


def _orientation(im: Image.Image) -> int | None:
    try:
        v = im.getexif().get(_EXIF_ORIENTATION)
    except Exception:  # a broken EXIF block: the pixels are still usable
        return None
    return int(v) if isinstance(v, int) and not isinstance(v, bool) else None


def decode_full(data: bytes, record: ImageRecord) -> tuple[np.ndarray, str, int | None]:
    """RGB uint8 [H, W, 3], the member extension and the EXIF orientation (None when absent).

    The orientation is not applied: masks and grid refer to the stored pixels (as in COCO).
    """
    name = image_label(record)
    try:
        with Image.open(io.BytesIO(data)) as im:
            fmt = im.format
            im.load()  # raises on truncated data
            rgb = _to_rgb(im)
            orientation = _orientation(im)
    except ImageError as e:
        raise ImageError(f"cannot decode image {name}: {e}") from e
    except Exception as e:  # PIL raises many types for corrupt data
        msg = _ADDRESS.sub("", str(e)).strip()
        raise ImageError(f"cannot decode image {name}: {type(e).__name__}: {msg}") from e
    ext = FORMAT_EXT.get(fmt or "")
    if ext is None:
        raise ImageError(f"unsupported image format {fmt!r}: {name}")
    if ext == "png":
        short = _png_short_rows(data)
        if short:
            raise ImageError(f"{short}: {name}")
    h, w = rgb.shape[:2]
    if (w, h) != (record.width, record.height):
        raise ImageError(f"image {name} is {w}x{h} but the annotations say {record.width}x{record.height}")
    return rgb, ext, orientation


def decode(data: bytes, record: ImageRecord) -> tuple[np.ndarray, str]:
    """RGB uint8 [H, W, 3] and the member extension; EXIF orientation is ignored, as in COCO."""
    rgb, ext, _ = decode_full(data, record)
    return rgb, ext


def header_size(path: str) -> tuple[int, int] | None:
    """``(width, height)`` from the image file's header (nothing decoded), or None if unreadable."""
    try:
        with open_input(path) as f, Image.open(f) as im:
            return int(im.size[0]), int(im.size[1])
    except Exception:  # unreadable here: the read stage reports it with its reason
        return None
