"""Reliability without ComfyUI: every bad input gets the pack's one clear error (naming the node,
the input and what was expected), nothing handed in is changed, same inputs give the same bits.

The node tests call the V3 nodes as ComfyUI's executor calls them (comfy_support.run_node), with no
models: their checks run before any model work. The node classes subclass ComfyUI's io.ComfyNode,
so those tests start ComfyUI (the comfyui fixture); the rest need none. What needs models, cancel
and files is in test_comfy_reliability.py.
"""

import base64
import io
import json
import math
import re
import struct
import zlib
from types import SimpleNamespace

import pytest
import torch
from hypothesis import given, settings, strategies as st
from PIL import Image

from comfyui_drag.drag_ops import presets
from comfyui_drag.drag_ops.automask import AutoMaskSettings
from comfyui_drag.drag_ops.drag import DraggedLatent, DragSettings, drag
from comfyui_drag.drag_ops.errors import DragInputError
from comfyui_drag.drag_ops.inversion import Trajectory, invert
from comfyui_drag.drag_ops.lora import LoraSettings
from comfyui_drag.drag_ops.model import FeatureSpec
from comfyui_drag.drag_ops.overrides import apply_overrides
from comfyui_drag.drag_ops.pipeline import check_image, run_edit
from comfyui_drag.drag_ops.points import MAX_PAIRS, MAX_TEXT, DragPoints, parse_points
from comfy_support import comfyui, run_node  # noqa: F401
from comfyui_drag.nodes.auto_mask_engine import compute_auto_mask
from comfyui_drag.drag_ops.one_pass_presets import ONE_PASS_PRESETS
from comfyui_drag.nodes.method import configure, configure_one_pass
from comfyui_drag.nodes.painted_mask import decode_mask
from comfyui_drag.nodes.runtime import image_from_comfy, located, mask_from_comfy
from comfyui_drag.nodes.values import DragResult, Inversion
from tiny_models import blob_image, tiny_cond, tiny_model

W, H = 64, 48  # the picker tests' image: width x height


@pytest.fixture(scope="module")
def nodes(comfyui):
    """The V3 node classes of the comfyui_drag copy whose errors and values this module uses (their
    modules import ComfyUI's comfy_api, importable once ComfyUI runs)."""
    from comfyui_drag.nodes import auto_mask, drag_edit, drag_optimize, point_picker, reference_sample
    return SimpleNamespace(picker=point_picker.DragPointPicker, optimize=drag_optimize.DragLatentOptimizer,
                           sample=reference_sample.DragReferenceSampler, edit=drag_edit.DragEdit,
                           auto_mask=auto_mask.DragAutoMask)


# -- point data --------------------------------------------------------------------------------

