"""The identity LoRA as an ordinary ComfyUI LoRA: patches on a MODEL clone, and a .safetensors
file that the stock LoraLoader loads with every key matched.

Skipped unless COMFYUI_PATH points at a ComfyUI checkout (see comfy_support.py).
"""

import pytest
import torch

from comfy_support import (CHECKPOINT, bridge, comfyui, patched_weights, requires_comfyui, run_node,  # noqa: F401
                           tiny_sd15)

pytestmark = requires_comfyui

TARGETS = ("to_q", "to_k", "to_v", "to_out.0", "proj_in")  # proj_in is a 1x1 conv in SD1.x


@pytest.fixture(scope="module")
def lora(comfyui, tiny_sd15):
    """A random adapter in the engine's LoraWeights format on ComfyUI's own module names (what
    training on the MODEL gives)."""
    model, _, _ = tiny_sd15
    g = torch.Generator().manual_seed(0)
    state = {}
    for name, module in model.model.diffusion_model.named_modules():
        if any(name.endswith("." + t) for t in TARGETS):
            w = module.weight
            state[f"{name}.lora_A.weight"] = 0.1 * torch.randn(4, *w.shape[1:], generator=g)
            state[f"{name}.lora_B.weight"] = 0.1 * torch.randn(w.shape[0], 4, *[1] * (w.dim() - 2), generator=g)
    assert "input_blocks.1.1.transformer_blocks.0.attn1.to_q.lora_A.weight" in state
    return comfyui.pack_module("drag_ops.lora").LoraWeights(state, 4, 8.0, TARGETS)


def lora_delta(lora, module, strength=1.0, dtype=torch.float32):
    a = lora.state[f"{module}.lora_A.weight"].to(dtype).float().flatten(1)
    b = lora.state[f"{module}.lora_B.weight"].to(dtype).float().flatten(1)
    return strength * lora.alpha / lora.rank * (b @ a)


def not_loaded(caplog):
    return [r.getMessage() for r in caplog.records
            if "lora key not loaded" in r.getMessage() or "NOT LOADED" in r.getMessage()]


def test_every_key_is_matched_by_comfys_lora_loader_under_diffusers_names(bridge, tiny_sd15, lora, caplog):
    import comfy.lora
    model, _, _ = tiny_sd15
    sd = bridge.lora_to_comfy_state_dict(lora, model)
    modules = {k.rsplit(".lora_", 1)[0] for k in lora.state}
    assert len(sd) == 3 * len(modules)
    # kohya names in diffusers' layout: what A1111 and diffusers load as well
    assert "lora_unet_down_blocks_0_attentions_0_transformer_blocks_0_attn1_to_q.lora_down.weight" in sd
    assert float(sd["lora_unet_down_blocks_0_attentions_0_proj_in.alpha"]) == 8.0
    key_map = comfy.lora.model_lora_keys_unet(model.model, {})
    patches = comfy.lora.load_lora(sd, key_map)
    assert not not_loaded(caplog)
    assert len(patches) == len(modules)
    comfy.lora.load_lora({**sd, "lora_unet_nowhere.lora_up.weight": torch.zeros(1)}, key_map)
    assert not_loaded(caplog)  # the check above would have seen an unmatched key


def test_patches_are_the_trained_adapter(comfyui, bridge, tiny_sd15, lora):
    """The adapter as ComfyUI weight patches and as the peft layers the training used: one model."""
    model, _, vae = tiny_sd15
    pack = comfyui.pack_module
    Stage = pack("drag_ops.network").Stage
    g = torch.Generator().manual_seed(3)
    z, context = torch.randn(1, 4, 8, 8, generator=g), torch.randn(1, 77, 768, generator=g)
    with torch.inference_mode():
        dm = bridge.diffusion_model_from_comfy(model, vae)
        cond = bridge.conditioning_from_comfy([[context, {}]], dm)

    def predict(dm, stage, adapter=None):
        def body():
            if adapter is None:
                return dm.forward(z, 400, cond)[0]
            with adapter.applied(dm.network):
                return dm.forward(z, 400, cond)[0]
        with torch.inference_mode():
            return dm.run(stage, cond, (8, 8), body)

    plain = predict(dm, Stage("plain"))
    layers = predict(dm, Stage("peft"), adapter=lora)
    patched = predict(dm, Stage("patches", lora=lora))
    assert (layers - plain).abs().max() > 1e-2
    assert (patched - layers).abs().max() < 1e-4
    assert model.patches == {}


