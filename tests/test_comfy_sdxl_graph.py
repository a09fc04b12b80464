"""Every preset as a ComfyUI graph on an SDXL MODEL, run by ComfyUI's executor: the one-box Drag Edit for
each preset, the step-by-step nodes, and SD 1.5 and SDXL graphs in one ComfyUI run without mixing.

No checkpoint file small enough for CI is detected as SDXL: ComfyUI recognises SDXL-class UNets by
model_channels 320 and a 2048-wide context (the smallest UNet matching one of its SDXL-class configs,
KOALA-700M's depths with every level 320 wide, has 63 M parameters), and it builds SDXL's text encoder from
a fixed config of 694 M parameters (OpenCLIP ViT-bigG's text tower). So the MODEL
is a ModelPatcher built from ComfyUI's own SDXL model config (comfy.supported_models.SDXL: a
comfy.model_base.SDXL, as a loaded SDXL checkpoint is) in SDXL's layout in miniature, and the CONDITIONING is
what CLIP Text Encode (SDXL) makes: the context and the pooled prompt, with size and crop numbers. A small
test node hands both to the graph; the VAE, the image and every other node are the stock ones and the
pack's. Skipped unless COMFYUI_PATH is set.
"""

import json

import pytest
import torch

from comfy_support import CHECKPOINT, IMAGE, IMAGE_SIZE, comfyui, make_comfy_model, requires_comfyui  # noqa: F401
from test_comfy_sdxl import TINY_SDXL

pytestmark = requires_comfyui

POINTS = json.dumps([{"handle": [20, 24], "target": [36, 28]}])
SDXL_NODE = "DragTestTinySDXL"
FAST = {"lora.steps": 1, "lora.rank": 4, "lora.batch_size": 1, "inversion_strength": 0.1}  # 5 of 50 DDIM steps
FAST_DRAG = {"DragDiffusion": {"schedule.max_steps": 2}, "FreeDrag": {"schedule.max_steps": 2},
             "StableDrag": {"schedule.max_steps": 2}, "AdaptiveDrag": {"schedule.max_steps": 2, "schedule.n": 2},
             "GoodDrag": {"schedule.drag_rounds": 2, "schedule.rounds_per_denoise": 1}}


class TinySDXL:
    """MODEL and CONDITIONING of a tiny SDXL, as a checkpoint loader and CLIP Text Encode (SDXL) give them."""

    RETURN_TYPES = ("MODEL", "CONDITIONING")
    FUNCTION = "load"
    CATEGORY = "testing"
    model = None

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"seed": ("INT", {"default": 0, "min": 0, "max": 1000})}}

    def load(self, seed):
        if TinySDXL.model is None:
            TinySDXL.model = make_comfy_model("SDXL", TINY_SDXL)
        g = torch.Generator().manual_seed(seed)
        size = {"width": IMAGE_SIZE, "height": IMAGE_SIZE, "crop_w": 0, "crop_h": 0,
                "target_width": IMAGE_SIZE, "target_height": IMAGE_SIZE}
        conditioning = [[torch.randn(1, 77, 64, generator=g), {"pooled_output": torch.randn(1, 1280, generator=g),
                                                               **size}]]
        return TinySDXL.model, conditioning


@pytest.fixture(scope="module")
def sdxl_node(comfyui):
    comfyui.nodes.NODE_CLASS_MAPPINGS[SDXL_NODE] = TinySDXL
    yield SDXL_NODE
    del comfyui.nodes.NODE_CLASS_MAPPINGS[SDXL_NODE]


def overrides(preset, **more):
    return json.dumps({**FAST, **FAST_DRAG[preset], **more})


def sdxl_edit_graph(preset, **more):
    return {
        "1": {"class_type": "CheckpointLoaderSimple", "inputs": {"ckpt_name": CHECKPOINT}},  # its VAE
        "2": {"class_type": SDXL_NODE, "inputs": {"seed": 0}},
        "3": {"class_type": "LoadImage", "inputs": {"image": IMAGE}},
        "6": {"class_type": "DragPointPicker", "inputs": {"image": ["3", 0], "points": POINTS, "mask": ""}},
        "7": {"class_type": "DragEdit", "inputs": {
            "model": ["2", 0], "vae": ["1", 2], "image": ["3", 0], "conditioning": ["2", 1], "points": ["6", 0],
            "preset": preset, "identity_lora": True, "seed": 0, "overrides": overrides(preset, **more)}},
        "8": {"class_type": "SaveImage", "inputs": {"images": ["7", 0], "filename_prefix": "sdxl"}},
    }


