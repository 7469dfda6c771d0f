"""SAM 2 segmenter (the ``sam2`` package, SAM 2.1 Hiera configs): one encoding per image, grid
prompts decoded in batches, one mask per point by the same multimask rules as :mod:`.sam`.

Per image: ``SAM2Transforms`` (resize to 1024 x 1024, normalise; as ``SAM2ImagePredictor``), one
``forward_image`` pass (several images batched on a GPU), the backbone features prepared as the
predictor does (``no_mem_embed`` added). Then the ``n x n`` grid points, scaled into the 1024
input as ``transform_coords`` does, are decoded ``points_per_batch`` at a time by
``sam_prompt_encoder`` + ``sam_mask_decoder`` (``repeat_image=True``, high-resolution features),
as ``SAM2ImagePredictor._predict`` does. Only the 256 x 256 low-res logits exist: the picked one
is resampled bilinearly to the table resolution and thresholded at 0 (the predictor's
``mask_threshold``); the table is packed and deduplicated on the device (:mod:`.device_tables`).

Models: ``hiera_t | hiera_s | hiera_b+ | hiera_l`` (the SAM 2.1 configs shipped in the package;
``--sam-checkpoint`` must be the matching ``sam2.1_hiera_*.pt``, its sha256 is in the identity),
or ``tiny``: a small random-weight SAM 2 built from the same classes for tests.
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np
import torch
import torch.nn.functional as F

from ..checksums import file_sha256
from .base import (
    SEGMENTERS,
    CandidateTable,
    SegmenterBase,
    check_image,
    grid_points,
    offset_positions,
    table_shape,
)
from .device_tables import dedup_rows, pack_rows
from .sam import DTYPES, MULTIMASK_RULES, resolve_device, resolve_points_per_batch

MODEL_CONFIGS = {
    "hiera_t": "configs/sam2.1/sam2.1_hiera_t.yaml",
    "hiera_s": "configs/sam2.1/sam2.1_hiera_s.yaml",
    "hiera_b+": "configs/sam2.1/sam2.1_hiera_b+.yaml",
    "hiera_l": "configs/sam2.1/sam2.1_hiera_l.yaml",
}
MODEL_TYPES = (*MODEL_CONFIGS, "tiny")
# The tiny test model: the hiera_t config scaled down (same classes, same 1024 input geometry).
TINY_OVERRIDES = [
    "++model.image_encoder.trunk.embed_dim=8",
    "++model.image_encoder.trunk.num_heads=1",
    "++model.image_encoder.trunk.stages=[1,1,2,1]",
    "++model.image_encoder.trunk.global_att_blocks=[3]",
    "++model.image_encoder.neck.backbone_channel_list=[64,32,16,8]",
    "++model.image_encoder.neck.d_model=32",
    "++model.memory_attention.num_layers=1",
]
_FEAT_SIZES = ((256, 256), (128, 128), (64, 64))  # backbone levels for the 1024 input (as the predictor)


def load_sam2(model_type: str, checkpoint: str | None, seed: int = 0) -> tuple[torch.nn.Module, str]:
    """A SAM 2 model (eval, CPU) and its ``checkpoint_sha256`` identity string."""
    from sam2.build_sam import build_sam2

    if model_type == "tiny":
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(int(seed))
            model = build_sam2(MODEL_CONFIGS["hiera_t"], None, device="cpu", hydra_overrides_extra=TINY_OVERRIDES)
        return model.eval(), f"random-seed-{int(seed)}"
    if model_type not in MODEL_CONFIGS:
        raise ValueError(f"unknown sam2 model type {model_type!r}; valid: {', '.join(MODEL_TYPES)}")
    if not checkpoint:
        raise ValueError(f"--sam-checkpoint PATH is required for sam2 {model_type}; "
                         "checkpoints cannot be downloaded at run time")
    if not os.path.isfile(checkpoint):
        raise FileNotFoundError(f"SAM 2 checkpoint for {model_type} not found: {checkpoint}")
    sha = file_sha256(checkpoint)
    model = build_sam2(MODEL_CONFIGS[model_type], checkpoint, device="cpu")  # weights_only load, strict
    return model.eval(), sha


class _Features:
    """Per-image SAM 2 features (``image_embed`` [B, C, 64, 64] + two high-res levels); slicing
    ``feats[k : k + 1]`` gives one image's, as the SAM segmenter's tensor does."""

    def __init__(self, image_embed: torch.Tensor, high_res: list[torch.Tensor]) -> None:
        self.image_embed, self.high_res = image_embed, high_res

    def __getitem__(self, sl: slice) -> "_Features":
        return _Features(self.image_embed[sl], [f[sl] for f in self.high_res])


class Sam2Segmenter(SegmenterBase):
    """Grid-prompted SAM 2 producing :class:`CandidateTable` s. ``self.model`` is the ``SAM2Base``."""

    def __init__(self, model_type: str = "hiera_l", checkpoint: str | None = None,
                 points_per_batch: int | str = "auto", multimask: str = "best_iou", dtype: str = "float32",
                 device: str | torch.device = "auto", table_max_side: int = 256, seed: int = 0,
                 encoder_batch_size: int = 4) -> None:
        from sam2.utils.transforms import SAM2Transforms

        multimask = str(multimask)
        if multimask not in MULTIMASK_RULES:
            raise ValueError(f"unknown multimask rule {multimask!r}; valid: {', '.join(MULTIMASK_RULES)}")
        if dtype not in DTYPES:
            raise ValueError(f"unknown dtype {dtype!r}; valid: {', '.join(DTYPES)}")
        if encoder_batch_size < 1:
            raise ValueError("encoder_batch_size must be >= 1")
        model, sha = load_sam2(model_type, checkpoint, seed)
        self.device = resolve_device(device)
        self.model = model.to(self.device).eval()
        self.points_per_batch = resolve_points_per_batch(points_per_batch, self.device)
        self.encoder_batch_size = int(encoder_batch_size)
        self.multimask, self.dtype, self.table_max_side = multimask, dtype, int(table_max_side)
        self.mask_threshold = 0.0  # SAM2ImagePredictor's default
        self.transforms = SAM2Transforms(resolution=self.model.image_size, mask_threshold=self.mask_threshold)
        self.identity: dict[str, Any] = {
            "name": "sam2",
            "model_type": model_type,
            "config": os.path.basename(MODEL_CONFIGS.get(model_type, MODEL_CONFIGS["hiera_t"])),
            "checkpoint_sha256": sha,
            "multimask": multimask,
            "points_per_batch": self.points_per_batch,
            "table_max_side": self.table_max_side,
            "dtype": dtype,
            "mask_threshold": self.mask_threshold,
            "mask_source": "lowres_logits_bilinear",
        }

    def _autocast(self) -> torch.autocast:
        return torch.autocast(device_type=self.device.type, dtype=torch.bfloat16, enabled=self.dtype == "bfloat16")

    @torch.inference_mode()
    def encode(self, images: list[np.ndarray]) -> tuple[_Features, list[tuple[int, int]]]:
        """Backbone features of ``images`` (one ``forward_image`` pass; per image on CPU, where
        batching would change float rounding) and their ``(H, W)``."""
        def run(x: torch.Tensor) -> _Features:
            with self._autocast():
                out = self.model.forward_image(x)
                _, vision_feats, _, _ = self.model._prepare_backbone_features(out)
                if self.model.directly_add_no_mem_embed:
                    vision_feats[-1] = vision_feats[-1] + self.model.no_mem_embed
            b = x.shape[0]
            feats = [f.permute(1, 2, 0).reshape(b, -1, *size) for f, size in zip(vision_feats[::-1], _FEAT_SIZES[::-1])][::-1]
            return _Features(feats[-1], feats[:-1])

        # (a read-only array, e.g. a decoded image's view, is copied: ToTensor warns on those)
        xs = [self.transforms(im if im.flags.writeable else im.copy())[None].to(self.device) for im in images]
        if self.device.type == "cpu":
            parts = [run(x) for x in xs]
            feats = _Features(torch.cat([p.image_embed for p in parts]),
                              [torch.cat([p.high_res[i] for p in parts]) for i in range(len(parts[0].high_res))])
        else:
            feats = run(torch.cat(xs))
        return feats, [im.shape[:2] for im in images]

    def _sample_grid(self, shape: tuple[int, int]) -> torch.Tensor:
        """``grid_sample`` grid of the table's pixel centres over the whole (resized) input."""
        h, w = shape
        ys = (torch.arange(h, dtype=torch.float64, device=self.device) + 0.5) / h * 2.0 - 1.0
        xs = (torch.arange(w, dtype=torch.float64, device=self.device) + 0.5) / w * 2.0 - 1.0
        gy, gx = torch.meshgrid(ys, xs, indexing="ij")
        return torch.stack([gx, gy], dim=-1).float()[None]

    @torch.inference_mode()
    def decode_on_device(self, feats: _Features, image_size: tuple[int, int],
                         points: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
        """Thresholded masks (bool ``[P, h, w]``, table resolution) and picked predicted IoUs for
        ``(x, y)`` pixel points of one encoded image, on the device."""
        H, W = image_size
        shape = table_shape(H, W, self.table_max_side)
        res = float(self.model.image_size)
        pts = np.asarray(points, dtype=np.float64).reshape(-1, 2) / np.array([W, H]) * res
        coords = torch.as_tensor(pts, dtype=torch.float32, device=self.device)
        grid = self._sample_grid(shape)
        image_pe = self.model.sam_prompt_encoder.get_dense_pe()
        multi = self.multimask != "single"
        fixed = None if self.multimask in ("best_iou", "single") else int(self.multimask)
        masks, scores = [], []
        for start in range(0, coords.shape[0], self.points_per_batch):
            c = coords[start : start + self.points_per_batch, None, :]
            labels = torch.ones(c.shape[:2], dtype=torch.int, device=self.device)
            with self._autocast():
                sparse, dense = self.model.sam_prompt_encoder(points=(c, labels), boxes=None, masks=None)
                low, iou, _, _ = self.model.sam_mask_decoder(
                    image_embeddings=feats.image_embed, image_pe=image_pe, sparse_prompt_embeddings=sparse,
                    dense_prompt_embeddings=dense, multimask_output=multi, repeat_image=True,
                    high_res_features=feats.high_res)
            iou = iou.float()
            pick = (torch.full((c.shape[0],), fixed, dtype=torch.long, device=self.device) if fixed is not None
                    else iou.argmax(dim=1))
            rows = torch.arange(c.shape[0], device=self.device)
            logits = low[rows, pick].float()[:, None]
            table = F.grid_sample(logits, grid.expand(c.shape[0], -1, -1, -1), mode="bilinear",
                                  padding_mode="border", align_corners=False)
            masks.append(table[:, 0] > self.mask_threshold)
            scores.append(iou[rows, pick])
        if not masks:
            return (torch.zeros((0, *shape), dtype=torch.bool, device=self.device),
                    torch.zeros(0, dtype=torch.float32, device=self.device))
        return torch.cat(masks), torch.cat(scores)

    def segment_points(self, image: np.ndarray, points: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Masks (bool ``[P, h, w]``) and scores for arbitrary ``(x, y)`` points, e.g. refined anchors."""
        image = check_image(image)
        feats, _ = self.encode([image])
        masks, scores = self.decode_on_device(feats[0:1], image.shape[:2], points)
        return masks.cpu().numpy(), scores.cpu().numpy().astype(np.float32)

    def segment(self, image: np.ndarray, n: int, offset_m: int | None = None) -> CandidateTable:
        """Candidate table of one uint8 RGB image on the ``n x n`` grid."""
        return self.segment_batch([image], n, offset_m)[0]

    def segment_batch(self, images: list[np.ndarray], n: int, offset_m: int | None = None) -> list[CandidateTable]:
        """Candidate tables; the encoder runs on up to ``encoder_batch_size`` images at once."""
        images = [check_image(im) for im in images]
        tables: list[CandidateTable] = []
        for start in range(0, len(images), self.encoder_batch_size):
            chunk = images[start : start + self.encoder_batch_size]
            feats, sizes = self.encode(chunk)
            for k, (H, W) in enumerate(sizes):
                one = feats[k : k + 1]
                table = self._grid_table(one, (H, W), n)
                if offset_m is not None:
                    points, where = offset_positions(H, W, n, offset_m)
                    packed, sc = [np.zeros((0, (table.shape[0] * table.shape[1] + 7) // 8), np.uint8)], [np.zeros(0, np.float32)]
                    for s in range(0, len(points), 512):
                        m, scr = self.decode_on_device(one, (H, W), points[s : s + 512])
                        packed.append(pack_rows(m).cpu().numpy())
                        sc.append(scr.cpu().numpy().astype(np.float32))
                    table = table.with_offsets(np.concatenate(packed), np.concatenate(sc), where)
                tables.append(table)
        return tables

    def _grid_table(self, feats: _Features, image_size: tuple[int, int], n: int) -> CandidateTable:
        H, W = image_size
        shape = table_shape(H, W, self.table_max_side)
        masks, scores = self.decode_on_device(feats, image_size, grid_points(H, W, n))
        rows = pack_rows(masks)
        found = dedup_rows(rows)
        if found is None:
            return CandidateTable.from_point_rows(rows.cpu().numpy(), n, scores.cpu().numpy(), shape)
        ids, first = found
        return CandidateTable(packed=rows[first].cpu().numpy(), shape=shape,
                              index=ids.to(torch.int32).cpu().numpy().reshape(n, n),
                              scores=scores[first].cpu().numpy().astype(np.float32))


@dataclass(frozen=True)
class Sam2Options:
    sam_model: Literal["hiera_t", "hiera_s", "hiera_b+", "hiera_l", "tiny"] = "hiera_l"  # tiny: random weights
    sam_checkpoint: str | None = field(default=None, metadata={"digest": "checkpoint_sha256"})
    points_per_batch: int | Literal["auto"] = "auto"  # prompts per decoder batch; auto: 4 on CPU, 64 on GPU
    multimask: Literal["best_iou", "single", "0", "1", "2", 0, 1, 2] = "best_iou"
    dtype: Literal["float32", "bfloat16"] = "float32"
    device: str = field(default="auto", metadata={"runtime": True})  # auto | cpu | cuda | cuda:N
    table_max_side: int = 256
    seed: int = 0  # tiny: weight seed
    encoder_batch_size: int = 4  # images per encoder call

    def __post_init__(self) -> None:
        object.__setattr__(self, "multimask", str(self.multimask))
        if self.sam_model != "tiny" and not self.sam_checkpoint:
            raise ValueError(f"sam_checkpoint: required for {self.sam_model} (--sam-checkpoint PATH; "
                             "checkpoints cannot be downloaded at run time)")
        if self.points_per_batch != "auto" and self.points_per_batch < 1:
            raise ValueError(f"points_per_batch: must be >= 1 or auto, got {self.points_per_batch}")


def _from_options(o: Sam2Options) -> Sam2Segmenter:
    return Sam2Segmenter(model_type=o.sam_model, checkpoint=o.sam_checkpoint, points_per_batch=o.points_per_batch,
                         multimask=o.multimask, dtype=o.dtype, device=o.device, table_max_side=o.table_max_side,
                         seed=o.seed, encoder_batch_size=o.encoder_batch_size)


SEGMENTERS.register("sam2", Sam2Options, _from_options)