def test_lora_file_round_trip_through_stock_lora_loader(comfyui, bridge, tiny_sd15, lora, caplog):
    import folder_paths
    model, _, vae = tiny_sd15
    name = bridge.save_lora(bridge.lora_to_comfy_state_dict(lora, model), "drag identity", bridge.lora_metadata(lora))
    assert name in folder_paths.get_filename_list("loras")
    assert bridge.save_lora({"x": torch.zeros(1)}, "drag identity") != name  # never overwrites

    run = comfyui.execute({
        "1": {"class_type": "CheckpointLoaderSimple", "inputs": {"ckpt_name": CHECKPOINT}},
        "2": {"class_type": "LoraLoader", "inputs": {"model": ["1", 0], "clip": ["1", 1], "lora_name": name,
                                                     "strength_model": 0.5, "strength_clip": 1.0}},
        "3": {"class_type": "CLIPTextEncode", "inputs": {"clip": ["2", 1], "text": "a disc"}},
        "4": {"class_type": "EmptyLatentImage", "inputs": {"width": 64, "height": 64, "batch_size": 1}},
        "5": {"class_type": "KSampler", "inputs": {"model": ["2", 0], "positive": ["3", 0], "negative": ["3", 0],
                                                   "latent_image": ["4", 0], "seed": 1, "steps": 1, "cfg": 1.0,
                                                   "sampler_name": "euler", "scheduler": "normal", "denoise": 1.0}},
        "6": {"class_type": "VAEDecode", "inputs": {"samples": ["5", 0], "vae": ["1", 2]}},
        "7": {"class_type": "SaveImage", "inputs": {"images": ["6", 0], "filename_prefix": "lora_round_trip"}},
    }, fresh=True)
    assert run.success, run.error
    assert not not_loaded(caplog)
    assert run.ui["7"]["images"][0]["filename"].startswith("lora_round_trip")
    loaded, original = run.outputs["2"][0], run.outputs["1"][0]
    modules = {k.rsplit(".lora_", 1)[0] for k in lora.state}
    assert len(loaded.patches) == len(modules) and original.patches == {}

    # the stock loader's patches are the adapter at strength 0.5 (the file stores fp16, as LoRA files do)
    before = patched_weights(original)
    after = patched_weights(loaded)
    for module in modules:
        key = f"{module}.weight"
        expected = lora_delta(lora, module, 0.5, torch.float16).reshape(after[key].shape)
        assert torch.allclose(after[key] - before[key], expected, atol=1e-5), key
    untouched = [k for k in after if k.rsplit(".", 1)[0] not in modules]
    assert untouched and all(torch.equal(after[k], before[k]) for k in untouched)
    again = patched_weights(original)  # and the original MODEL is what it was
    assert all(torch.equal(again[k], before[k]) for k in before)


def test_patched_model_is_seen_by_a_plain_ksampler(comfyui, bridge, tiny_sd15, lora):
    model, _, _ = tiny_sd15
    g = torch.Generator().manual_seed(5)
    cond = [[torch.randn(1, 77, 768, generator=g), {}]]
    latent = {"samples": torch.zeros(1, 4, 8, 8)}

    def sample(m):
        with torch.inference_mode():
            return comfyui.nodes.common_ksampler(m, 7, 2, 1.0, "euler", "normal", cond, cond, latent)[0]["samples"]

    plain = sample(model)
    patched = bridge.apply_lora_patches(model, bridge.lora_to_comfy_state_dict(lora, model), 1.0)
    assert (sample(patched) - plain).abs().max() > 1e-3
    assert torch.equal(sample(model), plain)  # the input MODEL is unchanged
    assert model.patches == {}


