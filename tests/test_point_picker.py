"""Drag Point Picker: points in -> DragPoints out, mask decoding, errors. The node runs as ComfyUI's
executor runs it (comfy_support.run_node); mask decoding and the import check need no ComfyUI."""

import base64
import io
import json
import pathlib
import subprocess
import sys
import types

import numpy as np
import pytest
import torch
from PIL import Image

from comfy_support import comfyui, requires_comfyui, run_node  # noqa: F401
from comfyui_drag.drag_ops.errors import DragInputError
from comfyui_drag.drag_ops.points import DragPoints
from comfyui_drag.nodes.painted_mask import decode_mask

W, H = 48, 32


@pytest.fixture(scope="module")
def picker(comfyui):
    """The node class (its module imports ComfyUI's comfy_api: importable once ComfyUI runs)."""
    from comfyui_drag.nodes.point_picker import DragPointPicker
    return DragPointPicker


@pytest.fixture
def temp_dir(tmp_path, monkeypatch):
    """A stand-in for ComfyUI's folder_paths, so the preview is written under tmp_path."""
    fake = types.ModuleType("folder_paths")
    fake.get_temp_directory = lambda: str(tmp_path)
    monkeypatch.setitem(sys.modules, "folder_paths", fake)
    return tmp_path


def _image():
    return torch.rand(1, H, W, 3)


def _data_url(img: Image.Image) -> str:
    buf = io.BytesIO()
    img.save(buf, format="PNG")
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode()


def test_inputs_have_tooltips(picker):
    inputs = {i.id: i for i in picker.define_schema().inputs}
    assert list(inputs) == ["image", "points", "mask"]
    for name, i in inputs.items():
        assert i.tooltip, name
    assert inputs["points"].multiline and inputs["mask"].optional


def test_points_in_drag_points_out_and_preview(picker, temp_dir):
    image = _image()
    before = image.clone()
    text = json.dumps([{"handle": [3, 4.5], "target": [40, 30]}, {"handle": [0, 0], "target": [47, 31]}])
    out = run_node(picker, image, text, "")
    points, mask = out.result
    assert isinstance(points, DragPoints)
    assert points.handles == ((3.0, 4.5), (0.0, 0.0)) and points.targets == ((40.0, 30.0), (47.0, 31.0))
    assert mask.shape == (1, H, W) and mask.dtype == torch.float32 and bool((mask == 1).all())
    (preview,) = out.ui["images"]
    assert preview["type"] == "temp"
    assert Image.open(temp_dir / preview["filename"]).size == (W, H)
    assert torch.equal(image, before)


def test_alternating_form_accepted(picker, temp_dir):
    points, _ = run_node(picker, _image(), "[[1, 2], [10, 20]]", "").result
    assert points.handles == ((1.0, 2.0),) and points.targets == ((10.0, 20.0),)


def test_painted_mask_decoded():
    painted = np.zeros((H, W), np.uint8)
    painted[5:15, 10:30] = 255
    mask = decode_mask(_data_url(Image.fromarray(painted, "L").convert("RGB")), W, H)
    assert mask.shape == (1, H, W)
    assert torch.equal(mask[0], torch.from_numpy(painted.astype(np.float32) / 255))


def test_transparent_pixels_are_not_painted():
    rgba = np.zeros((H, W, 4), np.uint8)
    rgba[..., :3] = 255  # white everywhere, but opaque only in one block
    rgba[0:8, 0:8, 3] = 255
    mask = decode_mask(_data_url(Image.fromarray(rgba, "RGBA")), W, H)[0]
    assert mask[:8, :8].eq(1).all() and mask.sum() == 64


def test_mask_size_mismatch_is_a_located_error(picker, temp_dir):
    url = _data_url(Image.new("L", (W + 1, H), 255))
    with pytest.raises(DragInputError) as e:
        run_node(picker, _image(), '[{"handle": [1, 1], "target": [5, 5]}]', url)
    assert e.value.node == "Drag Point Picker" and e.value.input == "mask"
    assert f"{W + 1}x{H}" in str(e.value) and f"{W}x{H}" in str(e.value)


def test_garbage_mask_is_a_located_error(picker, temp_dir):
    with pytest.raises(DragInputError) as e:
        run_node(picker, _image(), '[[1, 1], [5, 5]]', "data:image/png;base64,!!!")
    assert e.value.input == "mask"


@pytest.mark.parametrize("text", ["[]", "", "[[1, 1]]", '[{"handle": [1, 1], "target": [48, 5]}]', "{bad"])
def test_bad_points_are_located_errors(picker, text, temp_dir):
    with pytest.raises(DragInputError) as e:
        run_node(picker, _image(), text, "", hidden={"unique_id": "7"})
    assert e.value.node == "Drag Point Picker" and e.value.input == "points"


def test_module_imports_without_comfyui():
    """Importing the pack, and its ComfyUI-free modules, must not pull in ComfyUI modules (they exist
    only inside ComfyUI); the nodes come from the V3 entry point, imported only when ComfyUI calls it."""
    code = ("import sys, importlib; sys.path.insert(0, sys.argv[1]); import pack_loader; m = pack_loader.load();"
            "assert callable(m.comfy_entrypoint) and m.WEB_DIRECTORY == './js';"
            "assert not hasattr(m, 'NODE_CLASS_MAPPINGS');"
            "[importlib.import_module('comfyui_drag.nodes.' + n) for n in ('bridge', 'runtime', 'values', 'method',"
            " 'painted_mask', 'auto_mask_engine', 'comfy_network')];"
            "bad = [n for n in ('comfy', 'comfy_api', 'folder_paths', 'server') if n in sys.modules];"
            "assert not bad, bad")
    root = pathlib.Path(__file__).resolve().parents[1]
    subprocess.run([sys.executable, "-c", code, str(root)], check=True, timeout=120)