@pytest.mark.parametrize("preset", list(FAST_DRAG))
def test_every_preset_runs_end_to_end_on_sdxl_in_comfyui(comfyui, sdxl_node, preset):
    """LoRA, inversion, drag and reference sampling in the one-box node; the settings output says the
    family and shows its values with their sources; the MODEL out carries the identity LoRA."""
    run = comfyui.execute(sdxl_edit_graph(preset))
    assert run.success, run.error
    image, latent, model, _, settings = run.outputs["7"]
    assert image.shape == (1, IMAGE_SIZE, IMAGE_SIZE, 3) and torch.isfinite(image).all()
    assert latent["samples"].shape == (1, 4, 8, 8)
    lines = settings.splitlines()
    assert lines[0].startswith("model family: SDXL") and lines[1].startswith("memory: gradient checkpointing on")
    assert any(line.startswith("drag.features.blocks = (1,)  (ours: SDXL's up_blocks[1]") for line in lines)
    assert any(line.startswith("drag.features.scale = 4  (ours:") for line in lines)
    assert any(line.startswith("reference.start_block = 9  (ours:") for line in lines)  # the tiny's up_blocks[1]
    assert model.patches and not TinySDXL.model.patches  # the LoRA went onto a clone
    assert {node for node, *_ in run.progress} >= {"7"}


@pytest.mark.parametrize("preset", ["FastDrag", "RegionDrag"])
def test_the_one_pass_presets_run_on_sdxl_in_comfyui(comfyui, sdxl_node, preset):
    """The training-free presets from Drag Edit and from Drag One-Pass Edit: inversion and sampling beside
    the inversion's latent on the SDXL MODEL; the settings say the family and that nothing trains."""
    graph = sdxl_edit_graph("DragDiffusion")
    graph["7"]["inputs"].update(preset=preset, overrides=json.dumps({"num_steps": 6}))
    graph["9"] = {"class_type": "DragOnePassEdit", "inputs": {
        **{k: graph["7"]["inputs"][k] for k in ("model", "vae", "image", "conditioning", "points")},
        "preset": preset, "overrides": json.dumps({"num_steps": 6})}}
    graph["10"] = {"class_type": "SaveImage", "inputs": {"images": ["9", 0], "filename_prefix": "sdxl_one_pass"}}
    run = comfyui.execute(graph)
    assert run.success, run.error
    image, latent, model, _, settings = run.outputs["7"]
    assert image.shape == (1, IMAGE_SIZE, IMAGE_SIZE, 3) and torch.isfinite(image).all()
    assert latent["samples"].shape == (1, 4, 8, 8) and model is TinySDXL.model
    assert torch.equal(run.outputs["9"][0], image)  # one engine behind both nodes
    for text in (settings, run.outputs["9"][3]):
        lines = text.splitlines()
        assert lines[1].startswith("model family: SDXL")
        assert lines[2] == "memory: training-free (no LoRA, no backward pass); UNet weights in float32"
        assert "num_steps = 6  (user)" in lines


def test_an_override_of_a_family_value_stays_and_says_user(comfyui, sdxl_node):
    run = comfyui.execute(sdxl_edit_graph("DragDiffusion", **{"drag.features.blocks": [2]}))
    assert run.success, run.error
    assert "drag.features.blocks = (2,)  (user)" in run.outputs["7"][4].splitlines()


