"""The example workflows (example_workflows/*.json, ComfyUI's UI format) against the node definitions:
every node exists (the pack's or a stock one, see workbench/workflows/stock_nodes.json), every link joins
matching types, every widget value is valid for its input and every required input is connected or
set. The pack's nodes are read from their V3 schemas, so this starts ComfyUI (comfy_support); the
workflows are not run here (test_comfy_workflows.py runs them)."""

import importlib.util
import io
import itertools
import json

import numpy as np
import pytest
from PIL import Image

from workbench.workflows import workflow_graph as wg  # noqa: E402

from comfy_support import comfyui  # noqa: E402, F401
from comfyui_drag.drag_ops import presets  # noqa: E402
from comfyui_drag.drag_ops.points import parse_points  # noqa: E402
from comfyui_drag.nodes.painted_mask import decode_mask  # noqa: E402

WORKFLOWS = wg.load_workflows()
# The file names are the template cards' titles (ComfyUI shows nothing else, see workbench/workflows/build.py).
PRESET_FILES = {"DragDiffusion": "Drag with DragDiffusion", "FreeDrag": "Drag with FreeDrag",
                "StableDrag": "Drag with StableDrag", "GoodDrag": "Drag with GoodDrag",
                "AdaptiveDrag": "Drag with AdaptiveDrag auto mask"}
ONE_PASS_FILES = {"FastDrag": "Drag with FastDrag", "RegionDrag": "Drag with RegionDrag"}
STEP_BY_STEP, REFINE, REUSE = "Drag step by step", "Drag, then refine with KSampler", "Drag with a saved identity LoRA"
SDXL = "Drag on SDXL"
EXPECTED = set(PRESET_FILES.values()) | set(ONE_PASS_FILES.values()) | {STEP_BY_STEP, REFINE, REUSE, SDXL}


@pytest.fixture(scope="module")
def pack_specs(comfyui):
    """The pack's nodes as /object_info serves them (their V3 schemas: ComfyUI runs first)."""
    return wg.pack_nodes()


@pytest.fixture(scope="module")
def specs(pack_specs):
    return wg.all_nodes()


@pytest.fixture(scope="module")
def build(specs):
    """workbench/workflows/build.py as a module (its CARDS, WORKFLOWS and thumbnails)."""
    return importlib.import_module("workbench.workflows.build")


def nodes_of(workflow, kind):
    return [n for n in workflow["nodes"] if n["type"] == kind]


def test_the_expected_workflows_are_there():
    assert set(WORKFLOWS) == EXPECTED
    assert set(PRESET_FILES) == set(presets.PRESETS)
    assert set(ONE_PASS_FILES) == set(presets.ONE_PASS_PRESETS)


def test_the_stock_node_list_is_comfyuis():
    data = json.loads(wg.STOCK.read_text())
    assert data["comfyui_version"] and len(data["nodes"]) > 100
    for name in ("CheckpointLoaderSimple", "CLIPTextEncode", "LoadImage", "SaveImage", "PreviewImage",
                 "KSampler", "VAEDecode", "LoraLoader", "LoraLoaderModelOnly", "PreviewAny"):
        assert name in data["nodes"], name


@pytest.mark.parametrize("name", sorted(WORKFLOWS))
def test_workflow_is_valid(name, specs):
    assert wg.problems(WORKFLOWS[name], specs) == []


@pytest.mark.parametrize("name", sorted(WORKFLOWS))
def test_every_node_type_exists(name, specs):
    for node in WORKFLOWS[name]["nodes"]:
        assert node["type"] in specs or node["type"] in wg.FRONTEND_ONLY, node["type"]


@pytest.mark.parametrize("name", sorted(WORKFLOWS))
def test_workflow_has_notes_inputs_and_an_image_output(name):
    wf = WORKFLOWS[name]
    assert nodes_of(wf, "Note"), "a note on the canvas says what to change"
    assert nodes_of(wf, "SaveImage")
    [ckpt] = nodes_of(wf, "CheckpointLoaderSimple")
    assert ckpt["widgets_values"][0].endswith(".safetensors")
    [image] = nodes_of(wf, "LoadImage")
    assert image["widgets_values"][0]
    [picker] = nodes_of(wf, "DragPointPicker")
    points = parse_points(picker["widgets_values"][0], 768, 768)  # inside ComfyUI's example.png
    assert len(points.handles) >= 1


