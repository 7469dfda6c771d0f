"""The token contract: vocabulary order, geometry, round trips, strict parsing."""
import pytest
from hypothesis import given, settings, strategies as st

from getok_data.tokens import (
    DELETE, OFFSET_STEPS, Box, Grid, Mask, OffsetGroup, ParseError, Point, Polyline, Refinement,
    apply_refinement, box_from_xyxy, decode_box, encode, encode_all, grid_token_id,
    keypoints_to_points, offset_token_id, parse, point_from_xy, vocabulary,
)

sizes = st.tuples(st.integers(1, 64), st.integers(17, 2000), st.integers(17, 2000))


def anchors(n, lo=1, hi=12):
    return st.lists(st.tuples(st.integers(0, n - 1), st.integers(0, n - 1)), min_size=lo, max_size=hi)


@st.composite
def items(draw):
    n = draw(st.integers(1, 64))
    kind = draw(st.sampled_from(["point", "box", "seg", "pl", "offset"]))
    if kind == "point":
        return n, Point(draw(anchors(n, 1, 1))[0])
    if kind == "box":
        (a, b), (c, d) = draw(anchors(n, 2, 2))
        return n, Box((min(a, c), min(b, d)), (max(a, c), max(b, d)))
    if kind == "seg":
        return n, Mask(tuple(draw(anchors(n))))
    if kind == "pl":
        return n, Polyline(tuple(draw(anchors(n, 2))))
    steps = st.one_of(st.none(), st.sampled_from(OFFSET_STEPS))
    groups = []
    for gk in draw(st.lists(st.sampled_from(["point", "box", "seg", "pl"]), min_size=1, max_size=3)):
        k = {"point": 1, "box": 2}.get(gk) or draw(st.integers(2, 6))
        groups.append(OffsetGroup(gk, tuple(draw(st.lists(steps, min_size=k, max_size=k)))))
    return n, Refinement(tuple(groups))


@settings(max_examples=300, deadline=None)
@given(items())
def test_encode_parse_encode_is_identity(case):
    n, item = case
    s = encode(item)
    parsed = parse(s, n)
    assert parsed == [item]
    assert encode_all(parsed) == s


@settings(max_examples=200, deadline=None)
@given(sizes, st.data())
def test_geometry_round_trip_on_non_square_images(size, data):
    n, w, h = size
    g = Grid(n, w, h)
    i, j = data.draw(st.integers(0, n - 1)), data.draw(st.integers(0, n - 1))
    x, y = g.anchor(i, j)
    assert (x, y) == pytest.approx(((i + 0.5) * w / n, (j + 0.5) * h / n))
    assert g.nearest(x, y) == (i, j)
    # Any pixel inside the cell quantises to that cell's anchor.
    # (exact cell edges are ambiguous in floating point: stay a hair inside)
    fx, fy = data.draw(st.floats(0.001, 0.999)), data.draw(st.floats(0.001, 0.999))
    assert g.nearest((i + fx) * w / n, (j + fy) * h / n) == (i, j)
    assert point_from_xy(x, y, g) == Point((i, j))


def test_offset_step_direction_and_lattice():
    g = Grid(4, 400, 200)  # m = 8: steps of 50 x 25 px
    assert g.m == 8 and g.step == (50.0, 25.0)
    x, y = g.anchor(1, 1)
    assert g.position(1, 1, (1, 0)) == (x + 50, y)
    assert g.position(1, 1, (0, 1)) == (x, y - 25)  # dv = +1 is UP
    assert g.position(1, 1, (-1, -1)) == (x - 50, y + 25)
    assert Grid(4, 400, 200, m=4).step == (100.0, 50.0)


def test_vocabulary_order_and_ids():
    n = 3
    v = vocabulary(n)
    assert len(v) == n * n + 10 + 10
    assert v[: n * n] == [f"<grid_{i}_{j}>" for j in range(n) for i in range(n)]
    assert v[grid_token_id(2, 1, n)] == "<grid_2_1>"
    assert v[n * n : n * n + 10] == [f"<OFF_{du}_{dv}>" for du, dv in OFFSET_STEPS] + [DELETE]
    assert v[offset_token_id((0, 0), n)] == "<OFF_0_0>" and v[offset_token_id(None, n)] == DELETE
    assert v[-10:] == ["<point>", "</point>", "<box>", "</box>", "<seg>", "</seg>", "<pl>", "</pl>",
                       "<offset>", "</offset>"]
    assert len(set(v)) == len(v)