BAD_POINTS = [
    # (what, data, expected in the message)
    ("not JSON", "drag the cat", "not valid JSON"),
    ("empty text", "   ", "no points"),
    ("empty list", "[]", "no points"),
    ("JSON null", "null", "must be a list"),
    ("a number", "42", "must be a list"),
    ("object without pairs", '{"cat": [1, 2]}', "expected a list of pairs"),
    ("pairs not a list", '{"pairs": 7}', "must be a list"),
    ("wrong nesting", "[[[1, 2]], [[3, 4]]]", "must be [x, y]"),
    ("three numbers a point", "[[1, 2, 3], [4, 5, 6]]", "must be [x, y]"),
    ("odd point count", "[[1, 2], [3, 4], [5, 6]]", "must be even"),
    ("flat list not of 4", "[1, 2, 3]", "multiple of 4"),
    ("pair without target", '[{"handle": [1, 2]}]', "'handle' and 'target'"),
    ("text coordinates", '[["1", "2"], ["3", "4"]]', "two numbers"),
    ("boolean coordinate", "[true, 1, 2, 3]", "two numbers"),
    ("null coordinate", "[[null, 1], [2, 3]]", "two numbers"),
    ("NaN", "[NaN, 1, 2, 3]", "finite"),
    ("Infinity", '[{"handle": [Infinity, 1], "target": [2, 3]}]', "finite"),
    ("-Infinity", "[[-Infinity, 1], [2, 3]]", "finite"),
    ("overflowing float", "[1e400, 1, 2, 3]", "non-finite"),
    ("400-digit integer", "[" + "9" * 400 + ", 1, 2, 3]", "non-finite"),
    ("5000-digit integer", "[" + "9" * 5000 + ", 1, 2, 3]", "not valid JSON"),
    ("deep nesting", "[" * 50_000, "not valid JSON"),
    ("very long text", "[" + "1, " * (MAX_TEXT // 3) + "1]", "characters long"),
    ("too many pairs", json.dumps([[1, 2], [3, 4]] * (MAX_PAIRS + 1)), "at most"),
    ("huge flat list", json.dumps(list(range(4 * MAX_PAIRS + 4))), "too many points"),
    ("handle equal to target", "[[10, 10], [10, 10]]", "same point"),
    ("handle nearly equal to target", "[[10, 10], [10.5, 10]]", "same point"),
    ("handle outside (x)", "[[64, 10], [10, 10]]", "outside the 64x48 image"),
    ("target outside (y)", "[[10, 10], [10, 48]]", "outside the 64x48 image"),
    ("negative coordinate", "[[-1, 10], [10, 10]]", "outside"),
    ("1e308 coordinate", "[[1e308, 10], [10, 10]]", "outside"),
    ("invalid UTF-8 bytes", b"\xff\xfe[1, 2, 3, 4]", "not valid JSON"),
]


@pytest.mark.parametrize("what, data, expected", BAD_POINTS, ids=[c[0] for c in BAD_POINTS])
def test_hostile_point_data_gets_the_clear_error(what, data, expected):
    with pytest.raises(DragInputError, match=re.escape(expected)):
        parse_points(data, W, H)


@pytest.mark.parametrize("data", [None, 5, 2.5, {1, 2, 3, 4}, torch.zeros(4), object(), [[1, 2], {"a": 1}],
                                  [10 ** 400, 1, 2, 3], [float("nan"), 1, 2, 3]])
def test_python_objects_of_the_wrong_type_get_the_clear_error(data):
    with pytest.raises(DragInputError):
        parse_points(data, W, H)


number = st.one_of(st.integers(-10 ** 30, 10 ** 30), st.floats(allow_nan=True, allow_infinity=True),
                   st.just(10 ** 400), st.booleans(), st.none(), st.text(max_size=3))
point = st.one_of(st.lists(number, min_size=0, max_size=3), number)
pair = st.one_of(st.fixed_dictionaries({"handle": point, "target": point}), st.dictionaries(st.text(max_size=6), point))
near_valid = st.one_of(st.lists(pair, max_size=8), st.lists(point, max_size=10), st.lists(number, max_size=12),
                       st.fixed_dictionaries({"pairs": st.lists(pair, max_size=4)}),
                       st.fixed_dictionaries({"points": st.lists(point, max_size=6)}))


@settings(max_examples=300, deadline=None, derandomize=True)
@given(near_valid, st.booleans(), st.integers(1, 300), st.integers(1, 300))
def test_fuzzed_near_valid_points_give_the_clear_error_or_valid_pairs(data, as_json, width, height):
    """Structures close to the accepted forms (where the parser's branches are), with hostile numbers:
    either the clear error, or pairs that really are inside the image and really move."""
    if as_json:
        try:
            data = json.dumps(data)
        except (ValueError, OverflowError):
            return
    try:
        points = parse_points(data, width, height)
    except DragInputError:
        return
    assert 1 <= len(points) <= MAX_PAIRS
    for h, t in zip(points.handles, points.targets):
        assert all(math.isfinite(v) for v in (*h, *t))
        assert 0 <= h[0] < width and 0 <= t[0] < width and 0 <= h[1] < height and 0 <= t[1] < height
        assert math.dist(h, t) >= 1


# -- Drag Point Picker -------------------------------------------------------------------------

def data_url(img: Image.Image, fmt: str = "PNG") -> str:
    buf = io.BytesIO()
    img.save(buf, fmt)
    return f"data:image/{fmt.lower()};base64," + base64.b64encode(buf.getvalue()).decode()


def png_header_claiming(width: int, height: int) -> str:
    """A few hundred bytes of PNG that claim a width x height greyscale image (a decompression bomb's header)."""
    def chunk(kind, data):
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
    png = (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0))
           + chunk(b"IDAT", zlib.compress(b"\0" * 100)) + chunk(b"IEND", b""))
    return "data:image/png;base64," + base64.b64encode(png).decode()