@pytest.mark.parametrize("preset", sorted(PRESET_FILES))
def test_preset_workflows_use_their_preset_with_its_defaults(preset, pack_specs):
    wf = WORKFLOWS[PRESET_FILES[preset]]
    [edit] = nodes_of(wf, "DragEdit")
    spec = pack_specs["DragEdit"]
    values = wg.named_widgets(spec, edit)
    assert values["preset"] == preset
    assert values["overrides"] == spec["input"]["optional"]["overrides"]["default"] == "{}"
    assert {values["tracker"], values["supervision"], values["schedule"]} == {"preset"}
    if preset == "AdaptiveDrag":
        [auto] = nodes_of(wf, "DragAutoMask")
        edit_mask = next(i for i in edit["inputs"] if i["name"] == "mask")
        link = next(link for link in wf["links"] if link[0] == edit_mask["link"])
        assert link[1] == auto["id"]


def test_the_sdxl_workflow_loads_sdxl_base_and_says_what_differs(pack_specs):
    wf = WORKFLOWS[SDXL]
    [ckpt] = nodes_of(wf, "CheckpointLoaderSimple")
    assert ckpt["widgets_values"][0] == "sd_xl_base_1.0.safetensors"
    [edit] = nodes_of(wf, "DragEdit")
    assert wg.named_widgets(pack_specs["DragEdit"], edit)["preset"] == "DragDiffusion"
    notes = " ".join(n["widgets_values"][0] for n in nodes_of(wf, "Note"))
    for said in ("1024 x 1024", "multiple of 32", "Time:", "Memory:", "16 GB", "estimate"):
        assert said in notes, said


@pytest.mark.parametrize("preset", sorted(ONE_PASS_FILES))
def test_one_pass_workflows_use_their_preset_on_a_painted_region_under_the_handle(preset, pack_specs):
    wf = WORKFLOWS[ONE_PASS_FILES[preset]]
    [edit] = nodes_of(wf, "DragOnePassEdit")
    values = wg.named_widgets(pack_specs["DragOnePassEdit"], edit)
    assert values["preset"] == preset and values["overrides"] == "{}"
    [picker] = nodes_of(wf, "DragPointPicker")
    mask = decode_mask(picker["widgets_values"][1], 768, 768)[0]
    points = parse_points(picker["widgets_values"][0], 768, 768)
    for x, y in points.handles:
        assert mask[round(y), round(x)] == 1, "the example handle lies in the painted region"
    assert 0.01 < float(mask.mean()) < 0.5


def test_step_by_step_workflow_shows_each_stage_in_a_group():
    wf = WORKFLOWS[STEP_BY_STEP]
    types = {n["type"] for n in wf["nodes"]}
    assert {"CheckpointLoaderSimple", "CLIPTextEncode", "LoadImage", "DragPointPicker", "DragIdentityLoRA",
            "DragDDIMInversion", "DragLatentOptimizer", "DragReferenceSampler", "SaveImage",
            "PreviewImage"} <= types
    assert len(wf["groups"]) >= 6
    for node in wf["nodes"]:  # every node sits inside a group
        x, y = node["pos"]
        assert any(gx <= x and x + node["size"][0] <= gx + gw and gy <= y and y + node["size"][1] <= gy + gh
                   for gx, gy, gw, gh in (g["bounding"] for g in wf["groups"])) or node["type"] == "Note", node
    opt = nodes_of(wf, "DragLatentOptimizer")[0]
    traj = [link for link in wf["links"] if link[1] == opt["id"] and link[2] == 2]
    assert traj and nodes_of(wf, "PreviewImage")[0]["id"] in {link[3] for link in traj}


def test_chaining_workflows_use_stock_nodes():
    refine = WORKFLOWS[REFINE]
    [lora] = nodes_of(refine, "DragIdentityLoRA")
    assert lora["widgets_values"][-1].strip(), "save_name is set so the LoRA is saved"
    [ks] = nodes_of(refine, "KSampler")
    assert 0 < ks["widgets_values"][-1] <= 0.5, "low denoise"
    reuse = WORKFLOWS[REUSE]
    assert nodes_of(reuse, "LoraLoaderModelOnly") and not nodes_of(reuse, "DragIdentityLoRA")


TITLE_BAR = 30  # px a node's title adds above its pos, in both renderers
MISSING_FILE_FOOTER = 26  # px Nodes 2.0 adds under a loader whose file (the placeholder checkpoint) is missing


