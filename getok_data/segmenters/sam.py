"""SAM (segment-anything) segmenter: one encoder pass per image, all grid points decoded.

Per image: ``ResizeLongestSide(1024)`` + normalise + pad (as ``SamPredictor.set_image``), one
``image_encoder`` pass (several images batched in :meth:`SamSegmenter.segment_batch`), then the
``n x n`` grid points are decoded in batches of ``points_per_batch`` by calling
``model.prompt_encoder`` and ``model.mask_decoder`` directly. Only the LOW-RES logits
(``[B, 3, 256, 256]``) are ever produced: one logit map per point is picked by the multimask
rule, and that map is resampled bilinearly straight to the table resolution, sampling only the
valid (unpadded) part of the 1024 input, then thresholded at ``model.mask_threshold``.
Full-resolution masks (``points x 3 x 1024 x 1024``) are never materialised and
``model.postprocess_masks`` is never called.

Multimask rules: ``best_iou`` (argmax of the predicted IoU of the 3 multimask outputs),
``"0" | "1" | "2"`` (a fixed multimask output), ``single`` (``multimask_output=False``).

dtype: ``float32`` (default, on every device) or ``bfloat16`` (``torch.autocast`` on the model's
device; meant for CUDA, on CPU it is only used when explicitly requested and is slow).
Determinism: on CPU the same input and config always give the identical table, and
``segment_batch`` equals ``segment`` per image (the CPU encoder runs image by image).
``points_per_batch`` (default ``auto``: 4 on CPU, 64 on GPU; the value used is in the identity)
and, on GPU, the encoder batch only change float rounding: logits and scores move by ~1e-7, so a
mask pixel can only change where a logit is that close to 0.

``fast_decoder=True`` (the default; config ``segmenter.fast_decoder``) runs
:func:`shared_image_decode` instead of ``model.mask_decoder``: the same modules and the same math,
but the image embedding is not copied once per prompt and the prompt-independent projections of
the first two-way block are computed once per image (faster decoding, see docs/BENCHMARKS.md;
bit-identical tables on CPU, tested). Like ``points_per_batch`` it is part of the config hash.
"""
from __future__ import annotations

import math
import os
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np
import torch
import torch.nn.functional as F
from segment_anything import sam_model_registry
from segment_anything.modeling import Sam
from segment_anything.utils.transforms import ResizeLongestSide

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

MODEL_TYPES = ("vit_b", "vit_l", "vit_h", "tiny")
MULTIMASK_RULES = ("best_iou", "single", "0", "1", "2")
DTYPES = ("float32", "bfloat16")

def resolve_device(device: str | torch.device = "auto") -> torch.device:
    """``auto`` -> ``cuda`` when available, else ``cpu``; anything else is passed to torch."""
    if str(device) == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(device)


# Prompts decoded per batch for ``points_per_batch: auto``. The decoder's per-prompt tensors
# (4096 image tokens x 256 channels each) stay in cache at small batches: on CPU 4 prompts per
# batch decode 2.2x faster than 64 (docs/BENCHMARKS.md); a GPU wants large batches.
AUTO_POINTS_PER_BATCH = {"cpu": 4, "cuda": 64}


def resolve_points_per_batch(value: int | str, device: torch.device) -> int:
    """``points_per_batch`` as an int: ``auto`` picks by device type (:data:`AUTO_POINTS_PER_BATCH`)."""
    if str(value) == "auto":
        return AUTO_POINTS_PER_BATCH.get(device.type, 64)
    try:
        ppb = int(value)
    except (TypeError, ValueError):
        ppb = 0
    if ppb < 1:
        raise ValueError(f"points_per_batch must be a positive integer or 'auto', got {value!r}")
    return ppb