BAD_MASKS = [
    ("plain text", "paint here", "PNG data URL"),
    ("not base64", "data:image/png;base64,@@@@", "readable image"),
    ("base64 of text", "data:image/png;base64," + base64.b64encode(b"hello").decode(), "readable image"),
    ("truncated data URL", data_url(Image.new("L", (W, H)))[:60], "readable image"),
    ("other size", data_url(Image.new("L", (10, 10))), "10x10 but the image is 64x48"),
    ("decompression bomb", png_header_claiming(100_000, 100_000), "readable image"),
    ("bomb-sized, under PIL's limit", png_header_claiming(12_000, 12_000), "12000x12000 but the image"),
    ("header only, right size", png_header_claiming(W, H), "readable image"),
    ("too long", "data:image/png;base64," + "A" * 50_000_001, "characters long"),
]


@pytest.mark.filterwarnings("ignore::PIL.Image.DecompressionBombWarning")
@pytest.mark.parametrize("what, data, expected", BAD_MASKS, ids=[c[0] for c in BAD_MASKS])
def test_bad_painted_masks_get_the_clear_error(what, data, expected):
    with pytest.raises(DragInputError, match=re.escape(expected)):
        decode_mask(data, W, H)


@settings(max_examples=150, deadline=None, derandomize=True)
@given(st.one_of(st.text(max_size=80), st.binary(max_size=120).map(
    lambda b: "data:image/png;base64," + base64.b64encode(b).decode()), st.binary(max_size=60).map(
    lambda b: "data:image/png;base64," + base64.b64encode(b"\x89PNG\r\n\x1a\n" + b).decode())))
def test_fuzzed_mask_data_raises_only_the_clear_error(data):
    try:
        mask = decode_mask(data, W, H)
    except DragInputError:
        return
    assert mask.shape == (1, H, W)


@pytest.mark.parametrize("mode", ["L", "1", "P", "LA", "RGBA", "I;16", "CMYK"])
def test_masks_in_any_image_mode_decode(mode):
    fmt = "JPEG" if mode == "CMYK" else "PNG"
    mask = decode_mask(data_url(Image.new(mode, (W, H)), fmt), W, H)
    assert mask.shape == (1, H, W) and mask.dtype == torch.float32


@pytest.mark.parametrize("image, points, mask, input", [
    (None, "[[1, 2], [5, 6]]", "", "image"),
    (torch.rand(H, W, 3), "[[1, 2], [5, 6]]", "", "image"),
    (torch.rand(1, H, W, 3), "[[1, 2], [1, 2]]", "", "points"),
    (torch.rand(1, H, W, 3), "[[1, 2], [99, 6]]", "", "points"),
    (torch.rand(1, H, W, 3), 12, "", "points"),
    (torch.rand(1, H, W, 3), "[[1, 2], [5, 6]]", "data:image/png;base64,xx", "mask"),
])
def test_point_picker_names_itself_and_the_input(nodes, image, points, mask, input):
    with pytest.raises(DragInputError, match=rf"^Drag Point Picker / input '{input}': "):
        run_node(nodes.picker, image, points, mask)


# -- IMAGE and MASK conversion ------------------------------------------------------------------

