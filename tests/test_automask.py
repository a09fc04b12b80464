"""The auto-mask (AdaptiveDrag Sec. 3.3) on synthetic scenes: a red disc on a graded background.

The tiny models are random: their decoder features carry the image's layout but no semantics
(measured: a disc and the ring around it are no further apart in the feature space than two
halves of the background). So the tests that need the superpixels to follow the object use the
colour channel (weight 1); the features-only tests check only what does not depend on semantics.
"""

import numpy as np
import pytest
import torch
from scipy import ndimage

from comfy_support import CHECKPOINT, IMAGE, IMAGE_SIZE, comfyui, requires_comfyui  # noqa: F401
from comfyui_drag.drag_ops.automask import (AutoMaskSettings, auto_mask, kept_labels, make_auto_mask,
                                            path_pixels, superpixels)
from comfyui_drag.drag_ops.errors import DragInputError
from comfyui_drag.drag_ops.points import parse_points
from comfyui_drag.nodes.auto_mask_engine import compute_auto_mask
from tiny_models import blob_image

SIZE, CENTRE, RADIUS = 64, (22, 30), 11
SPACING = 16  # superpixel grid step for 16 segments on 64x64
FAR = SPACING + SPACING // 4  # beyond one superpixel and the smoothing: far background


def scene(centre=CENTRE):
    img = blob_image(SIZE, SIZE, centre=centre, radius=RADIUS)
    y, x = np.mgrid[:SIZE, :SIZE]
    disc = (x - centre[0]) ** 2 + (y - centre[1]) ** 2 <= RADIUS ** 2
    return img, disc


def path_map(points):
    out = np.zeros((SIZE, SIZE), bool)
    for yx in path_pixels(points, (SIZE, SIZE)):
        out[yx[:, 0], yx[:, 1]] = True
    return out


@pytest.mark.parametrize("centre, target", [((22, 30), (48, 30)), ((40, 20), (30, 52))])
def test_mask_covers_the_object_under_the_handle_and_the_path_but_not_far_background(model, cond, centre, target):
    img, disc = scene(centre)
    points = parse_points([list(centre), list(target)])
    dilation = 2
    settings = AutoMaskSettings(n_segments=16, colour_weight=1.0, compactness=1.0, dilation=dilation)
    mask, labels = make_auto_mask(model, img, cond, points, settings=settings)
    m = mask.numpy() > 0.5
    assert mask.shape == (SIZE, SIZE) and labels.shape == (SIZE, SIZE)
    assert set(np.unique(mask.numpy())) <= {0.0, 1.0}
    assert m[path_map(points)].all()  # handle, path and target
    assert m[disc].mean() > 0.95  # the object under the handle (its superpixels follow its edge)
    far = ndimage.distance_transform_edt(~(disc | path_map(points))) > FAR + dilation
    assert far.sum() > 0.1 * SIZE * SIZE and not m[far].any()
    assert m.mean() < 0.45


def test_features_alone_still_keep_the_path_and_leave_far_background_out(model, cond):
    img, disc = scene()
    points = parse_points([[22, 30], [48, 30]])
    settings = AutoMaskSettings(n_segments=16, colour_weight=0.0, compactness=1.0, dilation=2)
    mask, _ = make_auto_mask(model, img, cond, points, settings=settings)
    m = mask.numpy() > 0.5
    assert m[path_map(points)].all()
    far = ndimage.distance_transform_edt(~(disc | path_map(points))) > FAR + 2
    assert not m[far].any()


def test_kept_superpixels_are_those_under_the_handle_and_crossed_by_the_path():
    labels = torch.arange(16).reshape(4, 4).repeat_interleave(8, 0).repeat_interleave(8, 1)  # 4x4 cells of 8 px
    points = parse_points([[4, 4], [28, 4], [4, 28], [4, 20]])  # along the top row; inside the left column
    assert kept_labels(labels, points) == [0, 1, 2, 3, 8, 12]
    mask = auto_mask(labels, points, dilation=0, smooth=False)
    assert torch.equal(mask > 0, torch.isin(labels, torch.tensor([0, 1, 2, 3, 8, 12])))
    grown = auto_mask(labels, points, dilation=3, smooth=False)
    assert bool((grown >= mask).all()) and grown.sum() > mask.sum()
    assert float(grown[8:11, 8:11].min()) == 1 and float(grown[12:, 12:].max()) == 0  # 3 px, no more


