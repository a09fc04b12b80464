"""Workflows saved with the pack before its nodes moved to ComfyUI's V3 API still load and run, and
ComfyUI serves the V3 nodes to the frontend as it served the old ones.

- tests/fixtures/saved_workflows/: the workflows the pack shipped at 7e8904d and, under their older
  file names, at c3514be, as users saved them. A saved node keeps its widget values as a list in
  widget order, so each node type must still exist with the same widget inputs in the same order
  (checked against the pre-V3 node definitions too), and each workflow runs on the tiny checkpoint.
- tests/fixtures/object_info_pre_v3.json: what a real ComfyUI served at GET /object_info for the
  pre-V3 nodes; a real server now serves the same for the V3 nodes, except what V3 adds (legacy_view).

Skipped unless COMFYUI_PATH is set (see comfy_support.py).
"""

import copy
import json
import pathlib
import sys
import tempfile
import urllib.request

import pytest

from comfy_support import comfyui, requires_comfyui  # noqa: F401
from test_comfy_workflows import check_saved_images, fast_prompt, live_specs  # noqa: F401

from workbench.workflows import workflow_graph as wg  # noqa: E402

pytestmark = requires_comfyui

FIXTURES = pathlib.Path(__file__).resolve().parent / "fixtures"
SAVED = {p.stem: json.loads(p.read_text()) for p in sorted((FIXTURES / "saved_workflows").glob("*.json"))}
PRE_V3 = json.loads((FIXTURES / "object_info_pre_v3.json").read_text())
# c3514be's file names -> the names the same workflows had at 7e8904d (only their notes changed)
RENAMED = {"dragdiffusion": "Drag with DragDiffusion", "freedrag": "Drag with FreeDrag",
           "stabledrag": "Drag with StableDrag", "gooddrag": "Drag with GoodDrag",
           "adaptivedrag_auto_mask": "Drag with AdaptiveDrag auto mask", "step_by_step": "Drag step by step",
           "refine_with_ksampler": "Drag, then refine with KSampler",
           "reuse_identity_lora": "Drag with a saved identity LoRA"}
REFINE, REUSE = "refine_with_ksampler", "reuse_identity_lora"


def test_the_fixtures_are_the_pre_v3_files():
    assert set(SAVED) == set(RENAMED) | set(RENAMED.values())
    assert PRE_V3["captured_from"] == "7e8904d" and set(PRE_V3["nodes"]) == {
        "DragPointPicker", "DragIdentityLoRA", "DragDDIMInversion", "DragLatentOptimizer", "DragReferenceSampler",
        "DragEdit", "DragAutoMask"}
    used = {n["type"] for wf in SAVED.values() for n in wf["nodes"]}
    assert set(PRE_V3["nodes"]) <= used


# outputs renamed since the pre-V3 nodes: the LATENTs of the inversion and the optimizer hold noise
# at the inversion's timestep, which a VAE Decode shows as noise
RENAMED_OUTPUTS = {("DragDDIMInversion", "latent"): "noisy_latent", ("DragLatentOptimizer", "latent"): "noisy_latent"}

# presets added since: a saved value is still one of the options, at the same place
ADDED_OPTIONS = {("DragEdit", "preset"): ["FastDrag", "RegionDrag"]}
ADDED_NODES = {"DragOnePassEdit"}
# ranges widened since: every saved value is still inside ({(node, input): (bound, saved workflows' value)})
WIDENED = {("DragReferenceSampler", "start_block"): ("max", 64)}  # SDXL base's blocks go to 69


def without_added_options(kind: str, spec: dict) -> dict:
    """A node's spec (pre-V3 /object_info form or wg.info_entry's) without the combo options added
    at the end of an input since the saved workflows (ADDED_OPTIONS), its widened ranges narrowed back
    (WIDENED)."""
    spec = copy.deepcopy(spec)
    for (node, name), (bound, saved) in WIDENED.items():
        for inputs in spec["input"].values() if node == kind else ():
            entry = inputs.get(name) if isinstance(inputs, dict) else None
            if entry is not None:
                options = entry if isinstance(entry, dict) else entry[1]
                assert (options[bound] >= saved) if bound == "max" else (options[bound] <= saved), (kind, name)
                options[bound] = saved
    for (node, name), added in ADDED_OPTIONS.items():
        if node != kind:
            continue
        for inputs in spec["input"].values():
            entry = inputs.get(name) if isinstance(inputs, dict) else None
            if entry is None:
                continue
            # compact entries ({"options": [...]}) or /object_info's pre-V3 form ([[...], {...}])
            options = entry["options"] if isinstance(entry, dict) else entry[0]
            assert options[-len(added):] == added, (kind, name, options)
            del options[-len(added):]
    return spec


def widget_layout(spec: dict) -> list:
    """(name, entry, kind) of each widget, "multiline": false (the default) left out: V3 states it."""
    return [(name, entry and {k: v for k, v in entry.items() if not (k == "multiline" and v is False)}, kind)
            for name, entry, kind in wg.widget_slots(spec)]


