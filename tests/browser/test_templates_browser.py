"""The pack's cards in ComfyUI's template browser (Workflow -> Browse Templates), in a real ComfyUI +
headless Chromium, once per frontend (conftest.py). Screenshot: out/browser/<frontend>/templates.png.

A custom node's card is made from its file name alone (workbench/workflows/build.py): the title is
the name; 1.27 repeats it, '-' and '_' as spaces, as the description line, 1.58 shows no
description. The one-line description is drawn into the thumbnail, which must load.
"""

import pytest

from comfy_server import FRONTENDS, ROOT, run_driver

PACK = "comfyui_drag"  # the folder comfy_server.start links the pack in as
TITLES = ["Drag with DragDiffusion", "Drag with FreeDrag", "Drag with StableDrag", "Drag with GoodDrag",
          "Drag with AdaptiveDrag auto mask", "Drag step by step", "Drag, then refine with KSampler",
          "Drag with a saved identity LoRA", "Drag on SDXL", "Drag with FastDrag", "Drag with RegionDrag"]
OPEN = "Drag, then refine with KSampler"  # spaces and a comma in the URL of its JSON


@pytest.fixture(scope="module", params=[f for f in FRONTENDS if not f.vue_nodes], ids=lambda f: f"frontend-{f.id}")
def frontend(request):
    """The template browser does not depend on the node renderer: once per frontend version."""
    return request.param


@pytest.fixture(scope="module")
def browser(server, frontend):
    out = ROOT / "out" / "browser" / frontend.id
    out.mkdir(parents=True, exist_ok=True)
    return run_driver("templates_driver.mjs", server.url, PACK, str(out / "templates.png"), OPEN)


def test_cards_show_the_readable_titles(browser):
    assert sorted(card["title"] for card in browser["cards"]) == sorted(TITLES)


def test_a_description_line_if_shown_is_readable(browser):
    for card in browser["cards"]:
        assert card["description"] in (None, card["title"]), card


def test_every_thumbnail_is_the_packs_square_image_and_loads(browser):
    for card in browser["cards"]:
        assert card["image"] == {"naturalWidth": 512, "naturalHeight": 512, "alt": card["title"]}, card
    for title in TITLES:
        jpg = ROOT / "example_workflows" / f"{title}.jpg"
        assert browser["thumbnails"].get(jpg.name) == {"status": 200, "bytes": jpg.stat().st_size}, title


def test_a_card_opens_its_workflow(browser):
    opened = browser["opened"]
    assert opened.get("workflow") == OPEN, opened
    assert {"DragIdentityLoRA", "DragPointPicker", "KSampler", "SaveImage"} <= set(opened["nodes"])
