"""Every example workflow, converted from the UI format to an API prompt the way the frontend
queues it, executed by ComfyUI on the tiny random checkpoint and the generated test image (with
small step counts), produces an image. Skipped unless COMFYUI_PATH is set."""

import asyncio
import json

import pytest

from comfy_support import CHECKPOINT, IMAGE, IMAGE_SIZE, comfyui, requires_comfyui  # noqa: F401

from workbench.workflows import workflow_graph as wg  # noqa: E402

pytestmark = requires_comfyui

WORKFLOWS = wg.load_workflows()
POINTS = json.dumps([{"handle": [20, 24], "target": [30, 26]}])  # inside the 64 x 64 test image
FAST_LORA = {"steps": 2, "rank": 4, "batch_size": 1}
# the tiny checkpoint has two decoder levels: drag features come from up_blocks[1]
FAST_DRAG = {"drag.features.blocks": [1], "schedule.max_steps": 3}
FAST_GOODDRAG = {"drag.features.blocks": [1], "schedule.drag_rounds": 2, "schedule.rounds_per_denoise": 1}
REFINE, REUSE = "Drag, then refine with KSampler", "Drag with a saved identity LoRA"  # file names = card titles


@pytest.fixture(scope="module")
def live_specs(comfyui):
    """Node specs as the running ComfyUI (with the pack loaded) reports them. The harness starts
    ComfyUI without comfy_extras; the workflows use some of those (PreviewAny), so they are loaded
    here as ComfyUI's main.py loads them."""
    stock = set(wg.stock_nodes())
    used = {n["type"] for wf in WORKFLOWS.values() for n in wf["nodes"]} & stock
    if used - set(comfyui.nodes.NODE_CLASS_MAPPINGS):
        asyncio.run(comfyui.nodes.init_builtin_extra_nodes())
    table = {}
    for name, cls in comfyui.nodes.NODE_CLASS_MAPPINGS.items():
        spec = cls.INPUT_TYPES()
        inputs = {group: {k: wg.compact(v) for k, v in spec.get(group, {}).items()}
                  for group in ("required", "optional") if spec.get(group)}
        table[name] = wg.node_entry(inputs, cls)
    return table


def fast_prompt(workflow: dict, specs: dict, lora_name: str | None = None) -> dict:
    """The workflow's API prompt with the tiny checkpoint, the test image and small step counts."""
    prompt = wg.to_api(workflow, specs)
    for node in prompt.values():
        kind, inputs = node["class_type"], node["inputs"]
        if kind == "CheckpointLoaderSimple":
            inputs["ckpt_name"] = CHECKPOINT
        elif kind == "LoadImage":
            inputs["image"] = IMAGE
        elif kind == "DragPointPicker":
            inputs["points"] = POINTS
            inputs["mask"] = ""  # a painted mask is the size of the example image, not the test image's
        elif kind == "DragIdentityLoRA":
            inputs.update(FAST_LORA)
        elif kind == "DragDDIMInversion":
            inputs["num_steps"] = 10
        elif kind in ("DragLatentOptimizer", "DragEdit"):
            fast = FAST_GOODDRAG if inputs["preset"] == "GoodDrag" else FAST_DRAG
            if kind == "DragEdit":  # its inversion has no step count to set: a shallow one keeps it short
                fast = {**fast, **{f"lora.{k}": v for k, v in FAST_LORA.items()}, "inversion_strength": 0.1}
            inputs["overrides"] = json.dumps({**json.loads(inputs.get("overrides") or "{}"), **fast})
        elif kind == "KSampler":
            inputs["steps"] = 2
        elif kind == "LoraLoaderModelOnly":
            assert lora_name, "this workflow needs a saved identity LoRA"
            inputs["lora_name"] = lora_name
    return prompt


def check_saved_images(run, prompt):
    assert run.success, run.error
    saves = [nid for nid, node in prompt.items() if node["class_type"] == "SaveImage"]
    assert saves
    for nid in saves:
        source, slot = prompt[nid]["inputs"]["images"]
        image = run.outputs[source][slot]
        assert image.shape == (1, IMAGE_SIZE, IMAGE_SIZE, 3)
        assert 0 <= float(image.min()) and float(image.max()) <= 1
        assert run.ui[nid]["images"][0]["filename"].endswith(".png")


def test_the_stock_node_list_matches_this_comfyui(live_specs):
    """workbench/workflows/stock_nodes.json is what this ComfyUI has, for every stock node a workflow uses
    (else regenerate it with workbench/workflows/make_stock_nodes.py). File lists are empty there."""
    stock = wg.stock_nodes()
    used = {n["type"] for wf in WORKFLOWS.values() for n in wf["nodes"]} & set(stock)
    for name in sorted(used):
        ours, live = stock[name], live_specs[name]
        files = {n for n, e, _ in wg.inputs_of(ours) if e["type"] == "COMBO" and not e.get("options")}

        def layout(spec):
            return [(n, {**e, "options": []} if n in files else e, k) for n, e, k in wg.widget_slots(spec)]
        assert layout(ours) == layout(live), name
        assert wg.socket_inputs(ours) == wg.socket_inputs(live) and ours["output"] == live["output"], name


@pytest.fixture(scope="module")
def saved_lora(comfyui, live_specs):
    """The refine workflow run once: (its prompt, the run, the saved LoRA's file name)."""
    prompt = fast_prompt(WORKFLOWS[REFINE], live_specs)
    run = comfyui.execute(prompt, fresh=True)
    assert run.success, run.error
    lora_id = next(nid for nid, node in prompt.items() if node["class_type"] == "DragIdentityLoRA")
    return prompt, run, run.outputs[lora_id][1]


@pytest.mark.parametrize("name", sorted(set(WORKFLOWS) - {REFINE, REUSE}))
def test_workflow_runs_and_saves_an_image(comfyui, live_specs, name):
    prompt = fast_prompt(WORKFLOWS[name], live_specs)
    run = comfyui.execute(prompt)
    check_saved_images(run, prompt)


def test_refine_workflow_saves_the_lora_and_a_refined_image(saved_lora):
    prompt, run, lora_name = saved_lora
    check_saved_images(run, prompt)
    assert lora_name.startswith("drag_identity_") and lora_name.endswith(".safetensors")


def test_reuse_workflow_loads_the_saved_lora_with_the_stock_loader(comfyui, live_specs, saved_lora):
    prompt = fast_prompt(WORKFLOWS[REUSE], live_specs, lora_name=saved_lora[2])
    run = comfyui.execute(prompt)
    check_saved_images(run, prompt)
    loader = next(nid for nid, node in prompt.items() if node["class_type"] == "LoraLoaderModelOnly")
    assert len(run.outputs[loader][0].patches) > 0
