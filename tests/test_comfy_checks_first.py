"""Every input a node can check is checked before its first stage runs, and the error names the
node and the input actually at fault: 'model' when the MODEL lacks what the preset needs,
'overrides' (with the setting's name) only when an override asked for it.

A drag edit's first stage (the identity LoRA) takes minutes on a real model, so "before" is
measured where a user feels it: no progress reported (every stage reports each step), and
nothing handed in changed. The nodes are called as ComfyUI's executor calls them, on the tiny
random SD1.5 checkpoint (two decoder levels: it has no up_blocks[2], which the papers' presets
read their features from). Skipped unless COMFYUI_PATH is set (see comfy_support.py).
"""

import json
import re
from types import SimpleNamespace

import pytest
import torch

from comfy_support import (IMAGE, bridge, comfyui, make_comfy_model, prompt_and_image, requires_comfyui,  # noqa: F401
                           run_node, tiny_sd15)
from comfyui_drag.drag_ops import presets
from comfyui_drag.drag_ops.overrides import rule_of, settings_of
from comfyui_drag.drag_ops.rules import Part
from test_comfy_reliability import Snapshot, assert_clean, call
from test_settings import out_of_range, wrong_type

pytestmark = requires_comfyui

S = 64  # the test image's size
NUM_STEPS = 10
FIT = {"drag.features.blocks": [1]}  # what the tiny UNet needs to be dragged at all


@pytest.fixture(scope="module")
def pack(comfyui):
    mod = comfyui.pack_module
    return SimpleNamespace(
        error=mod("drag_ops.errors").DragInputError,
        points=mod("drag_ops.points"),
        lora=mod("nodes.identity_lora").DragIdentityLoRA,
        invert=mod("nodes.invert").DragDDIMInversion,
        optimize=mod("nodes.drag_optimize").DragLatentOptimizer,
        sample=mod("nodes.reference_sample").DragReferenceSampler,
        edit=mod("nodes.drag_edit").DragEdit,
        auto_mask=mod("nodes.auto_mask").DragAutoMask,
    )


# the tiny UNet's layout without any self-attention in its decoder
TINY_NO_DECODER_ATTENTION = {
    "use_checkpoint": False, "image_size": 32, "use_spatial_transformer": True, "legacy": False,
    "adm_in_channels": None, "in_channels": 4, "out_channels": 4, "model_channels": 320,
    "num_res_blocks": [1, 1], "channel_mult": [1, 1],
    "transformer_depth": [1, 0], "transformer_depth_output": [0, 0, 0, 0], "transformer_depth_middle": 1,
    "use_linear_in_transformer": False, "context_dim": 768,
    "use_temporal_resblock": False, "use_temporal_attention": False,
}


@pytest.fixture(scope="module")
def env(comfyui, tiny_sd15, prompt_and_image, pack):
    model, clip, vae = tiny_sd15
    cond, image = prompt_and_image
    mask = torch.zeros(1, S, S)
    mask[:, 8:56, 8:56] = 1
    points = pack.points.parse_points([[20, 24], [30, 26]])
    lora_model, _ = call(pack.lora, model, vae, image, cond, 2, 1, 1e-3, 1, 0)
    inversion, _ = call(pack.invert, lora_model, vae, image, cond, 0.8, NUM_STEPS)
    drag = call(pack.optimize, lora_model, inversion, cond, points, "DragDiffusion", "preset", "preset",
                "preset", mask, json.dumps({**FIT, "schedule.max_steps": 1}))[0]
    no_decoder_attention = make_comfy_model("SD15", TINY_NO_DECODER_ATTENTION, device="meta")
    return SimpleNamespace(model=model, vae=vae, cond=cond, image=image, mask=mask, points=points,
                           lora_model=lora_model, inversion=inversion, drag=drag,
                           no_decoder_attention=no_decoder_attention)


def edit_args(env, preset="DragDiffusion", overrides=None, **inputs) -> dict:
    args = dict(model=env.model, vae=env.vae, image=env.image, conditioning=env.cond, points=env.points,
                preset=preset, identity_lora=True, seed=0, mask=env.mask,
                overrides=json.dumps(FIT if overrides is None else overrides))
    return {**args, **inputs}


def optimize_args(env, preset="DragDiffusion", overrides=None, **inputs) -> dict:
    args = dict(model=env.lora_model, inversion=env.inversion, conditioning=env.cond, points=env.points,
                preset=preset, tracker="preset", supervision="preset", schedule="preset", mask=env.mask,
                overrides=json.dumps(FIT if overrides is None else overrides))
    return {**args, **inputs}


def edit(pack, env, *args, **kwargs):
    return lambda: run_node(pack.edit, **edit_args(env, *args, **kwargs))


def optimize(pack, env, *args, **kwargs):
    return lambda: run_node(pack.optimize, **optimize_args(env, *args, **kwargs))


