"""A whole drag edit as a ComfyUI graph (stock loaders + the pack's nodes), run by ComfyUI's
executor on the tiny random SD1.5 checkpoint. Skipped unless COMFYUI_PATH is set."""

import json

import pytest
import torch

from comfy_support import (BLOCKS, CHECKPOINT, IMAGE, IMAGE_SIZE, POINTS, comfyui, drag_graph,  # noqa: F401
                           lora_and_inversion_graph, requires_comfyui)

pytestmark = requires_comfyui


def test_full_drag_graph_runs_and_saves_an_image(comfyui):
    run = comfyui.execute(drag_graph(), fresh=True)
    assert run.success, run.error
    image = run.outputs["8"][1]
    assert image.shape == (1, IMAGE_SIZE, IMAGE_SIZE, 3) and 0 <= float(image.min()) and float(image.max()) <= 1
    assert run.ui["9"]["images"][0]["filename"].startswith("drag")
    assert "drag.learning_rate = 0.01" in run.outputs["7"][4]
    assert "schedule.max_steps = 4  (user)" in run.outputs["7"][4]
    drag_progress = [p for p in run.progress if p[0] == "7"]
    assert drag_progress and any(has_preview for *_, has_preview in drag_progress)


def test_moving_a_point_reruns_only_the_drag_and_the_sampler(comfyui):
    graph = drag_graph()
    assert comfyui.execute(graph, fresh=True).success
    graph["6"]["inputs"]["points"] = json.dumps([{"handle": [20, 24], "target": [34, 20]}])
    run = comfyui.execute(graph)
    assert run.success, run.error
    assert {node for node, *_ in run.progress} <= {"6", "7", "8"}


@pytest.mark.parametrize("preset", ["FreeDrag", "StableDrag", "GoodDrag", "AdaptiveDrag"])
def test_every_preset_runs_in_the_graph(comfyui, preset):
    overrides = '{"schedule.drag_rounds": 2, "schedule.rounds_per_denoise": 1}' if preset == "GoodDrag" \
        else '{"schedule.max_steps": 3}'
    run = comfyui.execute(drag_graph(preset, overrides))
    assert run.success, run.error


def test_a_mixed_combination_runs_in_the_graph(comfyui):
    graph = drag_graph("GoodDrag", '{"schedule.drag_rounds": 2, "schedule.rounds_per_denoise": 1}',
                       tracker="discriminative")
    graph["7"]["inputs"]["supervision"] = "confident"
    run = comfyui.execute(graph)
    assert run.success, run.error
    settings = run.outputs["7"][4]
    assert "tracker = 'discriminative'" in settings and "schedule = 'alternating'" in settings


def test_cancel_mid_drag_stops_within_a_step_and_leaves_inputs_unchanged(comfyui):
    base = comfyui.execute(drag_graph(), fresh=True)
    assert base.success, base.error
    model, image = base.outputs["4"][0], base.outputs["3"][0].clone()
    patches = {k: len(v) for k, v in model.patches.items()}

    def cancel(node, value, total, preview):
        if node == "7" and value == 2:
            comfyui.interrupt()
    graph = drag_graph(overrides='{"schedule.max_steps": 20}')
    graph["6"]["inputs"]["points"] = json.dumps([{"handle": [10, 10], "target": [40, 40]}])
    run = comfyui.execute(graph, on_progress=cancel)
    assert run.interrupted and run.error["node_id"] == "7"
    assert max(v for node, v, *_ in run.progress if node == "7") == 2
    assert {k: len(v) for k, v in model.patches.items()} == patches
    assert torch.equal(base.outputs["3"][0], image)
    assert comfyui.execute(drag_graph()).success  # and the next run works


def test_bad_points_name_the_node_and_input(comfyui):
    graph = drag_graph()
    graph["6"]["inputs"]["points"] = json.dumps([{"handle": [20, 24], "target": [300, 26]}])
    run = comfyui.execute(graph)
    assert not run.success
    assert "Drag Point Picker" in run.error["exception_message"] and "outside" in run.error["exception_message"]


def test_one_box_drag_edit_returns_image_latent_and_lora_model(comfyui):
    run = comfyui.execute({
        "1": {"class_type": "CheckpointLoaderSimple", "inputs": {"ckpt_name": CHECKPOINT}},
        "2": {"class_type": "CLIPTextEncode", "inputs": {"clip": ["1", 1], "text": ""}},
        "3": {"class_type": "LoadImage", "inputs": {"image": IMAGE}},
        "6": {"class_type": "DragPointPicker", "inputs": {"image": ["3", 0], "points": POINTS, "mask": ""}},
        "7": {"class_type": "DragEdit", "inputs": {
            "model": ["1", 0], "vae": ["1", 2], "image": ["3", 0], "conditioning": ["2", 0], "points": ["6", 0],
            "preset": "DragDiffusion", "identity_lora": True, "seed": 0,
            "overrides": '{"lora.steps": 2, "lora.rank": 4, "schedule.max_steps": 3, ' + BLOCKS + '}'}},
        "8": {"class_type": "KSampler", "inputs": {
            "model": ["7", 2], "seed": 0, "steps": 2, "cfg": 1.0, "sampler_name": "euler", "scheduler": "normal",
            "positive": ["2", 0], "negative": ["2", 0], "latent_image": ["7", 1], "denoise": 0.3}},
        "9": {"class_type": "VAEDecode", "inputs": {"samples": ["8", 0], "vae": ["1", 2]}},
        "10": {"class_type": "SaveImage", "inputs": {"images": ["9", 0], "filename_prefix": "onebox"}},
    }, fresh=True)
    assert run.success, run.error
    assert run.outputs["7"][0].shape == (1, IMAGE_SIZE, IMAGE_SIZE, 3)
    assert len(run.outputs["7"][2].patches) > 0 and run.outputs["1"][0].patches == {}