@pytest.mark.parametrize("name", sorted(WORKFLOWS))
def test_no_node_overlaps_another_as_shipped(name):
    """Opened from the template browser, every node is readable: no box covers another (the
    browser tests check the same after a run, js/drag_node_previews.js keeps the sizes)."""
    boxes = []
    for n in WORKFLOWS[name]["nodes"]:
        (x, y), (w, h) = n["pos"], n["size"]
        h += MISSING_FILE_FOOTER if n["type"] == "CheckpointLoaderSimple" else 0
        boxes.append((n.get("title") or n["type"], x, y - TITLE_BAR, x + w, y + h))
    overlapping = [(a[0], b[0]) for a, b in itertools.combinations(boxes, 2)
                   if a[1] < b[3] and b[1] < a[3] and a[2] < b[4] and b[2] < a[4]]
    assert not overlapping


def test_every_pack_node_is_in_some_workflow(pack_specs):
    used = {n["type"] for wf in WORKFLOWS.values() for n in wf["nodes"]}
    assert len(pack_specs) == 8 and set(pack_specs) <= used


def test_readme_lists_every_workflow():
    readme = (wg.REPO / "README.md").read_text()
    for name in WORKFLOWS:
        assert f"{name}.json" in readme, name


def test_build_script_reproduces_the_committed_workflows(build):
    for key, make in build.WORKFLOWS.items():
        title = build.CARDS[key].title
        assert make(key) == WORKFLOWS[title], f"{title}.json is stale: run python -m workbench.workflows.build"


# -- the cards in ComfyUI's template browser (tests/browser/test_templates_browser.py shows them) -----

def test_every_workflow_has_a_card_and_nothing_else_is_listed(build):
    assert set(build.CARDS) == set(build.WORKFLOWS)
    assert {card.title for card in build.CARDS.values()} == EXPECTED
    # ComfyUI lists every .json in the folder as a template; each needs its <name>.jpg
    assert {p.stem for p in wg.WORKFLOWS.glob("*.json")} == {p.stem for p in wg.WORKFLOWS.glob("*.jpg")} == EXPECTED


def card(build, title):
    return next(c for c in build.CARDS.values() if c.title == title)


@pytest.mark.parametrize("title", sorted(EXPECTED))
def test_card_title_and_description_are_readable(build, title):
    c = card(build, title)
    # the title is the file name and, unescaped, part of the thumbnail's URL: words, no path or URL syntax
    assert title[0].isupper() and " " in title and "_" not in title
    assert not set(title) & set('#%?&+/\\:*"<>|'), title
    assert len(title) <= 32, "1.58 shows one line of the title"
    assert c.description and "\n" not in c.description and c.description != title
    assert c.picture in build.thumbnails.PICTURES


def small(img):
    """Downscaled, so JPEG noise and font rasterisation matter less than what is drawn."""
    return np.asarray(img.convert("RGB").resize((128, 128), Image.BOX), dtype=float)


@pytest.mark.parametrize("title", sorted(EXPECTED))
def test_thumbnail_is_a_small_square_jpeg_showing_its_card(build, title):
    path = wg.WORKFLOWS / f"{title}.jpg"
    with Image.open(path) as img:
        assert img.format == "JPEG" and img.size == (512, 512)
        committed = small(img)
    assert path.stat().st_size < 60_000
    c = card(build, title)
    drawn = io.BytesIO()
    build.thumbnails.save(build.thumbnails.thumbnail(c.picture, c.heading, c.description), drawn)
    # 0 with the same Pillow; one letter changed in the description gives > 50
    assert np.abs(committed - small(Image.open(drawn))).max() < 20, \
        f"{title}.jpg is stale: run python -m workbench.workflows.build"


def test_thumbnails_are_distinct():
    images = {title: small(Image.open(wg.WORKFLOWS / f"{title}.jpg")) for title in EXPECTED}
    for a, b in itertools.combinations(sorted(images), 2):
        # the hand-taken screenshots of the four single-preset workflows differed by < 0.2; these by > 5
        assert np.abs(images[a] - images[b]).mean() > 2, (a, b)


# -- the checks and the converter themselves, on small hand-made graphs ----------------------------