@pytest.mark.parametrize("text,pos,why", [
    ("", 0, "no tokens"),
    ("<pl><grid_1_1></pl>", 0, "needs at least 2"),
    ("<seg><grid_1_1>", 15, "end of string"),
    ("<box><grid_1_1></box>", 0, "exactly 2"),
    ("<box><grid_3_3><grid_1_1></box>", 0, "out of order"),
    ("<point><grid_8_0></point>", 7, "outside the 8x8 grid"),
    ("<point><grid_01_0></point>", 7, "outside"),
    ("<point><OFF_0_0></point>", 7, "expected a grid token"),
    ("hello <point><grid_1_0></point>", 0, "unexpected text"),
    ("<point><grid_1_0></point> bye", 26, "unexpected text"),
    ("<offset></offset>", 8, "empty <offset>"),
    ("<offset><seg><grid_1_1></seg></offset>", 13, "expected an offset token"),
    ("<offset><offset>", 8, "inside <offset>"),
    ("<seg><grid_1_1></box>", 15, "expected a grid token"),
    ("</seg>", 0, "expected an opening wrapper"),
    ("<offset><box><OFF_2_0><OFF_0_0></box></offset>", 13, "expected an offset token"),
])
def test_parser_rejects_with_position(text, pos, why):
    with pytest.raises(ParseError) as e:
        parse(text, 8)
    assert e.value.position == pos, str(e.value)
    assert why in e.value.reason


@settings(max_examples=200, deadline=None)
@given(st.text(alphabet="<>_/gridsegOFFpoint0123456789- ", max_size=40))
def test_parser_is_total(text):
    try:
        items = parse(text, 10)
    except ParseError as e:
        assert 0 <= e.position <= len(text)
    else:
        assert encode_all(items).replace(" ", "") == text.replace(" ", "")


def test_whitespace_between_tokens_is_allowed():
    assert parse(" <point> <grid_1_2> </point>\n", 4) == [Point((1, 2))]


def test_box_and_refinement_decoding():
    g = Grid(4, 400, 200)
    b = box_from_xyxy([10, 10, 390, 190], g)
    assert b == Box((0, 0), (3, 3))
    assert decode_box(b, g) == (50.0, 25.0, 350.0, 175.0)
    assert decode_box(b, g, ((-1, 1), (1, -1))) == (0.0, 0.0, 400.0, 200.0)
    ref = parse("<offset><box><OFF_-1_0><OFF_0_-1></box><seg><OFF_0_0><OFF_1_0><DELETE></seg></offset>", 4)[0]
    prev = [b, Mask(((0, 0), (1, 0), (2, 0)))]
    pos = apply_refinement(prev, ref, g)
    assert pos[0] == [(0.0, 25.0), (350.0, 200.0)]
    assert pos[1] == [(50.0, 25.0), (200.0, 25.0), None]
    with pytest.raises(ValueError):
        apply_refinement(prev[:1], ref, g)


def test_keypoints_keep_only_labelled():
    g = Grid(4, 100, 100)
    pts, idx = keypoints_to_points([[10, 10, 2], [0, 0, 0], [90, 60, 1]], g)
    assert pts == [Point((0, 0)), Point((3, 2))] and idx == [0, 2]


def test_empty_seg_is_the_no_target_answer():
    """``<seg></seg>`` parses (gRefCOCO no-target answer, FORMAT.md section 3); other groups stay non-empty."""
    assert parse("<seg></seg>", 8) == [Mask(())]
    assert encode(Mask(())) == "<seg></seg>"
    ref = parse("<offset><seg></seg></offset>", 8)[0]
    assert ref.groups[0].kind == "seg" and ref.groups[0].steps == ()
    for bad in ("<point></point>", "<box></box>", "<pl></pl>"):
        with pytest.raises(ParseError):
            parse(bad, 8)