WIDE_CONDITIONING = [[torch.zeros(1, 77, 1024), {}]]
OUTSIDE = [[20, 24], [80, 26]]

# (what, node call, node, input, expected in the message)
CASES = [
    # the issue's case: the preset's features are up_blocks[2], which this MODEL does not have
    ("edit: the preset's feature blocks, overrides {}", lambda p, e: edit(p, e, overrides={}),
     "Drag Edit", "model", r"feature blocks \[2\] do not exist.*drag\.features\.blocks"),
    ("edit: AdaptiveDrag's feature blocks, overrides {}", lambda p, e: edit(p, e, "AdaptiveDrag", {}),
     "Drag Edit", "model", r"feature blocks \[2\] do not exist"),
    ("edit: feature blocks from an override", lambda p, e: edit(p, e, overrides={"drag.features.blocks": [5]}),
     "Drag Edit", "overrides", r"feature blocks \[5\] do not exist.*drag\.features\.blocks"),
    ("edit: auto-mask blocks from an override",
     lambda p, e: edit(p, e, "AdaptiveDrag", {**FIT, "auto_mask.blocks": [7]}),
     "Drag Edit", "overrides", r"feature blocks \[7\] do not exist.*auto_mask\.blocks"),
    ("edit: LoRA targets from an override", lambda p, e: edit(p, e, overrides={**FIT, "lora.targets": ["to_x"]}),
     "Drag Edit", "overrides", r"to_x.*lora\.targets"),
    ("edit: reference start block from an override",
     lambda p, e: edit(p, e, overrides={**FIT, "reference.start_block": 40}),
     "Drag Edit", "overrides", r"start block 40 does not exist.*reference\.start_block"),
    ("edit: a MODEL without decoder self-attention", lambda p, e: edit(p, e, model=e.no_decoder_attention),
     "Drag Edit", "model", r"self-attention"),
    ("edit: an empty mask", lambda p, e: edit(p, e, mask=torch.zeros(1, S, S)), "Drag Edit", "mask", "mask is empty"),
    ("edit: a mask of another size", lambda p, e: edit(p, e, mask=torch.ones(1, 32, 32)),
     "Drag Edit", "mask", "32x32 but the image is 64x64"),
    ("edit: points outside the image", lambda p, e: edit(p, e, points=p.points.parse_points(OUTSIDE)),
     "Drag Edit", "points", "outside the 64x64 image"),
    ("edit: conditioning of another width", lambda p, e: edit(p, e, conditioning=WIDE_CONDITIONING),
     "Drag Edit", "conditioning", "width 1024 does not fit"),
    ("edit: an image the UNet cannot take", lambda p, e: edit(p, e, image=e.image[:, :40], mask=None),
     "Drag Edit", "image", "multiple of 16"),
    ("optimizer: the preset's feature blocks, overrides {}", lambda p, e: optimize(p, e, overrides={}),
     "Drag Latent Optimizer", "model", r"feature blocks \[2\] do not exist"),
    ("optimizer: AdaptiveDrag's feature blocks, overrides {}", lambda p, e: optimize(p, e, "AdaptiveDrag", {}),
     "Drag Latent Optimizer", "model", r"feature blocks \[2\] do not exist"),
    ("optimizer: AdaptiveDrag with an empty mask", lambda p, e: optimize(p, e, "AdaptiveDrag",
                                                                         mask=torch.zeros(1, S, S)),
     "Drag Latent Optimizer", "mask", "mask is empty"),
    ("optimizer: conditioning of another width", lambda p, e: optimize(p, e, conditioning=WIDE_CONDITIONING),
     "Drag Latent Optimizer", "conditioning", "width 1024 does not fit"),
    ("optimizer: a LoRA setting it does not use", lambda p, e: optimize(p, e, overrides={**FIT, "lora.steps": 5}),
     "Drag Latent Optimizer", "overrides", r"lora\.steps.*Drag Identity LoRA"),
    ("optimizer: an inversion too shallow", lambda p, e: optimize(p, e, overrides={**FIT, "inversion_strength": 0.9}),
     "Drag Latent Optimizer", "inversion", "needs 9 inversion steps but only 8 were done"),
    ("sampler: a start block the MODEL lacks",
     lambda p, e: lambda: run_node(p.sample, e.lora_model, e.inversion, e.drag, e.cond, True, 40),
     "Drag Reference Sampler", "start_block", "start block 40 does not exist"),
    ("sampler: conditioning of another width",
     lambda p, e: lambda: run_node(p.sample, e.lora_model, e.inversion, e.drag, WIDE_CONDITIONING, True, -1),
     "Drag Reference Sampler", "conditioning", "width 1024 does not fit"),
    ("LoRA: rank 0", lambda p, e: lambda: run_node(p.lora, e.model, e.vae, e.image, e.cond, 0, 2, 1e-3, 1, 0),
     "Drag Identity LoRA", "rank", "rank must be"),
    ("LoRA: conditioning of another width",
     lambda p, e: lambda: run_node(p.lora, e.model, e.vae, e.image, WIDE_CONDITIONING, 2, 2, 1e-3, 1, 0),
     "Drag Identity LoRA", "conditioning", "width 1024 does not fit"),
    ("inversion: strength 0", lambda p, e: lambda: run_node(p.invert, e.model, e.vae, e.image, e.cond, 0.0, NUM_STEPS),
     "Drag DDIM Inversion", "max_strength", "must be"),
    ("inversion: 0 steps", lambda p, e: lambda: run_node(p.invert, e.model, e.vae, e.image, e.cond, 0.8, 0),
     "Drag DDIM Inversion", "num_steps", "num_steps"),
    ("auto mask: 0 segments",
     lambda p, e: lambda: run_node(p.auto_mask, e.model, e.vae, e.image, e.points, 0, True, -1),
     "Drag Auto Mask", "n_segments", "n_segments must be"),
    ("auto mask: conditioning of another width",
     lambda p, e: lambda: run_node(p.auto_mask, e.model, e.vae, e.image, e.points, 8, True, -1, None,
                                                WIDE_CONDITIONING),
     "Drag Auto Mask", "conditioning", "width 1024 does not fit"),
]