def test_lora_for_another_model_is_rejected(comfyui, bridge, tiny_sd15, lora):
    model, _, _ = tiny_sd15
    sd = bridge.lora_to_comfy_state_dict(lora, model)
    sd = {k.replace("down_blocks_0", "down_blocks_7"): v for k, v in sd.items()}
    error = comfyui.pack_module("drag_ops.errors").DragInputError
    with pytest.raises(error, match="do not exist in this MODEL"):
        bridge.apply_lora_patches(model, sd, 1.0)


def test_weights_that_are_not_plain_lora_are_refused(bridge, tiny_sd15, lora):
    model, _, _ = tiny_sd15
    weights = type(lora)({**lora.state, "middle_block.1.proj_in.lora_magnitude_vector": torch.ones(4)},
                         lora.rank, lora.alpha, lora.targets)
    with pytest.raises(ValueError, match="not a plain LoRA weight"):
        bridge.lora_to_comfy_state_dict(weights, model)


# -- which LoRA a drag used ---------------------------------------------------------------------

def test_the_optimizer_reports_the_identity_lora_its_model_carries(comfyui):
    """'Settings used' lists the LoRA on the MODEL (trained by Drag Identity LoRA, possibly cached from
    another run), not the optimizer's preset's LoRA defaults (GoodDrag's: rank 16, 80 steps, q/k/v)."""
    import json
    import re

    from comfy_support import lora_and_inversion_graph
    graph = {
        **lora_and_inversion_graph(2, 0.8, save_name="ident"),  # rank 4, 2 steps, lr 1e-3, batch 1, seed 0
        "6": {"class_type": "DragPointPicker", "inputs": {
            "image": ["3", 0], "points": json.dumps([{"handle": [20, 24], "target": [30, 26]}]), "mask": ""}},
        "7": {"class_type": "DragLatentOptimizer", "inputs": {
            "model": ["4", 0], "inversion": ["5", 0], "conditioning": ["2", 0], "points": ["6", 0],
            "preset": "GoodDrag", "tracker": "preset", "supervision": "preset", "schedule": "preset",
            "overrides": json.dumps({"drag.features.blocks": [1], "schedule.drag_rounds": 1})}},
    }
    expected = (r"identity LoRA: from Drag Identity LoRA, rank 4 \(alpha 4\), 2 steps, learning rate 0\.001, "
                r"batch 1, seed 0, targets to_q, to_k, to_v, to_out\.0; saved as ident_\d{5}\.safetensors")
    run = comfyui.execute(graph, targets=["7"], fresh=True)
    assert run.success, run.error
    settings = run.outputs["7"][4]
    assert re.search(expected, settings), settings
    assert "lora." not in settings and "rank 16" not in settings
    saved = re.search(r"ident_\d{5}\.safetensors", settings).group(0)

    graph["6"]["inputs"]["points"] = json.dumps([{"handle": [20, 24], "target": [34, 20]}])
    again = comfyui.execute(graph, targets=["7"])  # the LoRA comes from ComfyUI's cache
    assert again.success and "4" not in {node for node, *_ in again.progress}
    assert re.search(expected, again.outputs["7"][4])

    model, clip, vae = run.outputs["1"]
    inversion = run.outputs["5"][0]
    optimizer = comfyui.pack_module("nodes.drag_optimize").DragLatentOptimizer
    points = run.outputs["6"][0]

    def settings_with(m):
        return run_node(optimizer, m, inversion, run.outputs["2"][0], points, "GoodDrag", "preset", "preset",
                        "preset", None, graph["7"]["inputs"]["overrides"])[4]
    assert "identity LoRA: none on this MODEL" in settings_with(model)
    with torch.inference_mode():
        loaded = comfyui.nodes.LoraLoaderModelOnly().load_lora_model_only(model, saved, 1.0)[0]
        stacked = comfyui.nodes.LoraLoaderModelOnly().load_lora_model_only(run.outputs["4"][0], saved, 0.5)[0]
    text = settings_with(loaded)
    assert "identity LoRA: not from Drag Identity LoRA" in text and "LoraLoader" in text, text
    text = settings_with(stacked)
    assert re.search(expected, text) and "also carries other weight patches" in text, text