BAD_IMAGES = [
    ("not a tensor", [[0.5]], "expected an IMAGE"),
    ("rank 3", torch.rand(H, W, 3), "expected an IMAGE"),
    ("rank 5", torch.rand(1, 1, H, W, 3), "expected an IMAGE"),
    ("batch of 2", torch.rand(2, H, W, 3), "a batch of 2 images"),
    ("empty batch", torch.rand(0, H, W, 3), "a batch of 0 images"),
    ("1 channel", torch.rand(1, H, W, 1), "3 \\(RGB\\) or 4 \\(RGBA\\) channels"),
    ("channels first", torch.rand(1, 3, H, W), "channels"),
    ("uint8", torch.zeros(1, H, W, 3, dtype=torch.uint8), "floating-point"),
    ("NaN pixels", torch.full((1, H, W, 3), float("nan")), "finite"),
    ("inf pixels", torch.full((1, H, W, 3), float("inf")), "finite"),
]


@pytest.mark.parametrize("what, image, expected", BAD_IMAGES, ids=[c[0] for c in BAD_IMAGES])
def test_bad_images_get_the_clear_error(what, image, expected):
    with pytest.raises(DragInputError, match=rf"input 'image': .*{expected}"):
        image_from_comfy(image)


BAD_MASK_TENSORS = [
    ("not a tensor", "everything", "expected a single MASK"),
    ("other size", torch.ones(1, 32, 32), "32x32 but the image is 64x48"),
    ("transposed", torch.ones(1, W, H), "48x64 but the image is 64x48"),
    ("batch of 2", torch.ones(2, H, W), "expected a single MASK"),
    ("rank 4", torch.ones(1, 1, H, W), "expected a single MASK"),
    ("int64", torch.ones(1, H, W, dtype=torch.int64), "float mask"),
    ("bool", torch.ones(1, H, W, dtype=torch.bool), "float mask"),
    ("NaN", torch.full((1, H, W), float("nan")), "finite"),
]


@pytest.mark.parametrize("what, mask, expected", BAD_MASK_TENSORS, ids=[c[0] for c in BAD_MASK_TENSORS])
def test_bad_mask_tensors_get_the_clear_error(what, mask, expected):
    with pytest.raises(DragInputError, match=rf"input 'mask': .*{expected}"):
        mask_from_comfy(mask, (H, W))


def test_conversions_copy_and_leave_their_inputs_alone():
    image, mask = torch.rand(1, H, W, 4), torch.rand(1, H, W)
    before = image.clone(), mask.clone()
    x, m = image_from_comfy(image), mask_from_comfy(mask, (H, W))
    x.add_(1), m.add_(1)
    assert torch.equal(image, before[0]) and torch.equal(mask, before[1])


def test_located_names_the_node_and_keeps_the_input():
    with pytest.raises(DragInputError, match=r"^Drag Edit / input 'mask': bad$"):
        with located("Drag Edit"):
            raise DragInputError("bad", input="mask")


# -- settings: overrides, strategies, presets ---------------------------------------------------

