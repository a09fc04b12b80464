import json

import pytest
from hypothesis import given, settings, strategies as st

from comfyui_drag.drag_ops.errors import DragInputError
from comfyui_drag.drag_ops.points import MAX_PAIRS, parse_points


@pytest.mark.parametrize("data", [
    '[{"handle": [1, 2], "target": [5, 6]}]',
    {"pairs": [{"handle": [1, 2], "target": [5, 6]}]},
    [[1, 2], [5, 6]],
    {"points": [[1, 2], [5, 6]]},
    [1, 2, 5, 6],
])
def test_every_accepted_form_gives_the_same_pair(data):
    p = parse_points(data, 10, 10)
    assert p.handles == ((1.0, 2.0),) and p.targets == ((5.0, 6.0),)


def test_canonical_json_round_trips():
    p = parse_points([[1.5, 2], [5, 6.25], [3, 3], [9, 0]])
    assert parse_points(p.to_json()) == p
    assert p.alternating() == [[1.5, 2], [5, 6.25], [3, 3], [9, 0]]


@pytest.mark.parametrize("data, expected", [
    ("not json", "not valid JSON"),
    ("", "no points"),
    ("[]", "no points"),
    ("[1, 2, 3]", "multiple of 4"),
    ("[[1, 2], [3, 4], [5, 6]]", "must be even"),
    ("[[1, 2], [1, 2]]", "same point"),
    ("[NaN, 1, 2, 3]", "finite"),
    ('[{"handle": [1, 2]}]', "'handle' and 'target'"),
    ('[[1, "a"], [2, 3]]', "two numbers"),
    ('{"foo": 1}', "expected a list"),
    (json.dumps([[1, 2], [3, 4]] * (MAX_PAIRS + 1)), "at most"),
])
def test_bad_point_data_gets_a_clear_error(data, expected):
    with pytest.raises(DragInputError, match=expected):
        parse_points(data)


def test_points_outside_the_image_are_rejected_with_the_image_size():
    with pytest.raises(DragInputError, match=r"outside the 16x8 image"):
        parse_points([[1, 2], [3, 9]], width=16, height=8)


def test_error_names_node_and_input():
    err = DragInputError("bad").at(node="Drag Point Picker", input="points")
    assert str(err) == "Drag Point Picker / input 'points': bad"


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=True, allow_infinity=True) | st.text(max_size=5),
    lambda children: st.lists(children, max_size=6) | st.dictionaries(st.sampled_from(
        ["handle", "target", "pairs", "points", "x"]), children, max_size=3),
    max_leaves=30)


@settings(max_examples=400, deadline=None, derandomize=True)
@given(st.one_of(json_values, json_values.map(json.dumps), st.text(max_size=40)))
def test_fuzzed_point_data_raises_only_the_clear_error(data):
    try:
        parse_points(data, 64, 48)
    except DragInputError:
        pass
