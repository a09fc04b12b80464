"""Progress bars reach their total in every node and preset: a stage that ends early (the handles
arrived, GoodDrag's alternation stopped, FreeDrag or AdaptiveDrag done before their budget) moves
the bar to its end, later stages go on from there, and the bar never goes back.

The nodes are called as ComfyUI's executor calls them, on the tiny random SD1.5 checkpoint; the
harness records every progress update (value, total). Skipped unless COMFYUI_PATH is set.
"""

import json
from types import SimpleNamespace

import pytest
import torch

from comfy_support import IMAGE, comfyui, prompt_and_image, requires_comfyui, run_node, tiny_sd15  # noqa: F401
from comfyui_drag.drag_ops import presets
from test_comfy_reliability import call

pytestmark = requires_comfyui

NEAR = [[20, 24], [22, 24]]  # 1 feature pixel once rounded to feature pixels: within reach at once, every drag ends early
FAR = [[10, 10], [54, 50]]  # far beyond what the few steps below can move: the drag runs in full
FIT = {"drag.features.blocks": [1]}  # the tiny UNet has two decoder levels
SHORT = {
    "DragDiffusion": {"schedule.max_steps": 3},
    "FreeDrag": {"schedule.max_steps": 4},
    "StableDrag": {"schedule.max_steps": 3},
    # 2 denoising steps in the drag: the sampler then starts 2 steps lower than the inversion
    "GoodDrag": {"schedule.drag_rounds": 4, "schedule.rounds_per_denoise": 2, "schedule.supervision_steps": 2},
    "AdaptiveDrag": {"schedule.n": 4, "schedule.max_steps": 4, "auto_mask.n_segments": 8, "auto_mask.ensemble": 1},
}
ONE_BOX = {"lora.steps": 2, "lora.rank": 2, "lora.batch_size": 1, "inversion_strength": 0.1}


@pytest.fixture(scope="module")
def env(comfyui, tiny_sd15, prompt_and_image):
    mod = comfyui.pack_module
    model, clip, vae = tiny_sd15
    cond, image = prompt_and_image
    nodes = SimpleNamespace(lora=mod("nodes.identity_lora").DragIdentityLoRA,
                            invert=mod("nodes.invert").DragDDIMInversion,
                            optimize=mod("nodes.drag_optimize").DragLatentOptimizer,
                            sample=mod("nodes.reference_sample").DragReferenceSampler,
                            edit=mod("nodes.drag_edit").DragEdit)
    parse = mod("drag_ops.points").parse_points
    return SimpleNamespace(model=model, vae=vae, cond=cond, image=image, nodes=nodes,
                           points={"near": parse(NEAR), "far": parse(FAR)})


def recorded(comfyui, run):
    with comfyui.watch_progress() as progress:
        out = call(run)
    return [(value, total) for _, value, total, _ in progress], out


def assert_reaches_its_total(progress, what):
    assert progress, f"{what}: no progress reported"
    values, totals = [v for v, _ in progress], {t for _, t in progress}
    assert len(totals) == 1, (what, totals)
    assert values == sorted(values), f"{what}: the bar went back: {values}"
    assert values[-1] == totals.pop(), f"{what}: the bar stopped at {values[-1]} of {progress[-1][1]}"


@pytest.mark.parametrize("preset", list(presets.PRESETS))
def test_drag_edit_progress_reaches_its_total(comfyui, env, preset):
    overrides = json.dumps({**FIT, **ONE_BOX, **SHORT[preset]})
    jumps = {}
    for which, points in env.points.items():
        progress, _ = recorded(comfyui, lambda: run_node(
            env.nodes.edit, env.model, env.vae, env.image, env.cond, points, preset, True, 0, overrides=overrides))
        assert_reaches_its_total(progress, f"Drag Edit {preset}, {which} points")
        values = [v for v, _ in progress]
        jumps[which] = max(b - a for a, b in zip(values, values[1:]))
    assert jumps["near"] > 1  # the early end was there to be covered


def test_optimizer_progress_reaches_its_total_in_every_preset_and_the_other_nodes_too(comfyui, env):
    n = env.nodes
    progress, (lora_model, _) = recorded(comfyui, lambda: run_node(n.lora, env.model, env.vae, env.image, env.cond,
                                                                   2, 3, 1e-3, 1, 0))
    assert_reaches_its_total(progress, "Drag Identity LoRA")
    progress, (inversion, _) = recorded(comfyui, lambda: run_node(n.invert, lora_model, env.vae, env.image,
                                                                  env.cond, 0.8, 10))
    assert_reaches_its_total(progress, "Drag DDIM Inversion")
    for preset in presets.PRESETS:
        for which, points in env.points.items():
            progress, out = recorded(comfyui, lambda: run_node(
                n.optimize, lora_model, inversion, env.cond, points, preset, "preset", "preset", "preset", None,
                json.dumps({**FIT, **SHORT[preset]})))
            assert_reaches_its_total(progress, f"Drag Latent Optimizer {preset}, {which} points")
            if preset == "GoodDrag" and which == "far":
                assert out[0].result.step_index < inversion.trajectory.steps  # it denoised on the way
                progress, _ = recorded(comfyui, lambda: run_node(n.sample, lora_model, inversion, out[0],
                                                                 env.cond, True, -1))
                assert_reaches_its_total(progress, "Drag Reference Sampler after GoodDrag")