BAD_OVERRIDES = [
    ("not JSON", "{drag.learning_rate: 1}", "not valid JSON"),
    ("not an object", "[1, 2]", "JSON object"),
    ("not text", 5, "JSON text"),
    ("unknown setting", '{"drag.speed": 2}', "unknown setting 'drag.speed'"),
    ("typo with a hint", '{"learning_rate": 2}', "did you mean"),
    ("a part, not a setting", '{"drag.features": 1}', "unknown setting"),
    ("a strategy by override", '{"tracker": "nearest"}', "choose it with the tracker"),
    ("text for a number", '{"drag.learning_rate": "fast"}', "finite number"),
    ("NaN", '{"drag.learning_rate": NaN}', "finite number"),
    ("Infinity", '{"schedule.max_steps": Infinity}', "finite number"),
    ("bool for a number", '{"lora.steps": true}', "finite number"),
    ("fraction for a count", '{"schedule.max_steps": 1.5}', "whole number"),
    ("negative count", '{"schedule.max_steps": -3}', ">= 0"),
    ("negative rate", '{"drag.learning_rate": -0.1}', ">= 0"),
    ("zero LoRA rank", '{"lora.rank": 0}', "lora.rank must be a whole number from 1 to 256, got 0"),
    ("zero LoRA batch", '{"lora.batch_size": 0}', "lora.batch_size must be a whole number from 1 to 64, got 0"),
    ("huge LoRA rank", '{"lora.rank": 1000000000}', "lora.rank must be a whole number from 1 to 256"),
    ("zero LoRA learning rate", '{"lora.learning_rate": 0}', "lora.learning_rate must be a number above 0"),
    ("bool for an optional number", '{"lora.alpha": true}', "finite number"),
    ("number for a list", '{"drag.features.blocks": 1}', "takes a list"),
    ("empty list", '{"drag.features.blocks": []}', "non-empty list"),
    ("text in a number list", '{"drag.features.blocks": ["a"]}', "list of numbers"),
    ("fraction in an index list", '{"drag.features.blocks": [1.5]}', "whole number"),
    ("nested list", '{"drag.features.blocks": [[1]]}', "finite number"),
    ("number in a name list", '{"lora.targets": [1]}', "list of text"),
    ("feature size of 1 number", '{"drag.features.size": [5]}', "height, width"),
    ("feature size as a number", '{"drag.features.size": 5}', "height, width|finite number|list"),
    ("unknown mask reduction", '{"drag.mask_reduction": "median"}', "'sum' or 'mean'"),
    ("unknown mask reference", '{"drag.mask_reference": 3}', "takes text"),
    ("unknown supervision reference", '{"supervision.reference": "x"}', "'current' or 'original'"),
    ("text for a switch", '{"auto_mask.smooth": "yes"}', "true or false"),
]


@pytest.mark.parametrize("what, text, expected", BAD_OVERRIDES, ids=[c[0] for c in BAD_OVERRIDES])
def test_bad_overrides_get_the_clear_error(what, text, expected):
    preset = "AdaptiveDrag" if "auto_mask" in str(text) else "DragDiffusion"
    with pytest.raises(DragInputError, match=rf"input 'overrides': .*({expected})"):
        configure(preset, overrides=text)


SETTING_NAMES = sorted({path for name in presets.PRESETS for path in presets.describe(name)})
json_leaf = st.one_of(st.none(), st.booleans(), st.integers(-10 ** 20, 10 ** 20), st.floats(), st.text(max_size=4))
json_value = st.recursive(json_leaf, lambda c: st.lists(c, max_size=3) | st.dictionaries(st.text(max_size=3), c,
                                                                                          max_size=2), max_leaves=6)


@settings(max_examples=300, deadline=None, derandomize=True)
@given(st.sampled_from(list(presets.PRESETS)),
       st.dictionaries(st.one_of(st.sampled_from(SETTING_NAMES), st.text(max_size=8)), json_value, max_size=3))
def test_fuzzed_overrides_raise_only_the_clear_error(preset, data):
    try:
        text = json.dumps(data)
    except ValueError:
        return
    try:
        config = configure(preset, overrides=text)
    except DragInputError as e:
        assert e.input == "overrides"
        return
    assert config.lora.rank >= 1 and config.drag.learning_rate >= 0


ONE_PASS_NAMES = sorted({path for name in ONE_PASS_PRESETS for path in presets.describe(name)})


@settings(max_examples=200, deadline=None, derandomize=True)
@given(st.sampled_from(list(ONE_PASS_PRESETS)),
       st.dictionaries(st.one_of(st.sampled_from(ONE_PASS_NAMES), st.text(max_size=8)), json_value, max_size=3))
def test_fuzzed_overrides_of_the_one_pass_presets_raise_only_the_clear_error(preset, data):
    try:
        text = json.dumps(data)
    except ValueError:
        return
    try:
        config = configure_one_pass(preset, text)
    except DragInputError as e:
        assert e.input == "overrides"
        return
    assert config.num_steps >= 2 and 0 < config.inversion_strength <= 1


