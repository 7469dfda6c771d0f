"""A tiny random-weight SAM for tests and CI: the real segment-anything classes, scaled down.

Same input geometry as the real model (1024 input, patch 16, 64 x 64 embeddings, 256 x 256
low-res masks), so every code path of :mod:`getok_data.segmenters.sam` is exercised, but the
encoder has one block of width 32 and the decoder one two-way block, so an image encodes and
a 16 x 16 grid decodes in about half a second on two CPU cores.

The weights are random (``torch.manual_seed(seed)`` inside :func:`torch.random.fork_rng`, so the
caller's global RNG is untouched) and then a few are rescaled so the masks are non-trivial:

smooth masks whose edges follow colour edges (e.g. a flat circle on a plain background), a few
dozen unique masks for 64 points (so deduplication is exercised), see :func:`_sharpen`.
The result is not a segmenter anyone should use; it is a deterministic, image-dependent mask
generator that costs almost nothing.
"""
from __future__ import annotations

from functools import partial

import torch
from segment_anything.modeling import ImageEncoderViT, MaskDecoder, PromptEncoder, Sam, TwoWayTransformer

TINY_DIM = 32


def build_tiny_sam(seed: int = 0) -> Sam:
    """Build the tiny SAM with deterministic weights for ``seed`` (eval mode, CPU, float32)."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(int(seed))
        sam = Sam(
            image_encoder=ImageEncoderViT(
                depth=1,
                embed_dim=TINY_DIM,
                img_size=1024,
                mlp_ratio=2.0,
                norm_layer=partial(torch.nn.LayerNorm, eps=1e-6),
                num_heads=1,
                patch_size=16,
                qkv_bias=True,
                use_rel_pos=True,
                global_attn_indexes=(0,),
                window_size=14,
                out_chans=TINY_DIM,
            ),
            prompt_encoder=PromptEncoder(
                embed_dim=TINY_DIM,
                image_embedding_size=(64, 64),
                input_image_size=(1024, 1024),
                mask_in_chans=16,
            ),
            mask_decoder=MaskDecoder(
                num_multimask_outputs=3,
                transformer=TwoWayTransformer(depth=1, embedding_dim=TINY_DIM, mlp_dim=64, num_heads=1),
                transformer_dim=TINY_DIM,
                iou_head_depth=3,
                iou_head_hidden_dim=TINY_DIM,
            ),
        )
        _sharpen(sam)
    sam.eval()
    return sam


@torch.no_grad()
def _sharpen(sam: Sam) -> None:
    """Rescale a few random weights so the masks are smooth, image-dependent and varied.

    * ``output_upscaling`` transposed convolutions: each 2 x 2 kernel is replaced by its mean
      (nearest-neighbour upsampling), which removes the random checkerboard of the raw init, so
      a mask is a smooth function of the image embedding and its edges follow colour edges;
    * decoder attentions: keys share the queries' projection (zero biases) and are sharpened
      8x, and the prompt positional-encoding frequencies are doubled, so the attention is a
      position/content similarity rather than noise and the masks vary with the point.
    """
    dec = sam.mask_decoder
    for i in (0, 3):
        w = dec.output_upscaling[i].weight
        w.copy_(w.mean(dim=(2, 3), keepdim=True).expand_as(w))
    layer = dec.transformer.layers[0]
    for att in (layer.cross_attn_image_to_token, layer.cross_attn_token_to_image, dec.transformer.final_attn_token_to_image):
        att.k_proj.weight.copy_(att.q_proj.weight)
        att.q_proj.weight.mul_(8.0)
        att.q_proj.bias.zero_()
        att.k_proj.bias.zero_()
    sam.prompt_encoder.pe_layer.positional_encoding_gaussian_matrix.mul_(2.0)
