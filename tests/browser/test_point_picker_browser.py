"""The point picker widget in a real ComfyUI + headless Chromium, once per frontend and renderer
(conftest.py): the same checks in the classic canvas and in Nodes 2.0.

Screenshots go to out/browser/<frontend>[-vue]/ (point_picker.png, point_picker_node.png,
point_picker_reloaded.png, stale_points_cleared.png).
"""

import pytest
from PIL import Image, ImageDraw

from comfyui_drag.nodes.painted_mask import decode_mask

from comfy_server import run_driver

IMAGE = "drag_picker_test.png"
W, H = 320, 180  # non-square on purpose: the widget letterboxes it
SAME_SIZE = "drag_picker_same_size.png"  # another picture of the same size: points would drag the wrong content
OTHER_SIZE = "drag_picker_other_size.png"  # 200 x 150: some points would lie outside it
JPEG = "drag_picker_test.jpg"  # IMAGE as a JPEG: the browser and PIL decode it slightly differently


def write_images(folder):
    img = Image.new("RGB", (W, H), (40, 60, 90))
    draw = ImageDraw.Draw(img)
    draw.ellipse((60, 40, 140, 120), fill=(230, 180, 40))
    draw.rectangle((200, 90, 280, 160), fill=(200, 60, 60))
    img.save(folder / IMAGE)
    img.save(folder / JPEG, quality=90)
    other = Image.new("RGB", (W, H), (200, 200, 190))
    ImageDraw.Draw(other).polygon([(20, 170), (160, 10), (300, 170)], fill=(30, 110, 50))
    other.save(folder / SAME_SIZE)
    Image.new("RGB", (200, 150), (90, 30, 120)).save(folder / OTHER_SIZE)


@pytest.fixture(scope="module")
def run(server, frontend):
    write_images(server.base / "input")
    return run_driver("picker_driver.mjs", server.url, int(frontend.vue_nodes), server.out_dir(frontend),
                      IMAGE, SAME_SIZE, OTHER_SIZE, JPEG)


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
    record = r["record"]
    assert (record["w"], record["h"]) == (W, H), "the workflow records which image its points belong to"
    assert not run.get("unidentified"), "the widget identifies every image it shows"


def cleared_status(n_pairs):
    return f"Image changed: cleared {n_pairs} pairs placed on the previous image (Undo restores them)"


def test_another_image_clears_the_points_before_any_run(run):
    """Load Image switched to another picture of the same size: the points would silently drag the
    wrong content. They are cleared at once, the status says so, and Undo brings them back."""
    s = run["stale"]["sameSize"]
    assert s["image"] == [W, H]
    assert s["pairs"] == [] and s["points"] == []
    assert s["status"].startswith(cleared_status(2))
    assert (s["record"]["w"], s["record"]["h"]) == (W, H)
    u = run["stale"]["undone"]
    assert u["pairs"] == run["afterDrag"] and u["points"] == run["afterDrag"]
    assert "Image changed" not in u["status"] and u["status"].startswith(f"{W}×{H} · 2 pairs")


def test_an_image_of_another_size_clears_the_points(run):
    s = run["stale"]["otherSize"]
    assert s["image"] == [200, 150]
    assert s["pairs"] == [] and s["status"].startswith(cleared_status(2))
    assert (s["record"]["w"], s["record"]["h"]) == (200, 150)


def test_workflow_without_record_keeps_points_on_its_own_image(run):
    """Older saves and the shipped examples have no record: their points belong to the image they open on."""
    s = run["stale"]["noRecord"]
    assert s["image"] == [W, H] and s["pairs"] == run["afterDrag"]
    assert "Image changed" not in s["status"]
    assert (s["record"]["w"], s["record"]["h"]) == (W, H), "the image they open on is recorded"


def test_workflow_without_record_whose_image_is_missing(run):
    """Its own image failed to load; the points must not carry over to the image the user picks instead."""
    assert run["stale"]["missingImage"]["pairs"] == run["afterDrag"]
    assert run["stale"]["missingImage"]["status"].startswith("could not load the image")
    s = run["stale"]["missingThenPicked"]
    assert s["image"] == [W, H] and s["pairs"] == [] and s["status"].startswith(cleared_status(2))


def test_a_run_keeps_points_placed_on_a_jpeg(run):
    """The widget shows the Load Image file first and the node's executed copy after a run."""
    assert run["stale"]["jpegRun"]["ok"], run["stale"]["jpegRun"]
    s = run["stale"]["jpegAfterRun"]
    assert s["image"] == [W, H] and s["pairs"] == run["afterDrag"] and "Image changed" not in s["status"]


def test_no_errors_from_the_pack(run):
    ours = [m for m in run["console"] if "comfyui_drag" in m]
    assert not ours, ours