def test_good_overrides_still_apply():
    config = configure("DragDiffusion", overrides=json.dumps({
        "drag.features.blocks": [1, -1], "drag.features.size": [8, 12], "lora.alpha": 8,
        "schedule.max_steps": 5.0, "lora.targets": ["to_q"]}))
    assert config.drag.features.blocks == (1, -1) and config.drag.features.size == (8, 12)
    assert config.lora.alpha == 8 and config.schedule.max_steps == 5 and isinstance(config.schedule.max_steps, int)
    assert config.lora.targets == ("to_q",)


@pytest.mark.parametrize("kwargs, expected, input", [
    ({"preset": "MagicDrag"}, "unknown preset", "preset"),
    ({"tracker": "teleport"}, "unknown tracker", "tracker"),
    ({"supervision": "teleport"}, "unknown supervision", "supervision"),
    ({"schedule": "teleport"}, "unknown schedule", "schedule"),
    ({"tracker": "line_search"}, "cannot work together", "strategies"),
    ({"supervision": "adaptive_template"}, "cannot work together", "strategies"),
    ({"supervision": "confident"}, "cannot work together", "strategies"),
])
def test_unknown_and_incompatible_strategies_get_the_clear_error(kwargs, expected, input):
    args = {"preset": "DragDiffusion", **kwargs}
    with pytest.raises(DragInputError, match=rf"input '{input}': .*{expected}"):
        configure(**args)


def test_a_bad_override_is_reported_by_the_node_before_any_model_is_touched(nodes):
    with pytest.raises(DragInputError, match=r"^Drag Latent Optimizer / input 'overrides': unknown setting"):
        run_node(nodes.optimize, None, None, None, None, "DragDiffusion", "preset", "preset", "preset",
                 overrides='{"nope": 1}')
    with pytest.raises(DragInputError, match=r"^Drag Edit / input 'strategies': .*cannot work together"):
        run_node(nodes.edit, None, None, None, None, None, "DragDiffusion", True, 0, tracker="line_search")


# -- node inputs of the pack's own types --------------------------------------------------------

