"""Reliability inside real ComfyUI: bad inputs get a clear error naming node and input, no node
changes what it is given (also after an error or a cancel), cancel stops within a step and leaves
nothing installed on any model, LoRA files land only in
models/loras under sanitised, never-overwritten names, and the same graph gives the same bits.

The nodes are called the way ComfyUI's executor calls them (comfy_support.run_node: inputs by
name, under inference mode) on the tiny random SD1.5 checkpoint. Skipped unless COMFYUI_PATH is
set (see comfy_support.py).
"""

import json
import os
import pathlib
import re
from types import SimpleNamespace

import pytest
import torch

from comfy_support import (IMAGE, IMAGE_SIZE, assert_model_clean, bridge, comfyui, make_comfy_model,  # noqa: F401
                           patched_weights, prompt_and_image, requires_comfyui, run_node, tiny_sd15)

pytestmark = requires_comfyui

S = IMAGE_SIZE
POINTS = [[20, 24], [30, 26]]
BLOCKS = {"drag.features.blocks": [1]}  # the tiny UNet has two decoder levels
NUM_STEPS = 10  # DDIM steps of the tiny runs: DragDiffusion's strength 0.7 is 7 steps


# -- set-up ------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def pack(comfyui):
    """The pack's node classes and engine modules as ComfyUI imported them."""
    mod = comfyui.pack_module
    return SimpleNamespace(
        error=mod("drag_ops.errors").DragInputError,
        points=mod("drag_ops.points"),
        lora=mod("nodes.identity_lora").DragIdentityLoRA,
        invert=mod("nodes.invert").DragDDIMInversion,
        picker=mod("nodes.point_picker").DragPointPicker,
        optimize=mod("nodes.drag_optimize").DragLatentOptimizer,
        sample=mod("nodes.reference_sample").DragReferenceSampler,
        edit=mod("nodes.drag_edit").DragEdit,
        auto_mask=mod("nodes.auto_mask").DragAutoMask,
    )


@pytest.fixture(scope="module")
def env(comfyui, tiny_sd15, prompt_and_image):
    model, clip, vae = tiny_sd15
    cond, image = prompt_and_image
    mask = torch.zeros(1, S, S)
    mask[:, 8:56, 8:56] = 1
    return SimpleNamespace(model=model, vae=vae, cond=cond, image=image, mask=mask)


def call(node, *args, **kwargs):
    """A node as the executor runs it (its inputs in schema order or by name), or a function of
    such runs (under inference mode too)."""
    if isinstance(node, type):
        return run_node(node, *args, **kwargs)
    with torch.inference_mode():
        return node(*args, **kwargs)


def drag_points(pack, pts=POINTS):
    return pack.points.parse_points(pts)  # as DRAG_POINTS from any source: the nodes check them


def overrides(**extra):
    return json.dumps({**BLOCKS, **extra})


@pytest.fixture(scope="module")
def chain(pack, env):
    """LoRA -> inversion -> drag, made once: the inputs of the later nodes."""
    lora_model, _ = call(pack.lora, env.model, env.vae, env.image, env.cond, 2, 2, 1e-3, 1, 0)
    inversion, _ = call(pack.invert, lora_model, env.vae, env.image, env.cond, 0.8, NUM_STEPS)
    outcome = call(pack.optimize, lora_model, inversion, env.cond, drag_points(pack), "DragDiffusion",
                   "preset", "preset", "preset", env.mask[None][0], overrides(**{"schedule.max_steps": 2}))[0]
    return SimpleNamespace(model=lora_model, inversion=inversion, drag=outcome)


# -- what "unchanged" and "clean" mean ---------------------------------------------------------

def model_weights(bridge, model):
    """The UNet weights ComfyUI computes for this MODEL (its patches applied), as copies."""
    return patched_weights(model)


def _fingerprint(value):
    """Nested structure with tensors cloned and other leaves by identity: equal iff nothing changed."""
    if torch.is_tensor(value):
        return ("tensor", value.detach().clone())
    if isinstance(value, dict):
        return {k: _fingerprint(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_fingerprint(v) for v in value]
    if isinstance(value, (int, float, str, bool, type(None))):
        return value
    return ("object", id(value))


def _same(a, b) -> bool:
    if isinstance(a, tuple) and a and a[0] == "tensor":
        return isinstance(b, tuple) and b[0] == "tensor" and a[1].shape == b[1].shape \
            and a[1].dtype == b[1].dtype and torch.equal(a[1], b[1])
    if isinstance(a, dict):
        return isinstance(b, dict) and a.keys() == b.keys() and all(_same(a[k], b[k]) for k in a)
    if isinstance(a, list):
        return isinstance(b, list) and len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b))
    return a == b