def test_the_step_by_step_nodes_run_on_sdxl(comfyui, sdxl_node):
    """Identity LoRA, inversion, optimizer (AdaptiveDrag, with its auto-mask), reference sampler, each its
    own node, and the auto-mask node, on the SDXL MODEL; the optimizer's settings show the family."""
    graph = {
        **{k: v for k, v in sdxl_edit_graph("AdaptiveDrag").items() if k in ("1", "2", "3", "6")},
        "4": {"class_type": "DragIdentityLoRA", "inputs": {
            "model": ["2", 0], "vae": ["1", 2], "image": ["3", 0], "conditioning": ["2", 1], "rank": 4,
            "steps": 1, "learning_rate": 1e-3, "batch_size": 1, "seed": 0, "save_name": ""}},
        "5": {"class_type": "DragDDIMInversion", "inputs": {
            "model": ["4", 0], "vae": ["1", 2], "image": ["3", 0], "conditioning": ["2", 1],
            "max_strength": 0.8, "num_steps": 10}},
        "7": {"class_type": "DragLatentOptimizer", "inputs": {
            "model": ["4", 0], "inversion": ["5", 0], "conditioning": ["2", 1], "points": ["6", 0],
            "preset": "AdaptiveDrag", "tracker": "preset", "supervision": "preset", "schedule": "preset",
            "overrides": json.dumps(FAST_DRAG["AdaptiveDrag"])}},
        "8": {"class_type": "DragReferenceSampler", "inputs": {
            "model": ["4", 0], "inversion": ["5", 0], "drag": ["7", 0], "conditioning": ["2", 1],
            "reference_attention": True, "start_block": -1}},
        "9": {"class_type": "DragAutoMask", "inputs": {
            "model": ["4", 0], "vae": ["1", 2], "image": ["3", 0], "points": ["6", 0], "n_segments": 20,
            "use_colour": True, "dilation": -1}},
        "10": {"class_type": "SaveImage", "inputs": {"images": ["8", 1], "filename_prefix": "sdxl_steps"}},
        "11": {"class_type": "PreviewImage", "inputs": {"images": ["9", 1]}},
    }
    run = comfyui.execute(graph)
    assert run.success, run.error
    assert run.outputs["8"][1].shape == (1, IMAGE_SIZE, IMAGE_SIZE, 3)
    settings = run.outputs["7"][4]
    assert "model family: SDXL" in settings and "guidance.radius = 4  (ours: SD's 5x5 latent patch" in settings
    assert "; gradient checkpointing on" in settings  # the input off: the family's choice
    assert run.outputs["9"][0].shape == (1, IMAGE_SIZE, IMAGE_SIZE)


def sd15_edit_graph():
    graph = sdxl_edit_graph("DragDiffusion")
    graph["2"] = {"class_type": "CLIPTextEncode", "inputs": {"clip": ["1", 1], "text": "a yellow disc"}}
    graph["7"]["inputs"].update(model=["1", 0], conditioning=["2", 0],
                                overrides=overrides("DragDiffusion", **{"drag.features.blocks": [1]}))
    return graph


def test_sd15_and_sdxl_graphs_in_one_comfyui_run_do_not_mix(comfyui, sdxl_node):
    """An SD 1.5 edit gives the same image alone and after an SDXL edit in the same ComfyUI, and the SDXL
    edit the same before and after it (nothing of one model is cached for the other); each reports its
    own family."""
    alone = comfyui.execute(sd15_edit_graph(), fresh=True)
    assert alone.success, alone.error
    xl_first = comfyui.execute(sdxl_edit_graph("DragDiffusion"), fresh=True)
    assert xl_first.success, xl_first.error
    sd = {f"sd{k}": {**v, "inputs": {n: [f"sd{x[0]}", x[1]] if isinstance(x, list) else x
                                      for n, x in v["inputs"].items()}} for k, v in sd15_edit_graph().items()}
    both = comfyui.execute({**sdxl_edit_graph("DragDiffusion"), **sd})  # the SDXL half is cached, the SD half runs
    assert both.success, both.error
    assert torch.equal(both.outputs["sd7"][0], alone.outputs["7"][0])
    assert torch.equal(both.outputs["7"][0], xl_first.outputs["7"][0])
    assert both.outputs["sd7"][4].startswith("model family: SD 1.x/2.x")
    assert both.outputs["7"][4].startswith("model family: SDXL")
    again = comfyui.execute(sdxl_edit_graph("DragDiffusion"), fresh=True)  # after SD ran
    assert again.success, again.error
    assert torch.equal(again.outputs["7"][0], xl_first.outputs["7"][0])