def fake_inversion(seed=0, steps=7, num_steps=10, hw=(32, 32)):
    g = torch.Generator().manual_seed(seed)
    latents = torch.randn(steps + 1, 4, hw[0] // 2, hw[1] // 2, generator=g)
    return Inversion(Trajectory(latents), num_steps, torch.zeros(1, 3, *hw), codec=None)


def fake_drag(inversion, step_index=7):
    result = DraggedLatent(inversion.trajectory.at(step_index).clone(), step_index, [], [], 1)
    return DragResult(result, presets.preset("DragDiffusion"), inversion.num_steps, None,
                       inversion.trajectory.at(0).clone())


POINTS = parse_points([[10, 12], [18, 12]])


@pytest.mark.parametrize("points, inversion, input, expected", [
    ("[[10, 12], [18, 12]]", fake_inversion(), "points", "expected DRAG_POINTS"),
    (None, fake_inversion(), "points", "expected DRAG_POINTS"),
    (POINTS, None, "inversion", "expected DRAG_INVERSION"),
    (POINTS, "inversion", "inversion", "expected DRAG_INVERSION"),
    (parse_points([[10, 12], [40, 12]]), fake_inversion(), "points", "outside the 32x32 image"),
])
def test_drag_optimizer_rejects_wrong_types_and_points_outside(nodes, points, inversion, input, expected):
    with pytest.raises(DragInputError, match=rf"^Drag Latent Optimizer / input '{input}': .*{expected}"):
        run_node(nodes.optimize, None, inversion, None, points, "DragDiffusion", "preset", "preset", "preset")


def test_drag_optimizer_rejects_a_mask_of_another_size(nodes):
    with pytest.raises(DragInputError, match=r"^Drag Latent Optimizer / input 'mask': mask is 16x16"):
        run_node(nodes.optimize, None, fake_inversion(), None, POINTS, "DragDiffusion", "preset", "preset",
                 "preset", mask=torch.ones(1, 16, 16))


@pytest.mark.parametrize("make, input, expected", [
    (lambda inv: (None, fake_drag(inv)), "inversion", "expected DRAG_INVERSION"),
    (lambda inv: (inv, None), "drag", "expected DRAG_RESULT"),
    (lambda inv: (inv, "drag"), "drag", "expected DRAG_RESULT"),
    (lambda inv: (inv, fake_drag(fake_inversion(seed=1))), "drag", "another inversion"),  # another image
    (lambda inv: (inv, fake_drag(fake_inversion(num_steps=20))), "drag", "another inversion"),
    (lambda inv: (inv, fake_drag(fake_inversion(hw=(32, 48)))), "drag", "another inversion"),
    (lambda inv: (fake_inversion(steps=3), fake_drag(inv)), "drag", "another inversion"),  # too shallow
])
def test_reference_sampler_rejects_a_drag_from_another_inversion(nodes, make, input, expected):
    inversion, drag_result = make(fake_inversion())
    with pytest.raises(DragInputError, match=rf"^Drag Reference Sampler / input '{input}': .*{expected}"):
        run_node(nodes.sample, None, inversion, drag_result, None, True, -1)


def test_drag_edit_rejects_points_that_are_not_drag_points(nodes):
    with pytest.raises(DragInputError, match=r"^Drag Edit / input 'points': expected DRAG_POINTS"):
        run_node(nodes.edit, None, None, None, None, [[1, 2], [3, 4]], "DragDiffusion", True, 0)


def test_auto_mask_rejects_points_that_are_not_drag_points(nodes):
    image = torch.rand(1, 32, 32, 3)
    with pytest.raises(DragInputError, match=r"^Drag Auto Mask / input 'points': expected DRAG_POINTS .* got str"):
        run_node(nodes.auto_mask, None, None, image, "[[10, 12], [18, 12]]", 200, True, -1)


# -- the engine's own checks --------------------------------------------------------------------

@pytest.mark.parametrize("image, expected", [
    (torch.zeros(1, 3, 0, 0), "non-zero multiple of 16"),
    (torch.zeros(1, 3, 8, 8), "non-zero multiple of 16"),
    (torch.zeros(1, 3, 36, 32), "36: both sides"),
    (torch.zeros(1, 3, 32, 40), "multiple of 16"),
    (torch.zeros(1, 4, 32, 32), "must be \\[1, 3, H, W\\]"),
    (torch.zeros(2, 3, 32, 32), "must be \\[1, 3, H, W\\]"),
    (torch.zeros(3, 32, 32), "must be \\[1, 3, H, W\\]"),
])
def test_image_sizes_the_model_cannot_take(model, image, expected):
    with pytest.raises(DragInputError, match=rf"input 'image': .*{expected}"):
        check_image(image, model)


@pytest.fixture(scope="module")
def short_trajectory(model):
    cond = tiny_cond()
    with torch.no_grad():
        latent = model.codec.encode(blob_image())
    return invert(model, latent, cond, 0.2), cond


@pytest.mark.parametrize("mask, expected", [
    (torch.zeros(32, 32), "mask is empty"),
    (torch.full((32, 32), float("nan")), "non-finite"),
    (torch.ones(16, 32), "16x32|32x16"),
    (torch.ones(1, 32, 32), "2-D"),
])
def test_drag_rejects_bad_masks(model, short_trajectory, mask, expected):
    trajectory, cond = short_trajectory
    with pytest.raises(DragInputError, match=rf"input 'mask': .*({expected})"):
        drag(model, trajectory, cond, POINTS, (32, 32), mask)


@pytest.mark.parametrize("preset, override", [("DragDiffusion", {"supervision.radius": 10 ** 9}),
                                              ("DragDiffusion", {"supervision.radius": 65}),
                                              ("StableDrag", {"tracker.radius": 1000})])
def test_patch_radii_that_would_exhaust_memory_are_refused(preset, override):
    """Refused by the strategies' own rules when the override is applied, before any stage."""
    path = re.escape(next(iter(override)))
    with pytest.raises(DragInputError, match=rf"input 'overrides': {path} must be a whole number from [01] to 64"):
        apply_overrides(presets.preset(preset), override)


def test_drag_rejects_feature_blocks_the_unet_does_not_have(model, short_trajectory):
    trajectory, cond = short_trajectory
    with pytest.raises(DragInputError, match=r"input 'overrides': feature blocks \[7\] do not exist"):
        drag(model, trajectory, cond, POINTS, (32, 32), None, DragSettings(features=FeatureSpec(blocks=(7,))))


def test_settings_objects_reject_impossible_values():
    with pytest.raises(ValueError):
        LoraSettings(rank=0)
    with pytest.raises(ValueError):
        DragSettings(mask_reduction="median")
    with pytest.raises(ValueError):
        FeatureSpec(size=(0, 4))


# -- same inputs, same bits; nothing handed in changes -------------------------------------------

SHORT = {
    "DragDiffusion": {"schedule.max_steps": 3},
    "GoodDrag": {"schedule.rounds_per_denoise": 1, "schedule.supervision_steps": 1, "schedule.drag_rounds": 2},
    "AdaptiveDrag": {"schedule.n": 4, "schedule.max_steps": 3},
}


def edit_once(model, name, image, mask, cond):
    config = apply_overrides(presets.preset(name), {"lora.steps": 1, "lora.rank": 2, "lora.batch_size": 1,
                                                    **SHORT[name]})
    if config.auto_mask is not None:
        config.auto_mask = AutoMaskSettings(n_segments=8, ensemble=1, colour_weight=1.0, dilation=2)
    return run_edit(model, image, parse_points([[10, 12], [18, 12]]), cond, config, mask)


@pytest.mark.parametrize("name", list(SHORT))
def test_same_inputs_give_bitwise_the_same_edit_and_change_nothing(name):
    model = tiny_model(num_steps=6)
    image, mask, cond = blob_image(), torch.zeros(32, 32), tiny_cond()
    mask[4:28, 4:28] = 1
    weights = {k: v.clone() for k, v in model.network.unet.state_dict().items()}
    procs = {k: type(v) for k, v in model.network.unet.attn_processors.items()}
    flags = {k: p.requires_grad for k, p in model.network.unet.named_parameters()}
    inputs = image.clone(), mask.clone(), cond.context.clone()

    first = edit_once(model, name, image, mask, cond)
    second = edit_once(model, name, image, mask, cond)
    assert torch.equal(first.image, second.image) and torch.equal(first.latent, second.latent)
    assert torch.equal(first.trajectory.latents, second.trajectory.latents)
    assert all(torch.equal(first.lora.state[k], second.lora.state[k]) for k in first.lora.state)
    assert first.drag.history == second.drag.history

    assert torch.equal(image, inputs[0]) and torch.equal(mask, inputs[1]) and torch.equal(cond.context, inputs[2])
    after = model.network.unet.state_dict()
    assert after.keys() == weights.keys() and all(torch.equal(after[k], weights[k]) for k in weights)
    assert {k: type(v) for k, v in model.network.unet.attn_processors.items()} == procs
    assert not getattr(model.network.unet, "peft_config", None)
    assert not any(m._forward_hooks or m._forward_pre_hooks for m in model.network.unet.modules())
    assert {k: p.requires_grad for k, p in model.network.unet.named_parameters()} == flags


def test_auto_mask_rejects_bad_points_before_any_model_work(model):
    with pytest.raises(DragInputError, match="outside the 32x32 image"):
        compute_auto_mask(model, blob_image(), "[[10, 12], [50, 12]]")
    with pytest.raises(DragInputError, match="not valid JSON"):
        compute_auto_mask(model, blob_image(), "nope")
    assert isinstance(parse_points(POINTS), DragPoints)