class Snapshot:
    """Everything a node could change on its inputs: a MODEL's weights, patches, wrappers and options;
    every tensor inside the other inputs (IMAGE, MASK, CONDITIONING, DRAG_INVERSION, DRAG_RESULT)."""

    def __init__(self, bridge, models=(), values=()):
        self.bridge, self.models, self.values = bridge, list(models), list(values)
        self.before = self._take()

    def _take(self):
        models = [dict(weights=_fingerprint(model_weights(self.bridge, m)), patches=_fingerprint(m.patches),
                       uuid=m.patches_uuid, objects=_fingerprint(m.object_patches),
                       wrappers=_fingerprint(m.weight_wrapper_patches), options=_fingerprint(m.model_options))
                  for m in self.models]
        return models, [_fingerprint(vars(v) if hasattr(v, "__dict__") and not torch.is_tensor(v) else v)
                        for v in self.values]

    def assert_unchanged(self):
        models, values = self._take()
        for before, after in zip(self.before[0], models):
            for key in before:
                assert _same(before[key], after[key]), f"the MODEL's {key} changed"
        for i, (before, after) in enumerate(zip(self.before[1], values)):
            assert _same(before, after), f"input {i} changed"


def assert_clean(*models):
    """Nothing left on ComfyUI's models: no LoRA layer, hook or forward override, no extra patch."""
    for model in models:
        assert_model_clean(model)


@pytest.fixture
def cancel(comfyui):
    """cancel(at=n) -> the progress values seen from now on: the cancel button is pressed at progress
    value n (once); cancel(at=n, error=exc) raises exc from the progress callback instead (an error
    mid-way); cancel() disarms."""
    import comfy.model_management as mm
    state = {"at": None, "error": None, "seen": []}

    def on(node, value, total, preview):
        state["seen"].append(value)
        if value == state["at"]:
            state["at"] = None
            if state["error"] is not None:
                raise state["error"]
            comfyui.interrupt()

    def arm(at=None, error=None):
        state.update(at=at, error=error, seen=[])
        return state["seen"]
    try:
        with comfyui.watch_progress(on):
            yield arm
    finally:
        mm.interrupt_current_processing(False)


def test_the_snapshot_sees_each_kind_of_change(bridge, env):
    model, image = env.model.clone(), env.image.clone()
    snap = Snapshot(bridge, [model], [image])
    snap.assert_unchanged()
    key = next(k for k in model.model.state_dict() if k.endswith("attn1.to_q.weight"))
    changes = [lambda: image.__setitem__((0, 0, 0, 0), 2.0),
               lambda: model.add_patches({key: (torch.zeros_like(model.model.state_dict()[key]),)}, 0.5),
               lambda: model.set_model_attn1_patch(lambda q, k, v, extra_options: (q, k, v))]
    for change in changes:
        change()
        with pytest.raises(AssertionError):
            snap.assert_unchanged()
        model, image = env.model.clone(), env.image.clone()
        snap = Snapshot(bridge, [model], [image])


# -- 1. bad inputs name the node and the input --------------------------------------------------