@pytest.mark.parametrize("what, make, node, input, expected", CASES, ids=[c[0] for c in CASES])
def test_bad_inputs_are_named_before_any_stage_runs(comfyui, bridge, pack, env, what, make, node, input, expected):
    snap = Snapshot(bridge, [env.model, env.lora_model],
                    [env.image, env.mask, env.cond, env.inversion, env.drag.result])
    with comfyui.watch_progress() as progress:
        with pytest.raises(pack.error) as caught:
            call(make(pack, env))
    message = str(caught.value)
    assert message.startswith(f"{node} / input '{input}': "), message
    assert re.search(expected, message), message
    assert progress == [], f"a stage ran before the error: {progress[:3]}"
    snap.assert_unchanged()
    assert_clean(env.model, env.lora_model)


# -- every setting: out of range and of the wrong type, named before anything runs ----------------

def bad_settings():
    """(preset, setting, bad value) for every setting of every preset."""
    for name in presets.PRESETS:
        config = presets.preset(name)
        for path in settings_of(config):
            rule = rule_of(config, path)
            if rule is None:  # a strategy's name: chosen with the tracker / supervision / schedule inputs
                yield name, path, "nearest"
                continue
            assert not isinstance(rule, Part)
            for value in out_of_range(rule) + wrong_type(rule):
                yield name, path, value


def test_every_setting_out_of_range_or_of_the_wrong_type_is_named_before_any_stage(
        comfyui, bridge, pack, env):
    snap = Snapshot(bridge, [env.model, env.lora_model], [env.image, env.mask, env.cond, env.inversion])
    cases = list(bad_settings())
    assert len(cases) > 250 and {path for _, path, _ in cases} >= {"schedule.drag_rounds", "lora.rank"}
    with comfyui.watch_progress() as progress:
        for preset, path, value in cases:
            text = json.dumps({path: value}) if value == value else '{"%s": NaN}' % path
            nodes = [("Drag Edit", pack.edit, edit_args(env, preset))]
            if not path.startswith("lora."):  # the optimizer refuses those whatever the value: it trains no LoRA
                nodes.append(("Drag Latent Optimizer", pack.optimize, optimize_args(env, preset)))
            for node, node_class, args in nodes:
                with pytest.raises(pack.error) as caught:
                    call(node_class, **{**args, "overrides": text})
                message = str(caught.value)
                assert message.startswith(f"{node} / input 'overrides': ") and path in message, \
                    (preset, path, value, message)
            assert progress == [], (preset, path, value)
    snap.assert_unchanged()


def test_the_issues_settings_are_refused_by_their_constructors_names(comfyui, pack, env):
    """The paper's letters are no settings: {"schedule.B": 0} is refused before any stage (as B, it
    would divide by zero in the drag), and the constructor's name for it is checked by its rule."""
    with comfyui.watch_progress() as progress:
        with pytest.raises(pack.error, match=r"^Drag Edit / input 'overrides': unknown setting 'schedule.B'"):
            call(edit(pack, env, "GoodDrag", {**FIT, "schedule.B": 0}))
        with pytest.raises(pack.error, match=r"^Drag Edit / input 'overrides': schedule\.rounds_per_denoise must be"):
            call(edit(pack, env, "GoodDrag", {**FIT, "schedule.rounds_per_denoise": 0}))
    assert progress == []
