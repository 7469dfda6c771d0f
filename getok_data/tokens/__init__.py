"""The GETok token contract: vocabulary, anchor geometry, codecs and a strict parser."""
from .codec import (
    Box, Grounding, Item, Mask, OffsetGroup, ParseError, Point, Polyline, Refinement,
    encode, encode_all, parse, parse_one, tokenize,
)
from .convert import (
    apply_refinement, box_from_xyxy, decode_box, decode_point, groundings_of, keypoints_to_points,
    point_from_xy, polyline_from_xy, positions, refinement_for,
)
from .geometry import Grid
from .vocab import (
    DELETE, KEEP, NUM_OFFSET_TOKENS, OFFSET_STEPS, WRAPPER_TOKENS, WRAPPERS, grid_token,
    grid_token_id, offset_token, offset_token_id, offset_tokens, vocabulary,
)

__all__ = [
    "Box", "Grounding", "Item", "Mask", "OffsetGroup", "ParseError", "Point", "Polyline",
    "Refinement", "encode", "encode_all", "parse", "parse_one", "tokenize",
    "apply_refinement", "box_from_xyxy", "decode_box", "decode_point", "groundings_of",
    "keypoints_to_points", "point_from_xy", "polyline_from_xy", "positions", "refinement_for",
    "Grid", "DELETE", "KEEP", "NUM_OFFSET_TOKENS", "OFFSET_STEPS", "WRAPPER_TOKENS", "WRAPPERS",
    "grid_token", "grid_token_id", "offset_token", "offset_token_id", "offset_tokens", "vocabulary",
]
