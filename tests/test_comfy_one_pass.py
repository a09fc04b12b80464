"""The training-free presets in ComfyUI: Drag One-Pass Edit and Drag Edit run FastDrag and RegionDrag
in a graph on the tiny random SD1.5 checkpoint, change none of their inputs, and refuse bad regions
naming the node and the input before any stage reports progress. Skipped unless COMFYUI_PATH is set."""

import json
from types import SimpleNamespace

import pytest
import torch

from comfy_support import (CHECKPOINT, IMAGE, IMAGE_SIZE, bridge, comfyui, prompt_and_image,  # noqa: F401
                           requires_comfyui, run_node, tiny_sd15)
from test_comfy_reliability import Snapshot, assert_clean, cancel  # noqa: F401

pytestmark = requires_comfyui

S = IMAGE_SIZE
POINTS = json.dumps([{"handle": [20, 24], "target": [30, 26]}])


def one_pass_graph(node: str, preset: str, **extra) -> dict:
    inputs = {"model": ["1", 0], "vae": ["1", 2], "image": ["3", 0], "conditioning": ["2", 0], "points": ["6", 0],
              "preset": preset, "mask": ["6", 1], "overrides": "{}", **extra}
    return {
        "1": {"class_type": "CheckpointLoaderSimple", "inputs": {"ckpt_name": CHECKPOINT}},
        "2": {"class_type": "CLIPTextEncode", "inputs": {"clip": ["1", 1], "text": "a yellow disc"}},
        "3": {"class_type": "LoadImage", "inputs": {"image": IMAGE}},
        "6": {"class_type": "DragPointPicker", "inputs": {"image": ["3", 0], "points": POINTS, "mask": ""}},
        "7": {"class_type": node, "inputs": inputs},
        "8": {"class_type": "SaveImage", "inputs": {"images": ["7", 0], "filename_prefix": "onepass"}},
    }


@pytest.mark.parametrize("preset, steps", [("FastDrag", 7), ("RegionDrag", 10)])
def test_one_pass_node_runs_each_preset_in_a_graph(comfyui, preset, steps):
    run = comfyui.execute(one_pass_graph("DragOnePassEdit", preset), fresh=True)
    assert run.success, run.error
    image, latent, trajectory, settings = run.outputs["7"]
    assert image.shape == (1, S, S, 3) and trajectory.shape == (1, S, S, 3)
    assert latent["samples"].shape == (1, 4, S // 8, S // 8) and torch.isfinite(latent["samples"]).all()
    assert f"inversion_strength = {0.7 if preset == 'FastDrag' else 0.5}  (code: {preset}" in settings
    # one bar over the inversion and the sampling, each step reported
    progress = [p for p in run.progress if p[0] == "7"]
    assert len(progress) >= 2 * steps and progress[-1][1] == progress[-1][2]


def test_drag_edit_runs_a_one_pass_preset_without_a_lora(comfyui):
    run = comfyui.execute(one_pass_graph("DragEdit", "FastDrag", identity_lora=True, seed=0), fresh=True)
    assert run.success, run.error
    image, latent, model, trajectory, settings = run.outputs["7"]
    assert image.shape == (1, S, S, 3) and model.patches == {}
    assert settings.startswith("identity LoRA: none (FastDrag is training-free")
    graph = one_pass_graph("DragEdit", "RegionDrag", identity_lora=False, seed=0, tracker="nearest")
    run = comfyui.execute(graph)
    assert not run.success
    assert "Drag Edit" in run.error["exception_message"] and "input 'tracker'" in run.error["exception_message"]


@pytest.fixture(scope="module")
def env(comfyui, tiny_sd15, prompt_and_image):
    model, clip, vae = tiny_sd15
    cond, image = prompt_and_image
    points = comfyui.pack_module("drag_ops.points").parse_points([[20, 24], [30, 26]])
    node = comfyui.pack_module("nodes.one_pass").DragOnePassEdit
    return SimpleNamespace(model=model, vae=vae, cond=cond, image=image, points=points, node=node)


def corner_mask():
    mask = torch.zeros(1, S, S)
    mask[:, 40:60, 40:60] = 1  # away from the handle at (20, 24)
    return mask


@pytest.mark.parametrize("preset", ["FastDrag", "RegionDrag"])
@pytest.mark.parametrize("mask, input, expected", [
    (corner_mask(), "points", "outside the mask"),
    (torch.zeros(1, S, S), "mask", "mask is empty"),
], ids=["handle outside the region", "empty mask"])
def test_bad_regions_are_named_before_any_stage(comfyui, bridge, env, preset, mask, input, expected):
    snapshot = Snapshot(bridge, [env.model], [env.image, env.cond, mask])
    with comfyui.watch_progress() as seen:
        with pytest.raises(Exception) as e:
            run_node(env.node, env.model, env.vae, env.image, env.cond, env.points, preset, mask, "{}")
    message = str(e.value)
    assert message.startswith(f"Drag One-Pass Edit / input '{input}'") and expected in message, message
    assert seen == []
    snapshot.assert_unchanged()
    assert_clean(env.model)


def test_bad_overrides_name_the_setting(env):
    with pytest.raises(Exception, match=r"Drag One-Pass Edit / input 'overrides': edit.noise_scale must be a number"):
        run_node(env.node, env.model, env.vae, env.image, env.cond, env.points, "RegionDrag", None,
                 '{"edit.noise_scale": 9}')


@pytest.mark.parametrize("preset, inversion_steps", [("FastDrag", 7), ("RegionDrag", 10)])
def test_cancel_in_each_stage_then_a_run_that_changes_none_of_its_inputs(comfyui, bridge, env, cancel, preset,
                                                                          inversion_steps):
    import comfy.model_management as mm
    mask = torch.zeros(1, S, S)
    mask[:, 8:48, 8:48] = 1
    snapshot = Snapshot(bridge, [env.model], [env.image, env.cond, mask])
    for stage, first in (("inversion", 1), ("sampling", inversion_steps + 1)):
        seen = cancel(at=first + 1)
        with pytest.raises(mm.InterruptProcessingException):
            run_node(env.node, env.model, env.vae, env.image, env.cond, env.points, preset, mask, "{}")
        assert max(seen) == first + 1 and first in seen, (stage, seen)
        assert_clean(env.model)
    cancel()
    image = run_node(env.node, env.model, env.vae, env.image, env.cond, env.points, preset, mask, "{}")[0]
    assert image.shape == (1, S, S, 3)
    snapshot.assert_unchanged()
    assert_clean(env.model)
