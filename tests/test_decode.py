"""The candidate-table decoder: anchors, refined positions (the containing-candidate rule), DELETE."""
import numpy as np

from getok_data.decode import TableDecoder
from getok_data.tokens import OFFSET_STEPS, Grid, Mask
from getok_data.train.evaluate import requantise

N = 4  # a 16x16 table: grid cells of 4x4 pixels, anchors at pixel (4i + 2, 4j + 2)


def table(masks: dict[tuple[int, int], np.ndarray], size: int = 16) -> TableDecoder:
    """A decoder whose grid point (i, j) has ``masks[(i, j)]`` (points not listed: no mask)."""
    index = np.full((N, N), -1, np.int32)
    stack = []
    for (i, j), m in masks.items():
        index[j, i] = len(stack)
        stack.append(m.reshape(-1))
    arrays = {"index": index, "shape": np.array([size, size], np.int32),
              "masks": np.packbits(np.array(stack, bool), axis=1)}
    return TableDecoder(arrays, N)


def block(y0, y1, x0, x1, size=16):
    m = np.zeros((size, size), bool)
    m[y0:y1, x0:x1] = True
    return m


OBJECT = block(0, 4, 0, 8)  # the object: cells (0, 0) and (1, 0)
BACKGROUND = block(0, 4, 8, 16)  # cells (2, 0) and (3, 0)


def test_anchors_decode_to_their_own_masks_and_delete_to_nothing():
    dec = table({(1, 0): OBJECT, (2, 0): BACKGROUND})
    assert np.array_equal(dec.decode([(1, 0)]), OBJECT)
    assert np.array_equal(dec.decode([(1, 0), (2, 0)], [(0, 0), None]), OBJECT)
    assert not dec.decode([(3, 3)]).any()  # no mask there
    assert not dec.decode([(1, 0)], [None]).any()


def test_a_move_takes_the_mask_that_contains_the_refined_position():
    dec = table({(0, 0): OBJECT, (1, 0): OBJECT, (2, 0): BACKGROUND})
    # (1, 0) right by half a cell: x = 8, the first column of (2, 0)'s cell; the background contains it
    assert dec.stand_in(1, 0, (1, 0)) == (2, 0)
    assert np.array_equal(dec.decode([(1, 0)], [(1, 0)]), BACKGROUND)
    # (2, 0) left by half a cell lands on the same x = 8: the nearest point (1, 0)'s mask (the
    # object) does not contain it, the anchor's own does, so the move changes nothing
    assert dec.stand_in(2, 0, (-1, 0)) == (2, 0)
    # (1, 0) left: x = 4 is inside the object, whose mask (0, 0) also has
    assert dec.stand_in(1, 0, (-1, 0)) == (0, 0)
    assert np.array_equal(dec.decode([(1, 0)], [(-1, 0)]), OBJECT)


def test_a_position_no_stored_mask_contains_adds_nothing():
    small = {(i, j): block(4 * j + 1, 4 * j + 3, 4 * i + 1, 4 * i + 3) for i in range(N) for j in range(N)}
    dec = table(small)  # each mask is a 2x2 blob around its own anchor: the cell edges are uncovered
    for step in OFFSET_STEPS:
        if step not in (None, (0, 0)):
            assert dec.stand_in(1, 1, step) is None, step
    assert np.array_equal(dec.decode([(1, 1), (2, 2)], [(1, 0), (0, 0)]), small[(2, 2)])


def test_diagonal_moves_try_the_nearest_point_then_the_anchor_then_the_other_corners():
    # (1, 1) up-right by one step: x = 8, y = 4, the top-left pixel of (2, 1)'s cell
    corner = block(4, 5, 8, 9)
    dec = table({(1, 1): block(4, 8, 4, 8), (2, 0): block(0, 4, 8, 12), (2, 1): block(0, 1, 0, 1),
                 (1, 0): corner})
    assert dec.stand_in(1, 1, (1, 1)) == (1, 0)  # (2, 0) misses it, (1, 1) misses it, (1, 0) has it
    dec = table({(1, 1): block(0, 16, 0, 16), (2, 0): block(0, 16, 0, 16), (1, 0): corner})
    assert dec.stand_in(1, 1, (1, 1)) == (2, 0)  # the nearest point toward the move comes first
    dec = table({(1, 1): block(0, 16, 0, 16), (1, 0): corner})
    assert dec.stand_in(1, 1, (1, 1)) == (1, 1)  # then the anchor


def test_moves_off_the_image_add_nothing():
    dec = table({(3, 0): block(0, 16, 0, 16), (0, 3): block(0, 16, 0, 16)})
    assert dec.stand_in(3, 0, (1, 0)) is None  # x = 16: right of the last column
    assert dec.stand_in(3, 0, (0, 1)) == (3, 0)  # y = 0 is still on the image
    assert dec.stand_in(0, 3, (0, -1)) is None  # y = 16: below the last row


def test_requantised_masks_decode_to_the_refined_mask():
    """A further refinement round starts from grid tokens that decode to what the user saw."""
    rng = np.random.default_rng(0)
    grid = Grid(N, 16, 16)
    for _ in range(200):
        masks = {(i, j): rng.random((16, 16)) < 0.3 for i in range(N) for j in range(N) if rng.random() < 0.8}
        dec = table(masks)
        anchors = sorted({(int(a), int(b)) for a, b in rng.integers(0, N, (4, 2))}, key=lambda p: (p[1], p[0]))
        steps = [OFFSET_STEPS[k] for k in rng.integers(0, len(OFFSET_STEPS), len(anchors))]
        refined = dec.decode(anchors, steps)
        item = requantise(Mask(tuple(anchors)), steps, grid, dec)
        if item is None:
            assert not refined.any()
        else:
            assert np.array_equal(dec.decode(list(item.anchors)), refined)


def test_stored_offset_masks_decode_refined_positions_exactly():
    """With the build's offset masks (``grid.offset_masks``) a move takes the segmenter's own mask
    at the refined position, even where the containing-candidate rule would borrow another."""
    dec = table({(0, 0): OBJECT, (1, 0): OBJECT, (2, 0): BACKGROUND})
    sliver = block(0, 4, 6, 10)  # what the segmenter gave half a cell right of (1, 0)
    arrays = {"index": dec.index, "shape": np.array([16, 16], np.int32),
              "masks": np.concatenate([dec.packed, np.packbits(sliver.reshape(1, -1), axis=1)])}
    offsets = np.repeat(dec.index[..., None], 9, axis=2)  # every move: the anchor's own mask...
    right, up = OFFSET_STEPS.index((1, 0)), OFFSET_STEPS.index((0, 1))
    offsets[0, 1, right] = len(dec.packed)  # ...except (1, 0) moved right: the sliver
    offsets[0, 1, up] = -1  # and (1, 0) moved up: off the image
    exact = TableDecoder({**arrays, "offsets": offsets}, N)
    assert dec.stand_in(1, 0, (1, 0)) == (2, 0)  # the rule without offset masks: the background
    assert np.array_equal(exact.decode([(1, 0)], [(1, 0)]), sliver)
    assert not exact.decode([(1, 0)], [(0, 1)]).any()
    assert np.array_equal(exact.decode([(1, 0), (2, 0)], [(0, 0), None]), OBJECT)
    assert np.array_equal(exact.decode([(1, 0)]), OBJECT)  # unrefined answers: the grid's masks