def tiny_graph():
    """Load Checkpoint -> (Reroute) -> KSampler with a PrimitiveNode feeding its seed."""
    return {
        "version": 0.4, "last_node_id": 5, "last_link_id": 4, "groups": [],
        "nodes": [
            {"id": 1, "type": "CheckpointLoaderSimple", "mode": 0, "inputs": [],
             "outputs": [{"name": "MODEL", "type": "MODEL", "links": [1]}, {"name": "CLIP", "type": "CLIP", "links": None},
                         {"name": "VAE", "type": "VAE", "links": None}],
             "widgets_values": ["a.safetensors"]},
            {"id": 2, "type": "Reroute", "mode": 0, "inputs": [{"name": "", "type": "*", "link": 1}],
             "outputs": [{"name": "", "type": "MODEL", "links": [2]}]},
            {"id": 3, "type": "PrimitiveNode", "mode": 0, "inputs": [],
             "outputs": [{"name": "INT", "type": "INT", "links": [3], "widget": {"name": "seed"}}],
             "widgets_values": [42, "fixed"]},
            {"id": 4, "type": "KSampler", "mode": 0,
             "inputs": [{"name": "model", "type": "MODEL", "link": 2},
                        {"name": "positive", "type": "CONDITIONING", "link": None},
                        {"name": "negative", "type": "CONDITIONING", "link": None},
                        {"name": "latent_image", "type": "LATENT", "link": None},
                        {"name": "seed", "type": "INT", "link": 3, "widget": {"name": "seed"}}],
             "outputs": [{"name": "LATENT", "type": "LATENT", "links": None}],
             "widgets_values": [0, "randomize", 20, 8.0, "euler", "normal", 1.0]},
            {"id": 5, "type": "Note", "mode": 0, "inputs": [], "outputs": [], "widgets_values": ["hello"]},
        ],
        "links": [[1, 1, 0, 2, 0, "MODEL"], [2, 2, 0, 4, 0, "MODEL"], [3, 3, 0, 4, 4, "INT"]],
    }


def test_converter_maps_widgets_links_reroutes_and_primitives(specs):
    api = wg.to_api(tiny_graph(), specs)
    assert set(api) == {"1", "4"}
    assert api["1"]["inputs"] == {"ckpt_name": "a.safetensors"}
    ks = api["4"]["inputs"]
    assert ks["model"] == ["1", 0] and ks["seed"] == 42
    assert ks["steps"] == 20 and ks["cfg"] == 8.0 and ks["sampler_name"] == "euler" and ks["denoise"] == 1.0
    assert "control_after_generate" not in ks


def test_converter_skips_the_upload_widget_and_muted_nodes(specs):
    graph = {"nodes": [
        {"id": 1, "type": "LoadImage", "mode": 0, "inputs": [], "outputs": [], "widgets_values": ["x.png", "image"]},
        {"id": 2, "type": "SaveImage", "mode": 2, "inputs": [], "outputs": [], "widgets_values": ["p"]}]}
    assert wg.to_api(graph, specs) == {"1": {"class_type": "LoadImage", "inputs": {"image": "x.png"},
                                             "_meta": {"title": "LoadImage"}}}


def test_converter_passes_a_bypassed_node_through(specs):
    graph = tiny_graph()
    graph["nodes"].append({"id": 6, "type": "LoraLoaderModelOnly", "mode": wg.MODE_BYPASS,
                           "inputs": [{"name": "model", "type": "MODEL", "link": 2}],
                           "outputs": [{"name": "MODEL", "type": "MODEL", "links": [5]}],
                           "widgets_values": ["x.safetensors", 1.0]})
    graph["links"][1][3:5] = [6, 0]
    graph["links"].append([5, 6, 0, 4, 0, "MODEL"])
    graph["nodes"][3]["inputs"][0]["link"] = 5
    api = wg.to_api(graph, specs)
    assert "6" not in api and api["4"]["inputs"]["model"] == ["1", 0]


def test_checks_catch_wrong_types_values_and_missing_inputs(specs):
    graph = tiny_graph()
    assert [e for e in wg.problems(graph, specs) if "not connected" not in e] == []
    ks = graph["nodes"][3]
    ks["widgets_values"][2] = 0  # steps below min
    ks["widgets_values"][4] = "no_such_sampler"
    graph["links"][0][5] = "CLIP"
    graph["links"].append([4, 1, 2, 4, 3, "VAE"])  # the VAE into latent_image
    graph["nodes"][0]["outputs"][2]["links"], ks["inputs"][3]["link"] = [4], 4
    graph["nodes"].append({"id": 6, "type": "NoSuchNode", "inputs": [], "outputs": []})
    found = "\n".join(wg.problems(graph, specs))
    for text in ("steps: 0 < min", "no_such_sampler", "link type CLIP", "NoSuchNode",
                 "(VAE) -> KSampler input latent_image (LATENT)", "required input positive is not connected"):
        assert text in found, text