def test_smoothing_fills_holes_between_kept_superpixels():
    labels = torch.zeros(32, 32, dtype=torch.long)
    labels[12:20, 12:20] = 1  # a superpixel enclosed by the kept one
    mask = auto_mask(labels, parse_points([[2, 2], [30, 2]]), dilation=0, smooth=True)
    assert float(mask.min()) == 1
    assert float(auto_mask(labels, parse_points([[2, 2], [30, 2]]), dilation=0, smooth=False)[15, 15]) == 0


def test_user_mask_is_intersected_and_a_disjoint_one_is_an_error():
    labels = torch.arange(4).reshape(2, 2).repeat_interleave(16, 0).repeat_interleave(16, 1)
    points = parse_points([[4, 4], [28, 4]])  # top half
    user = torch.zeros(32, 32)
    user[:, :20] = 1
    mask = auto_mask(labels, points, user, dilation=0)
    assert float(mask[:16, :20].min()) == 1 and float(mask[:, 20:].max()) == 0 and float(mask[16:].max()) == 0
    with pytest.raises(DragInputError, match="do not overlap"):
        auto_mask(labels, points, 1 - user.clone().fill_(1), dilation=0)
    with pytest.raises(DragInputError, match="but the image is"):
        auto_mask(labels, points, torch.ones(16, 16), dilation=0)


def test_superpixels_are_seeded_and_about_as_many_as_asked(model, cond):
    img, _ = scene()
    settings = AutoMaskSettings(n_segments=16)
    a, b = superpixels(model, img, cond, settings), superpixels(model, img, cond, settings)
    assert torch.equal(a, b) and a.dtype == torch.int64
    assert 8 <= len(torch.unique(a)) <= 32


def test_node_function_returns_a_comfy_mask_and_preview(model, cond):
    img, disc = scene()
    points = parse_points([[22, 30], [48, 30]])
    settings = AutoMaskSettings(n_segments=16, colour_weight=1.0, compactness=1.0, dilation=2)
    mask, preview, labels = compute_auto_mask(model, img, points, None, None, settings)
    assert mask.shape == (1, SIZE, SIZE) and preview.shape == (1, SIZE, SIZE, 3)
    assert 0 <= float(preview.min()) and float(preview.max()) <= 1
    inside, outside = preview[0][torch.from_numpy(disc) & (mask[0] > 0)], preview[0][mask[0] == 0]
    assert inside.numel() and outside.numel()  # both a kept and a left-out part are shown
    with pytest.raises(DragInputError, match="outside"):
        compute_auto_mask(model, img, parse_points([[22, 30], [80, 30]]), None, None, settings)


@requires_comfyui
def test_node_schema_has_tooltips_and_the_documented_inputs(comfyui):  # noqa: F811
    schema = comfyui.pack_nodes["DragAutoMask"].define_schema()
    inputs = {i.id: i for i in schema.inputs}
    assert {"model", "vae", "image", "points", "n_segments", "use_colour", "dilation", "mask"} <= set(inputs)
    assert all(i.tooltip for i in inputs.values())
    assert [o.io_type for o in schema.outputs] == ["MASK", "IMAGE"] and schema.category == "drag editing"


@requires_comfyui
def test_auto_mask_node_in_a_comfyui_graph(comfyui):  # noqa: F811
    """Skipped unless COMFYUI_PATH points at a ComfyUI checkout (see comfy_support.py)."""
    points = [{"handle": [22, 26], "target": [44, 26]}]
    run = comfyui.execute({
        "1": {"class_type": "CheckpointLoaderSimple", "inputs": {"ckpt_name": CHECKPOINT}},
        "3": {"class_type": "LoadImage", "inputs": {"image": IMAGE}},
        "4": {"class_type": "DragPointPicker", "inputs": {"image": ["3", 0], "points": str(points).replace("'", '"')}},
        "5": {"class_type": "DragAutoMask", "inputs": {
            "model": ["1", 0], "vae": ["1", 2], "image": ["3", 0], "points": ["4", 0], "mask": ["4", 1],
            "n_segments": 16, "use_colour": True, "dilation": 4}},
        "6": {"class_type": "PreviewImage", "inputs": {"images": ["5", 1]}},
    }, fresh=True)
    assert run.success, run.error
    mask, preview = run.outputs["5"]
    assert mask.shape == (1, IMAGE_SIZE, IMAGE_SIZE) and preview.shape == (1, IMAGE_SIZE, IMAGE_SIZE, 3)
    assert float(mask[0, 26, 22:45].min()) == 1 and 0 < float(mask.mean()) < 0.8