@pytest.mark.parametrize("name", sorted(SAVED))
def test_every_node_loads_with_its_widget_values_in_place(name, live_specs):
    workflow = SAVED[name]
    # stock nodes as stock_nodes.json has them (their file lists left open; test_comfy_workflows.py
    # checks that file against this ComfyUI), the pack's as the running ComfyUI serves them
    specs = {**wg.stock_nodes(), **{kind: live_specs[kind] for kind in PRE_V3["nodes"]}}
    assert wg.problems(workflow, specs) == []
    for node in workflow["nodes"]:
        if node["type"] not in PRE_V3["nodes"]:
            continue
        before = wg.info_entry(PRE_V3["nodes"][node["type"]])
        now = without_added_options(node["type"], live_specs[node["type"]])
        assert widget_layout(now) == widget_layout(before), node["type"]
        assert wg.socket_inputs(now) == wg.socket_inputs(before), node["type"]
        assert now["output"] == before["output"], node["type"]
        # links join slots by index, so a renamed output still takes its saved links
        renamed = [RENAMED_OUTPUTS.get((node["type"], name), name) for name in before["output_name"]]
        assert now["output_name"] == renamed, node["type"]
        assert wg.named_widgets(now, node) == wg.named_widgets(before, node), node["type"]


@pytest.fixture(scope="module")
def saved_lora(comfyui, live_specs):
    """The saved refine workflow run once: (its run, the LoRA file it saved)."""
    prompt = fast_prompt(SAVED[REFINE], live_specs)
    run = comfyui.execute(prompt, fresh=True)
    check_saved_images(run, prompt)
    lora = next(nid for nid, node in prompt.items() if node["class_type"] == "DragIdentityLoRA")
    return run, run.outputs[lora][1]


@pytest.mark.parametrize("name", sorted(RENAMED))
def test_saved_workflow_runs(comfyui, live_specs, saved_lora, name):
    """Each workflow under both its names: the same prompt (only the notes differ), run once."""
    lora_name = saved_lora[1] if name == REUSE else None
    prompt = fast_prompt(SAVED[name], live_specs, lora_name=lora_name)
    assert prompt == fast_prompt(SAVED[RENAMED[name]], live_specs, lora_name=lora_name)
    if name == REFINE:
        run = saved_lora[0]
        assert saved_lora[1].startswith("drag_identity_") and saved_lora[1].endswith(".safetensors")
    else:
        run = comfyui.execute(prompt, fresh=True)
    check_saved_images(run, prompt)


# -- what the frontend is served ------------------------------------------------------------------

def legacy_view(entry: dict) -> dict:
    """A V3 node's /object_info entry in the pre-V3 form. Only what V3 legitimately adds is undone,
    each understood by both tested frontends; any other difference stays and fails the comparison:
      - a combo as ["COMBO", {"options": [...], "multiselect": false, ...}] (the newer combo spec)
        instead of [[...], {...}];
      - "multiline": false (the default) on one-line STRING inputs;
      - a hidden input as ["UNIQUE_ID"] instead of "UNIQUE_ID" (the frontend does not read hidden inputs);
      - "deprecated", "experimental" and "api_node" stated as false;
      - the outputs renamed since (RENAMED_OUTPUTS) and their tooltips: links join slots by index."""
    old = copy.deepcopy(entry)
    for i, name in enumerate(old["output_name"]):
        previous = {after: before for (node, before), after in RENAMED_OUTPUTS.items() if node == old["name"]}
        if name in previous:
            old["output_name"][i] = previous[name]
            old["output_tooltips"][i] = PRE_V3["nodes"][old["name"]]["output_tooltips"][i]
    for flag in ("deprecated", "experimental", "api_node"):
        assert old.pop(flag) is False, flag
    for group, inputs in old["input"].items():
        for name, spec in inputs.items():
            if group == "hidden":
                [inputs[name]] = spec
                continue
            kind, options = spec
            if kind == "COMBO":
                assert options.pop("multiselect") is False, name
                inputs[name] = [options.pop("options"), options]
            elif kind == "STRING" and options.get("multiline") is False:
                del options["multiline"]
    return old


@pytest.fixture(scope="module")
def served():
    """GET /object_info of a real ComfyUI server (main.py) with the pack installed."""
    sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent / "browser"))
    import comfy_server
    server = comfy_server.start(pathlib.Path(tempfile.mkdtemp(prefix="object_info_")), "pinned")
    try:
        with urllib.request.urlopen(f"{next(server).url}/object_info", timeout=120) as r:
            info = json.load(r)
    finally:
        server.close()
    return {name: entry for name, entry in info.items() if entry["python_module"] == "custom_nodes.comfyui_drag"}


def without_tooltips(entry: dict) -> dict:
    """The entry without its tooltips: they document what the nodes do and follow it (e.g. the model
    families a node takes); what a saved workflow depends on is everything else."""
    out = copy.deepcopy(entry)
    out.pop("output_tooltips", None)
    for inputs in out["input"].values():
        for spec in inputs.values():
            if isinstance(spec, list) and len(spec) > 1 and isinstance(spec[1], dict):
                spec[1].pop("tooltip", None)
    return out


def test_a_real_server_serves_the_v3_nodes_as_it_served_the_old_ones(served):
    assert set(served) == set(PRE_V3["nodes"]) | ADDED_NODES
    for name, entry in served.items():
        if name in ADDED_NODES:
            continue
        before = without_tooltips(PRE_V3["nodes"][name])
        now = without_tooltips(without_added_options(name, legacy_view(entry)))
        assert now == before, name
        for group in before["input"]:  # in order: saved widget values are positional
            assert list(now["input"][group]) == list(before["input"][group]) == before["input_order"][group], name