def test_bad_inputs_to_the_model_nodes_name_node_and_input(pack, env, chain):
    e = pack.error
    cases = [
        # (node call, node name, input, expected)
        (lambda: run_node(pack.invert, env.model, env.vae, env.image[:, :40], env.cond, 0.8, NUM_STEPS),
         "Drag DDIM Inversion", "image", "multiple of 16"),
        (lambda: run_node(pack.invert, env.model, env.vae, torch.cat([env.image] * 2), env.cond, 0.8, NUM_STEPS),
         "Drag DDIM Inversion", "image", "a batch of 2 images"),
        (lambda: run_node(pack.lora, env.model, env.vae, env.image[:, :8, :8], env.cond, 2, 2, 1e-3, 1, 0),
         "Drag Identity LoRA", "image", "non-zero multiple of 16"),
        (lambda: run_node(pack.lora, env.model, env.vae, env.image, [], 2, 2, 1e-3, 1, 0),
         "Drag Identity LoRA", "conditioning", "empty conditioning"),
        (lambda: run_node(pack.lora, env.model, env.vae, env.image, [[torch.zeros(1, 77, 1024), {}]], 2, 2, 1e-3, 1, 0),
         "Drag Identity LoRA", "conditioning", "width 1024 does not fit"),
        (lambda: run_node(pack.invert, env.model, env.vae, env.image, [[torch.full((1, 77, 768), float("nan")), {}]],
                                    0.8, NUM_STEPS),
         "Drag DDIM Inversion", "conditioning", "non-finite"),
        (lambda: run_node(pack.invert, env.model, env.vae, env.image, "a cat", 0.8, NUM_STEPS),
         "Drag DDIM Inversion", "conditioning", "malformed conditioning"),
        (lambda: run_node(pack.invert, env.model, None, env.image, env.cond, 0.8, NUM_STEPS),
         "Drag DDIM Inversion", "vae", "no VAE"),
        (lambda: run_node(pack.optimize, chain.model, chain.inversion, env.cond, drag_points(pack), "DragDiffusion",
                                        "preset", "preset", "preset", torch.ones(1, 32, 32), overrides()),
         "Drag Latent Optimizer", "mask", "32x32 but the image is 64x64"),
        (lambda: run_node(pack.optimize, chain.model, chain.inversion, env.cond, drag_points(pack), "DragDiffusion",
                                        "preset", "preset", "preset", torch.zeros(1, S, S), overrides()),
         "Drag Latent Optimizer", "mask", "mask is empty"),
        (lambda: run_node(pack.optimize, chain.model, chain.inversion, env.cond, drag_points(pack), "DragDiffusion",
                                        "preset", "preset", "preset", None, overrides(inversion_strength=0.9)),
         "Drag Latent Optimizer", "inversion", "needs 9 inversion steps but only 8 were done"),
        (lambda: run_node(pack.optimize, chain.model, chain.inversion, env.cond, drag_points(pack), "DragDiffusion",
                                        "preset", "preset", "preset", None, '{"drag.features.blocks": [5]}'),
         "Drag Latent Optimizer", "overrides", "feature blocks \\[5\\] do not exist"),
        (lambda: run_node(pack.sample, chain.model, chain.inversion, chain.drag, env.cond, True, 40),
         "Drag Reference Sampler", "start_block", "does not exist"),
        (lambda: run_node(pack.edit, env.model, env.vae, env.image, env.cond, drag_points(pack, [[20, 24], [80, 26]]),
                                "DragDiffusion", False, 0),
         "Drag Edit", "points", "outside the 64x64 image"),
        (lambda: run_node(pack.auto_mask, env.model, env.vae, env.image, "[[1, 2], [1, 2]]", 8, True, -1),
         "Drag Auto Mask", "points", "expected DRAG_POINTS from Drag Point Picker, got str"),
        (lambda: run_node(pack.auto_mask, env.model, env.vae, env.image, drag_points(pack), 8, True, -1,
                                          mask=torch.ones(2, S, S)),
         "Drag Auto Mask", "mask", "expected a single MASK"),
    ]
    for run, node, input, expected in cases:
        try:
            call(run)
        except e as err:
            assert re.match(rf"^{node} / input '{input}': .*({expected})", str(err)), str(err)
        else:
            pytest.fail(f"{node} accepted a bad {input} ({expected})")


def test_a_drag_from_another_inversion_is_refused(pack, env, chain):
    other_image = env.image.flip(2).contiguous()
    other, _ = call(pack.invert, chain.model, env.vae, other_image, env.cond, 0.8, NUM_STEPS)
    with pytest.raises(pack.error, match=r"^Drag Reference Sampler / input 'drag': .*another inversion"):
        call(pack.sample, chain.model, other, chain.drag, env.cond, True, -1)


@pytest.mark.parametrize("config_class, named", [("SDXLRefiner", "SDXL refiner"), ("Flux", "Flux")])
def test_unsupported_models_are_named_by_every_model_node(pack, env, config_class, named):
    from test_comfy_network import TINY_FLUX, TINY_REFINER
    model = make_comfy_model(config_class, TINY_REFINER if config_class == "SDXLRefiner" else TINY_FLUX, device="meta")
    expected = rf"input 'model': .*{named}.*Stable Diffusion 1.x, 2.x or SDXL"
    with pytest.raises(pack.error, match="^Drag Identity LoRA / " + expected):
        call(pack.lora, model, env.vae, env.image, env.cond, 2, 2, 1e-3, 1, 0)
    with pytest.raises(pack.error, match="^Drag DDIM Inversion / " + expected):
        call(pack.invert, model, env.vae, env.image, env.cond, 0.8, NUM_STEPS)
    with pytest.raises(pack.error, match="^Drag Edit / " + expected):
        call(pack.edit, model, env.vae, env.image, env.cond, drag_points(pack), "DragDiffusion", False, 0)
    with pytest.raises(pack.error, match="^Drag Auto Mask / " + expected):
        call(pack.auto_mask, model, env.vae, env.image, drag_points(pack), 8, True, -1)


