"""The point picker widget in a real ComfyUI + headless Chromium, once per frontend (conftest.py).

Screenshots go to out/browser/<frontend>/ (point_picker.png, point_picker_node.png,
point_picker_reloaded.png).
"""

import pytest
from PIL import Image, ImageDraw

from comfyui_drag.nodes.painted_mask import decode_mask

from comfy_server import ROOT, run_driver, start

IMAGE = "drag_picker_test.png"
W, H = 320, 180  # non-square on purpose: the widget letterboxes it


@pytest.fixture(scope="module")
def server(tmp_path_factory, frontend):
    base = tmp_path_factory.mktemp("comfy_base")
    (base / "input").mkdir()
    img = Image.new("RGB", (W, H), (40, 60, 90))
    draw = ImageDraw.Draw(img)
    draw.ellipse((60, 40, 140, 120), fill=(230, 180, 40))
    draw.rectangle((200, 90, 280, 160), fill=(200, 60, 60))
    img.save(base / "input" / IMAGE)
    yield from start(base, frontend)


@pytest.fixture(scope="module")
def run(server):
    out = ROOT / "out" / "browser" / server.frontend
    out.mkdir(parents=True, exist_ok=True)
    return run_driver("picker_driver.mjs", server.url, IMAGE, str(out))


def pairs(*flat):
    return [{"handle": list(flat[i]), "target": list(flat[i + 1])} for i in range(0, len(flat), 2)]


def test_image_shown_without_running(run):
    assert run["shownBeforeRun"]["w"] == W and run["shownBeforeRun"]["h"] == H
    assert "type=input" in run["shownBeforeRun"]["src"]
    t = run["transform"]
    assert t["ox"] == 0 and t["oy"] > 0, "a wide image is letterboxed top and bottom"


def test_failed_run_still_sends_the_image(run):
    r = run["failedRun"]
    assert not r["ok"] and "Drag Point Picker" in r["error"] and "no points" in r["error"]
    assert "type=temp" in (r["imageUrl"] or "")


def test_clicks_give_pairs_in_image_pixels(run):
    assert run["pendingAfterOneClick"] == [20, 30]
    assert run["afterClicks"] == pairs((20, 30), (100, 80), (250, 150), (300, 20))


def test_drag_remove_undo(run):
    assert run["afterDrag"] == pairs((20, 30), (120, 90), (250, 150), (300, 20))
    assert run["threePairs"] == 3
    assert run["afterRemove"] == run["afterDrag"]
    assert run["afterUndo"] == run["afterDrag"] + pairs((5, 170), (40, 160))


def test_clicks_when_zoomed(run):
    assert run["zoomed"] == pairs((60, 100), (160, 40))
    assert run["afterZoomUndo"] == 2


def test_wheel_over_widget_zooms_graph(run):
    before, after = run["wheelZoom"]
    assert after != before


def test_text_edit_updates_canvas(run):
    t = run["textEdit"]
    assert t["pairs"] == pairs((1, 2), (3, 4)) and t["restored"] == 2
    assert t["badStatus"].startswith("points: not valid JSON") and t["keptPairs"] == 1, "bad text keeps the last good pairs"


def test_painted_mask(run):
    m = run["mask"]
    assert m["text"].startswith("data:image/png;base64,")
    assert (m["w"], m["h"]) == (W, H)
    assert m["painted"] == 255 and m["erased"] == 0 and m["far"] == 0
    mask = decode_mask(m["text"], W, H)[0]
    assert mask[120, 40] == 1 and mask[120, 80] == 0 and mask[20, 300] == 0
    # brush radius 10 view px = 10 / scale image px: the stroke is that thick, nothing else is painted
    r = 10 / m["scale"]
    assert mask[int(120 - r) + 2: int(120 + r) - 1, 40].eq(1).all()
    assert mask[: int(120 - r) - 2].sum() == 0 and mask[int(120 + r) + 3:].sum() == 0


def test_server_accepts_widget_output(run):
    assert run["run"]["ok"], run["run"]
    assert "type=temp" in run["run"]["imageUrl"], "the widget shows the executed preview"


def test_reload_restores_points_and_mask(run):
    r = run["reload"]
    assert r["after"] == r["before"]
    assert r["pairs"] == run["afterDrag"]
    assert r["maskSize"] == [W, H] and r["imageShown"]


def test_no_errors_from_the_pack(run):
    ours = [m for m in run["console"] if "comfyui_drag" in m]
    assert not ours, ours