def load_sam(model_type: str, checkpoint: str | None, seed: int = 0) -> tuple[Sam, str]:
    """Build a SAM model and its ``checkpoint_sha256`` identity string."""
    if model_type == "tiny":
        from .tiny_sam import build_tiny_sam

        return build_tiny_sam(seed), f"random-seed-{int(seed)}"
    if model_type not in sam_model_registry or model_type == "default":
        raise ValueError(f"unknown sam model type {model_type!r}; valid: {', '.join(MODEL_TYPES)}")
    if not checkpoint:
        raise ValueError(
            f"--sam-checkpoint PATH is required for {model_type}; "
            "checkpoints cannot be downloaded at run time"
        )
    if not os.path.isfile(checkpoint):
        raise FileNotFoundError(f"SAM checkpoint for {model_type} not found: {checkpoint}")
    sha = file_sha256(checkpoint)
    # Same as sam_model_registry[model_type](checkpoint=path), but loaded onto the CPU first
    # (checkpoints saved from CUDA tensors then load on CPU-only machines) and weights-only.
    model = sam_model_registry[model_type](checkpoint=None)
    model.load_state_dict(torch.load(checkpoint, map_location="cpu", weights_only=True))
    return model.eval(), sha


def _split_heads(x: torch.Tensor, heads: int) -> torch.Tensor:
    b, n, c = x.shape
    return x.reshape(b, n, heads, c // heads).transpose(1, 2)  # [B, heads, N, C/heads]


def _attend(att: torch.nn.Module, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, sdpa: bool = False) -> torch.Tensor:
    """``segment_anything`` ``Attention.forward`` after the input projections (split heads in).

    ``sdpa``: the fused ``F.scaled_dot_product_attention`` kernel (flash / memory-efficient on a
    GPU) instead of the explicit softmax; equal up to float rounding, so it is used on GPUs only
    (CPU tables stay bit-identical to ``model.mask_decoder``)."""
    if sdpa:
        b = max(q.shape[0], k.shape[0])  # the shared image side has batch 1: broadcast it
        q, k, v = (t.expand(b, -1, -1, -1) for t in (q, k, v))
        out = F.scaled_dot_product_attention(q, k, v)
    else:
        a = torch.softmax((q @ k.transpose(-1, -2)) / math.sqrt(q.shape[-1]), dim=-1)
        out = a @ v
    b, h, n, c = out.shape
    return att.out_proj(out.transpose(1, 2).reshape(b, n, h * c))


def shared_image_decode(
    decoder: torch.nn.Module,
    image_embeddings: torch.Tensor,
    image_pe: torch.Tensor,
    sparse: torch.Tensor,
    dense: torch.Tensor,
    multimask_output: bool,
    sdpa: bool = False,
) -> tuple[torch.Tensor, torch.Tensor]:
    """``decoder(image_embeddings, image_pe, sparse, dense, multimask_output)`` for B prompts on ONE image.

    ``MaskDecoder.predict_masks`` copies the image embedding and its positional encoding once per
    prompt (``repeat_interleave``). Until the first image-to-token attention updates them, the
    image tokens are the same for every prompt (the dense no-mask embedding is one vector), so the
    first block's key/value projections (token-to-image) and query projection (image-to-token) are
    computed once and broadcast. Every other operation is the original module's, in the same order.
    ``dense`` must be the same for every prompt (no mask prompts), as in :meth:`SamSegmenter.decode`.
    ``sdpa``: attention by ``F.scaled_dot_product_attention`` (GPU; see :func:`_attend`).
    """
    t = decoder.transformer
    tokens = torch.cat([decoder.iou_token.weight, decoder.mask_tokens.weight], dim=0)
    tokens = torch.cat((tokens.unsqueeze(0).expand(sparse.size(0), -1, -1), sparse), dim=1)
    _, c, h, w = image_embeddings.shape
    keys = (image_embeddings[:1] + dense[:1]).flatten(2).permute(0, 2, 1)  # [1, HW, C]
    pe = image_pe.flatten(2).permute(0, 2, 1)
    queries, qpe = tokens, tokens
    for layer in t.layers:
        if layer.skip_first_layer_pe:
            queries = layer.self_attn(q=queries, k=queries, v=queries)
        else:
            q = queries + qpe
            queries = queries + layer.self_attn(q=q, k=q, v=queries)
        queries = layer.norm1(queries)
        ti, it = layer.cross_attn_token_to_image, layer.cross_attn_image_to_token
        kpe = keys + pe  # [1, HW, C] while keys are still shared, else [B, HW, C]
        q = _split_heads(ti.q_proj(queries + qpe), ti.num_heads)
        out = _attend(ti, q, _split_heads(ti.k_proj(kpe), ti.num_heads), _split_heads(ti.v_proj(keys), ti.num_heads),
                      sdpa)
        queries = layer.norm2(queries + out)
        queries = layer.norm3(queries + layer.mlp(queries))
        q = queries + qpe
        out = _attend(it, _split_heads(it.q_proj(kpe), it.num_heads), _split_heads(it.k_proj(q), it.num_heads),
                      _split_heads(it.v_proj(queries), it.num_heads), sdpa)
        keys = layer.norm4(keys + out)
    f = t.final_attn_token_to_image
    out = _attend(f, _split_heads(f.q_proj(queries + qpe), f.num_heads),
                  _split_heads(f.k_proj(keys + pe), f.num_heads), _split_heads(f.v_proj(keys), f.num_heads), sdpa)
    hs = t.norm_final_attn(queries + out)
    b = hs.shape[0]
    up = decoder.output_upscaling(keys.expand(b, -1, -1).transpose(1, 2).reshape(b, c, h, w))
    mask_tokens = hs[:, 1 : 1 + decoder.num_mask_tokens, :]
    hyper = torch.stack([mlp(mask_tokens[:, i, :]) for i, mlp in enumerate(decoder.output_hypernetworks_mlps)], dim=1)
    _, cu, hu, wu = up.shape
    masks = (hyper @ up.view(b, cu, hu * wu)).view(b, -1, hu, wu)
    iou = decoder.iou_prediction_head(hs[:, 0, :])
    sl = slice(1, None) if multimask_output else slice(0, 1)
    return masks[:, sl], iou[:, sl]


class SamSegmenter(SegmenterBase):
    """Grid-prompted SAM producing :class:`CandidateTable` s. ``self.model`` is the ``Sam`` module."""

    def __init__(
        self,
        model_type: str = "vit_b",
        checkpoint: str | None = None,
        points_per_batch: int | str = "auto",
        multimask: str = "best_iou",
        dtype: str = "float32",
        device: str | torch.device = "auto",
        table_max_side: int = 256,
        seed: int = 0,
        encoder_batch_size: int = 4,
        model: Sam | None = None,
        fast_decoder: bool = True,
        sdpa: bool | str = "auto",
        compile: bool | str = False,
    ) -> None:
        multimask = str(multimask)
        if multimask not in MULTIMASK_RULES:
            raise ValueError(f"unknown multimask rule {multimask!r}; valid: {', '.join(MULTIMASK_RULES)}")
        if dtype not in DTYPES:
            raise ValueError(f"unknown dtype {dtype!r}; valid: {', '.join(DTYPES)}")
        if encoder_batch_size < 1:
            raise ValueError("encoder_batch_size must be >= 1")
        if model is None:
            model, sha = load_sam(model_type, checkpoint, seed)
        else:
            sha = file_sha256(checkpoint) if checkpoint else "unknown"
        self.device = resolve_device(device)
        self.model: Sam = model.to(self.device).eval()
        self.points_per_batch = resolve_points_per_batch(points_per_batch, self.device)
        self.encoder_batch_size = int(encoder_batch_size)
        self.fast_decoder = bool(fast_decoder)
        # Fused attention in the shared-image decoder: GPU only (CPU tables stay bit-identical).
        if str(sdpa).lower() not in ("auto", "true", "false"):
            raise ValueError(f"sdpa must be auto, true or false, got {sdpa!r}")
        self.sdpa = self.device.type == "cuda" if str(sdpa).lower() == "auto" else str(sdpa).lower() == "true"
        self._decode_fn = None  # None: the module's shared_image_decode, looked up at call time
        self._encoder = self.model.image_encoder
        # compile: false | true (inductor, for GPUs) | a torch.compile backend name ("eager" in tests)
        self.compile = False if str(compile).lower() == "false" else ("inductor" if str(compile).lower() == "true" else str(compile))
        if self.compile:
            self._decode_fn = torch.compile(shared_image_decode, backend=self.compile, dynamic=False)
            self._encoder = torch.compile(self.model.image_encoder, backend=self.compile, dynamic=False)
        self.multimask = multimask
        self.dtype = dtype
        self.table_max_side = int(table_max_side)
        self.transform = ResizeLongestSide(self.model.image_encoder.img_size)
        self.identity: dict[str, Any] = {
            "name": "sam",
            "model_type": model_type,
            "checkpoint_sha256": sha,
            "multimask": multimask,
            "points_per_batch": self.points_per_batch,
            "table_max_side": self.table_max_side,
            "dtype": dtype,
            "mask_threshold": float(self.model.mask_threshold),
            "mask_source": "lowres_logits_bilinear",
        }
        if self.sdpa:  # recorded only when on, so CPU builds keep their identity
            self.identity["attention"] = "sdpa"

    # ------------------------------------------------------------------ encoder
    def _autocast(self) -> torch.autocast:
        return torch.autocast(
            device_type=self.device.type, dtype=torch.bfloat16, enabled=self.dtype == "bfloat16"
        )

    def _prepare(self, image: np.ndarray) -> tuple[torch.Tensor, tuple[int, int]]:
        """Resize (longest side 1024), normalise and pad one image: ``[1, 3, 1024, 1024]``."""
        resized = self.transform.apply_image(image)
        x = torch.as_tensor(resized, device=self.device).permute(2, 0, 1).contiguous()[None].float()
        return self.model.preprocess(x), (int(resized.shape[0]), int(resized.shape[1]))

    @torch.inference_mode()
    def encode(self, images: list[np.ndarray]) -> tuple[torch.Tensor, list[tuple[int, int]]]:
        """Image embeddings ``[B, C, 64, 64]`` (one batched encoder pass) and resized input sizes."""
        prepared = [self._prepare(im) for im in images]
        with self._autocast():
            if self.device.type == "cpu":
                # CPU kernels round differently for different batch sizes; one image at a time
                # keeps segment_batch bit-identical to segment (batching buys nothing on CPU).
                feats = torch.cat([self._encoder(p[0]) for p in prepared], dim=0)
            else:
                feats = self._encoder(torch.cat([p[0] for p in prepared], dim=0))
        return feats, [p[1] for p in prepared]

    # ------------------------------------------------------------------ decoder
    def _sample_grid(self, input_size: tuple[int, int], shape: tuple[int, int]) -> torch.Tensor:
        """``grid_sample`` grid mapping table pixel centres to the valid part of the padded input."""
        img = float(self.model.image_encoder.img_size)
        (ih, iw), (h, w) = input_size, shape
        ys = (torch.arange(h, dtype=torch.float64, device=self.device) + 0.5) * (ih / h)
        xs = (torch.arange(w, dtype=torch.float64, device=self.device) + 0.5) * (iw / w)
        gy, gx = torch.meshgrid(2.0 * ys / img - 1.0, 2.0 * xs / img - 1.0, indexing="ij")
        return torch.stack([gx, gy], dim=-1).float()[None]  # [1, h, w, 2] as (x, y)

    @torch.inference_mode()
    def decode_on_device(
        self,
        features: torch.Tensor,
        input_size: tuple[int, int],
        image_size: tuple[int, int],
        points: np.ndarray,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Thresholded masks for arbitrary ``(x, y)`` pixel points, left on the model's device.

        ``features``: ``[1, C, 64, 64]``. Returns bool ``[P, h, w]`` at table resolution and the
        picked masks' predicted IoU, float32 ``[P]``, both tensors on ``self.device``.
        """
        H, W = image_size
        shape = table_shape(H, W, self.table_max_side)
        ih, iw = input_size
        pts = np.asarray(points, dtype=np.float64).reshape(-1, 2)
        coords = torch.as_tensor(pts * np.array([iw / W, ih / H]), dtype=torch.float32, device=self.device)
        grid = self._sample_grid(input_size, shape)
        image_pe = self.model.prompt_encoder.get_dense_pe()
        multi = self.multimask != "single"
        fixed = None if self.multimask in ("best_iou", "single") else int(self.multimask)
        out_masks: list[torch.Tensor] = []
        out_scores: list[torch.Tensor] = []
        for start in range(0, coords.shape[0], self.points_per_batch):
            c = coords[start : start + self.points_per_batch, None, :]  # [B, 1, 2]
            labels = torch.ones(c.shape[:2], dtype=torch.int, device=self.device)
            with self._autocast():
                sparse, dense = self.model.prompt_encoder(points=(c, labels), boxes=None, masks=None)
                if self.fast_decoder:
                    low, iou = (self._decode_fn or shared_image_decode)(self.model.mask_decoder, features, image_pe, sparse, dense, multi,
                                               self.sdpa)
                else:
                    low, iou = self.model.mask_decoder(
                        image_embeddings=features,
                        image_pe=image_pe,
                        sparse_prompt_embeddings=sparse,
                        dense_prompt_embeddings=dense,
                        multimask_output=multi,
                    )
            iou = iou.float()
            if fixed is not None:
                pick = torch.full((c.shape[0],), fixed, dtype=torch.long, device=self.device)
            else:
                pick = iou.argmax(dim=1)  # "single": one output, index 0
            rows = torch.arange(c.shape[0], device=self.device)
            logits = low[rows, pick].float()[:, None]  # [B, 1, 256, 256]
            table = F.grid_sample(
                logits, grid.expand(c.shape[0], -1, -1, -1), mode="bilinear",
                padding_mode="border", align_corners=False,
            )
            out_masks.append(table[:, 0] > self.model.mask_threshold)
            out_scores.append(iou[rows, pick])
        if not out_masks:
            return (torch.zeros((0, *shape), dtype=torch.bool, device=self.device),
                    torch.zeros(0, dtype=torch.float32, device=self.device))
        return torch.cat(out_masks), torch.cat(out_scores).float()

    def decode(
        self,
        features: torch.Tensor,
        input_size: tuple[int, int],
        image_size: tuple[int, int],
        points: np.ndarray,
    ) -> tuple[np.ndarray, np.ndarray]:
        """Masks for arbitrary ``(x, y)`` pixel points of one encoded image, on the host:
        bool ``[P, h, w]`` at table resolution and float32 ``[P]`` predicted IoUs."""
        masks, scores = self.decode_on_device(features, input_size, image_size, points)
        return masks.cpu().numpy(), scores.cpu().numpy().astype(np.float32)

    @torch.inference_mode()
    def grid_table(self, features: torch.Tensor, input_size: tuple[int, int], image_size: tuple[int, int],
                   n: int) -> CandidateTable:
        """The ``n x n`` grid's candidate table: threshold, bit-pack and deduplicate on the device,
        so only the packed unique rows, the index map and their scores cross to the host."""
        H, W = image_size
        shape = table_shape(H, W, self.table_max_side)
        masks, scores = self.decode_on_device(features, input_size, image_size, grid_points(H, W, n))
        rows = pack_rows(masks)
        del masks
        found = dedup_rows(rows)
        if found is None:  # a fingerprint collision: exact dedup on the host (same table)
            return CandidateTable.from_point_rows(rows.cpu().numpy(), n, scores.cpu().numpy(), shape)
        ids, first = found
        return CandidateTable(
            packed=rows[first].cpu().numpy(), shape=shape, index=ids.to(torch.int32).cpu().numpy().reshape(n, n),
            scores=scores[first].cpu().numpy().astype(np.float32),
        )

    # ------------------------------------------------------------------ public
    def segment_points(self, image: np.ndarray, points: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Masks (bool ``[P, h, w]``) and scores for arbitrary ``(x, y)`` points, e.g. refined anchors."""
        image = check_image(image)
        feats, sizes = self.encode([image])
        return self.decode(feats[:1], sizes[0], image.shape[:2], points)

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
            for k, im in enumerate(chunk):
                H, W = im.shape[:2]
                table = self.grid_table(feats[k : k + 1], sizes[k], (H, W), n)
                if offset_m is not None:
                    table = self._with_offsets(table, feats[k : k + 1], sizes[k], (H, W), n, offset_m)
                tables.append(table)
        return tables

    def _with_offsets(self, table: CandidateTable, feats: torch.Tensor, input_size: tuple[int, int],
                      image_size: tuple[int, int], n: int, m: int) -> CandidateTable:
        """``table`` plus the masks one offset step from each anchor, decoded in chunks and packed
        as they come (bool masks for all ``~3 n^2`` positions at once would not fit)."""
        points, where = offset_positions(*image_size, n, m)
        row_bytes = (table.shape[0] * table.shape[1] + 7) // 8
        packed, scores = [np.zeros((0, row_bytes), np.uint8)], [np.zeros(0, np.float32)]
        for start in range(0, len(points), 512):
            masks, sc = self.decode_on_device(feats, input_size, image_size, points[start : start + 512])
            packed.append(pack_rows(masks).cpu().numpy())
            scores.append(sc.cpu().numpy().astype(np.float32))
        return table.with_offsets(np.concatenate(packed), np.concatenate(scores), where)


@dataclass(frozen=True)
class SamOptions:
    sam_model: Literal["vit_b", "vit_l", "vit_h", "tiny"] = "vit_b"  # tiny: random weights (tests)
    sam_checkpoint: str | None = field(default=None, metadata={"digest": "checkpoint_sha256"})
    points_per_batch: int | Literal["auto"] = "auto"  # prompts per decoder batch; auto: 4 on CPU, 64 on GPU
    fast_decoder: bool = True  # share the image embedding across prompts (same math)
    multimask: Literal["best_iou", "single", "0", "1", "2", 0, 1, 2] = "best_iou"
    dtype: Literal["float32", "bfloat16"] = "float32"
    device: str = field(default="auto", metadata={"runtime": True})  # auto | cpu | cuda | cuda:N
    table_max_side: int = 256  # SAM's low-res mask resolution
    seed: int = 0  # tiny: weight seed
    encoder_batch_size: int = 4  # images per encoder call
    sdpa: bool | Literal["auto"] = "auto"  # fused attention in the shared decoder; auto: on CUDA only (CPU tables bit-identical)
    compile: bool | str = False  # torch.compile encoder and decoder (GPU): true = inductor, or a backend name

    def __post_init__(self) -> None:
        object.__setattr__(self, "multimask", str(self.multimask))  # YAML may give 0/1/2 as ints
        if self.sam_model != "tiny" and not self.sam_checkpoint:
            raise ValueError(f"sam_checkpoint: required for {self.sam_model} (--sam-checkpoint PATH; "
                             "checkpoints cannot be downloaded at run time)")
        if self.points_per_batch != "auto" and self.points_per_batch < 1:
            raise ValueError(f"points_per_batch: must be >= 1 or auto, got {self.points_per_batch}")
        if self.table_max_side < 1 or self.encoder_batch_size < 1:
            raise ValueError("table_max_side, encoder_batch_size: must be >= 1")


def _from_options(o: SamOptions) -> SamSegmenter:
    return SamSegmenter(model_type=o.sam_model, checkpoint=o.sam_checkpoint, points_per_batch=o.points_per_batch,
                        fast_decoder=o.fast_decoder, multimask=o.multimask, dtype=o.dtype, device=o.device,
                        table_max_side=o.table_max_side, seed=o.seed, encoder_batch_size=o.encoder_batch_size,
                        sdpa=o.sdpa, compile=o.compile)


SEGMENTERS.register("sam", SamOptions, _from_options)