def test_bad_points_in_a_graph_fail_at_the_picker(comfyui):
    from test_comfy_drag_graph import drag_graph
    graph = drag_graph()
    graph["6"]["inputs"]["points"] = "[[NaN, 1], [2, 3]]"
    run = comfyui.execute(graph, fresh=True)
    assert not run.success and run.error["node_id"] == "6"
    assert run.error["exception_message"].startswith("Drag Point Picker / input 'points': ")
    assert run.error["exception_type"].endswith("DragInputError")


# -- 2. nothing handed in changes (after success, error and cancel) ----------------------------

def test_no_node_changes_its_inputs(bridge, pack, env, chain):
    snap = Snapshot(bridge, [env.model, chain.model], [env.image, env.mask, env.cond, chain.inversion,
                                                       chain.drag.result])
    pts = drag_points(pack)
    call(pack.lora, env.model, env.vae, env.image, env.cond, 2, 2, 1e-3, 1, 0)
    call(pack.invert, chain.model, env.vae, env.image, env.cond, 0.8, NUM_STEPS)
    call(pack.picker, env.image, json.dumps(POINTS), "")
    call(pack.optimize, chain.model, chain.inversion, env.cond, pts, "DragDiffusion", "preset", "preset",
         "preset", env.mask, overrides(**{"schedule.max_steps": 2}), True)
    call(pack.sample, chain.model, chain.inversion, chain.drag, env.cond, True, -1)
    call(pack.auto_mask, env.model, env.vae, env.image, pts, 8, True, -1, env.mask, env.cond)
    call(pack.edit, env.model, env.vae, env.image, env.cond, pts, "DragDiffusion", True, 0, env.mask,
         overrides=overrides(**{"lora.steps": 1, "lora.rank": 2, "lora.batch_size": 1, "schedule.max_steps": 2}))
    snap.assert_unchanged()
    assert_clean(env.model, chain.model)


# -- 3. cancel (and errors) mid-way: stop within a step, leave nothing behind ------------------

def test_cancel_and_errors_in_every_stage_stop_at_once_and_leave_nothing(comfyui, bridge, pack, env, chain, cancel):
    import comfy.model_management as mm
    snap = Snapshot(bridge, [env.model, chain.model], [env.image, env.mask, env.cond, chain.inversion,
                                                       chain.drag.result])
    pts = drag_points(pack, [[10, 10], [50, 50]])
    stages = {
        "lora": lambda: run_node(pack.lora, env.model, env.vae, env.image, env.cond, 2, 6, 1e-3, 1, 0),
        "inversion": lambda: run_node(pack.invert, chain.model, env.vae, env.image, env.cond, 0.8, NUM_STEPS),
        "drag": lambda: run_node(pack.optimize, chain.model, chain.inversion, env.cond, pts, "DragDiffusion",
                                               "preset", "preset", "preset", None,
                                               overrides(**{"schedule.max_steps": 8}), True),
        "sampling": lambda: run_node(pack.sample, chain.model, chain.inversion, chain.drag, env.cond, True, -1),
    }
    for name, run in stages.items():
        for error in (None, RuntimeError(f"boom in {name}")):
            seen = cancel(at=2, error=error)
            with pytest.raises(mm.InterruptProcessingException if error is None else RuntimeError):
                call(run)
            assert max(seen) == 2, (name, seen)  # stopped at the step it was cancelled in
            assert_clean(env.model, chain.model)
    snap.assert_unchanged()
    cancel()
    assert call(stages["drag"])[0].result.steps > 0  # and the next run works


def test_cancel_in_each_stage_of_drag_edit(bridge, pack, env, cancel):
    import comfy.model_management as mm
    snap = Snapshot(bridge, [env.model], [env.image, env.cond])
    lora_steps, drag_steps, inversion_steps = 3, 4, 35  # Drag Edit runs the model's 50-step schedule
    settings = overrides(**{"lora.steps": lora_steps, "lora.rank": 2, "lora.batch_size": 1,
                            "schedule.max_steps": drag_steps})
    starts = {"lora": 1, "inversion": lora_steps + 1, "drag": lora_steps + inversion_steps + 1,
              "sampling": lora_steps + inversion_steps + drag_steps + 1}
    for stage, first in starts.items():
        seen = cancel(at=first + 1)
        with pytest.raises(mm.InterruptProcessingException):
            call(pack.edit, env.model, env.vae, env.image, env.cond, drag_points(pack, [[10, 10], [50, 50]]),
                 "DragDiffusion", True, 0, overrides=settings)
        assert max(seen) == first + 1 and first in seen, (stage, seen)
        assert_clean(env.model)
    snap.assert_unchanged()


# -- 4. files -----------------------------------------------------------------------------------

HOSTILE_NAMES = ["../../x", "/etc/passwd", "..\\..\\win", "C:\\Windows\\evil", "", "   ", ".", "..",
                 "ünïcødé 名前", "a" * 1000, "é" * 300, "name.safetensors", "x\0y", "con", "-rf", "a/b/../../c"]


def test_saved_loras_stay_in_the_loras_folder_with_sanitised_names(comfyui, bridge):
    import folder_paths
    folder = pathlib.Path(folder_paths.get_folder_paths("loras")[0]).resolve()
    outside_before = {p for p in comfyui.root.rglob("*") if folder not in p.resolve().parents}
    sd = {"lora_unet_x.lora_down.weight": torch.ones(2, 4), "lora_unet_x.lora_up.weight": torch.ones(4, 2),
          "lora_unet_x.alpha": torch.tensor(2.0)}
    for name in HOSTILE_NAMES:
        file_name = bridge.save_lora(sd, name)
        path = folder / file_name
        assert path.is_file() and path.resolve().parent == folder, (name, file_name)
        assert len(file_name.encode()) <= 255 and file_name.endswith(".safetensors")
        assert all(c.isalnum() or c in "_-" for c in file_name[:-len(".safetensors")]), file_name
    outside_after = {p for p in comfyui.root.rglob("*") if folder not in p.resolve().parents}
    assert outside_after == outside_before  # nothing written anywhere else


def test_an_existing_lora_file_is_never_overwritten(bridge):
    import folder_paths
    import safetensors.torch
    folder = pathlib.Path(folder_paths.get_folder_paths("loras")[0])
    folder.mkdir(parents=True, exist_ok=True)
    sd = {"lora_unet_x.alpha": torch.tensor(1.0)}
    (folder / "keep_00001.safetensors").write_bytes(b"not mine")
    os.symlink(folder / "elsewhere.bin", folder / "keep_00002.safetensors")  # a dangling link is a file too
    name = bridge.save_lora(sd, "keep")
    assert name == "keep_00003.safetensors"
    assert (folder / "keep_00001.safetensors").read_bytes() == b"not mine"
    assert not (folder / "elsewhere.bin").exists()
    assert bridge.save_lora(sd, "keep") == "keep_00004.safetensors"
    assert float(safetensors.torch.load_file(str(folder / name))["lora_unet_x.alpha"]) == 1.0


def test_identity_lora_node_saves_a_hostile_name_inside_the_loras_folder(pack, env):
    import folder_paths
    folder = pathlib.Path(folder_paths.get_folder_paths("loras")[0]).resolve()
    _, name = call(pack.lora, env.model, env.vae, env.image, env.cond, 2, 1, 1e-3, 1, 0, "../../../evil")
    assert name.startswith("evil_") and (folder / name).is_file()


# -- 5. same graph, same bits -------------------------------------------------------------------

def test_the_same_graph_twice_gives_bitwise_the_same_images(comfyui):
    from test_comfy_drag_graph import drag_graph
    graph = drag_graph(overrides='{"schedule.max_steps": 3}')
    graph["5"]["inputs"]["max_strength"] = 0.7
    first = comfyui.execute(graph, fresh=True)
    second = comfyui.execute(graph, fresh=True)
    assert first.success and second.success, (first.error, second.error)
    for node, output in (("8", 1), ("8", 0), ("7", 1), ("5", 1)):
        a, b = first.outputs[node][output], second.outputs[node][output]
        a, b = (a["samples"], b["samples"]) if isinstance(a, dict) else (a, b)
        assert torch.equal(a, b), (node, output)
    assert first.outputs["8"][1] is not second.outputs["8"][1]  # really computed twice
