"""The bridge inside real ComfyUI: MODEL -> diffusers UNet, VAE -> codec, CONDITIONING -> context.

Skipped unless COMFYUI_PATH points at a ComfyUI checkout (see comfy_support.py).
"""

import pytest
import torch

from comfy_support import IMAGE, bridge, comfyui, make_comfy_model, requires_comfyui, tiny_sd15  # noqa: F401

pytestmark = requires_comfyui

# A second layout: SD2.x (linear projections, 64-channel heads, 1024-wide context, v prediction),
# attention at both levels, the second level twice as wide.
TINY_SD2 = {
    "use_checkpoint": False, "image_size": 32, "use_spatial_transformer": True, "legacy": False,
    "adm_in_channels": None, "in_channels": 4, "out_channels": 4, "model_channels": 320,
    "num_res_blocks": [1, 1], "channel_mult": [1, 2],
    "transformer_depth": [1, 1], "transformer_depth_output": [1, 1, 1, 1], "transformer_depth_middle": 1,
    "use_linear_in_transformer": True, "context_dim": 1024,
    "use_temporal_resblock": False, "use_temporal_attention": False,
}


def comfy_x0(model_patcher, z, t, context):
    """ComfyUI's own prediction of the clean latent for z at DDPM timestep t (via apply_model)."""
    import comfy.model_management
    comfy.model_management.load_models_gpu([model_patcher])
    base = model_patcher.model
    sigma = base.model_sampling.sigmas[t].reshape(1)
    with torch.no_grad():
        return base.apply_model(z * (1 + sigma ** 2).sqrt(), sigma, c_crossattn=context).float()


def engine_x0(dm, z, t, context):
    with torch.no_grad():
        out = dm.unet(z, t, encoder_hidden_states=context).sample.float()
    return dm.schedule.eps_and_x0(out, t, z)[1]


@pytest.fixture
def input_error(comfyui):
    return comfyui.pack_module("drag_ops.errors").DragInputError


def inputs(width, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(1, 4, 8, 8, generator=g), torch.randn(1, 77, width, generator=g)


def convert(bridge, model, vae, steps=50):
    with torch.inference_mode():  # as inside a node
        return bridge.diffusion_model_from_comfy(model, vae, steps)


@pytest.mark.parametrize("t", [1, 500, 981])
def test_sd15_prediction_matches_comfyui(bridge, tiny_sd15, t):
    model, _, vae = tiny_sd15
    dm = convert(bridge, model, vae)
    z, context = inputs(768)
    assert dm.unet.config.down_block_types == ("CrossAttnDownBlock2D", "DownBlock2D")
    assert dm.schedule.prediction_type == "epsilon"
    # the raw network, then the whole prediction through ComfyUI's sampling maths
    with torch.no_grad():
        theirs = model.model.diffusion_model(z, timesteps=torch.tensor([float(t)]), context=context)
        ours = dm.unet(z, t, encoder_hidden_states=context).sample
    assert (ours - theirs).abs().max() < 1e-4
    assert torch.allclose(engine_x0(dm, z, t, context), comfy_x0(model, z, t, context), atol=1e-4, rtol=1e-4)


def test_sd2_v_prediction_layout_matches_comfyui(bridge, tiny_sd15):
    _, _, vae = tiny_sd15
    model = make_comfy_model("SD20", TINY_SD2, model_type="V_PREDICTION")
    dm = convert(bridge, model, vae)
    assert dm.unet.config.use_linear_projection
    assert dm.unet.config.down_block_types == ("CrossAttnDownBlock2D", "CrossAttnDownBlock2D")
    assert dm.schedule.prediction_type == "v_prediction"
    z, context = inputs(1024, seed=1)
    for t in (1, 700):
        assert torch.allclose(engine_x0(dm, z, t, context), comfy_x0(model, z, t, context), atol=1e-4, rtol=1e-4)


def test_schedule_is_stable_diffusions(bridge, tiny_sd15):
    from comfyui_drag.drag_ops.schedule import scaled_linear_alphas
    model, _, vae = tiny_sd15
    schedule = convert(bridge, model, vae, steps=25).schedule
    assert schedule.num_steps == 25 and schedule.timesteps_ascending[:2] == [1, 41]
    assert torch.allclose(schedule.alphas_cumprod, scaled_linear_alphas(), rtol=1e-5, atol=0)


def test_weights_are_trainable_copies_and_comfys_are_untouched(bridge, tiny_sd15):
    model, _, vae = tiny_sd15
    before = {k: v.clone() for k, v in model.model.diffusion_model.state_dict().items()}
    dm = convert(bridge, model, vae)
    theirs = {v.data_ptr() for v in model.model.diffusion_model.state_dict().values()}
    for p in dm.unet.parameters():
        assert not p.is_inference() and not p.requires_grad and p.data_ptr() not in theirs
        assert p.dtype == torch.float32 and p.device.type == "cpu"
    # a gradient stage started from inside a node (inference mode) can backpropagate to the latent
    z, context = inputs(768)
    with torch.inference_mode():
        cond = bridge.conditioning_from_comfy([[context, {}]], dm)
        with torch.inference_mode(False):
            latent = z.clone().requires_grad_(True)
            out, feats = dm.forward(latent, 500, cond, features=None)
            out.square().mean().backward()
    assert latent.grad is not None and latent.grad.abs().sum() > 0
    assert model.patches == {}
    for k, v in model.model.diffusion_model.state_dict().items():
        assert torch.equal(v, before[k]), k


def test_conversion_is_cached_per_model_and_patches(bridge, tiny_sd15):
    model, _, vae = tiny_sd15
    first = convert(bridge, model, vae).unet
    assert convert(bridge, model, vae, steps=30).unet is first  # moved points, other steps: reuse
    assert convert(bridge, model.clone(), vae).unet is first  # a clone with the same patches
    key = next(iter(bridge.lora_key_map(model).values()))
    patched = model.clone()
    patched.add_patches({key: (torch.zeros_like(model.model.state_dict()[key]),)}, 1.0)
    second = convert(bridge, patched, vae).unet
    assert second is not first
    bridge.offload_cached_unet()  # between runs; on this CPU-only machine a no-op move
    assert convert(bridge, patched, vae).unet is second
    with torch.inference_mode():  # e.g. moved by someone inside a node: no longer trainable
        second.to(torch.float64).to(torch.float32)
    third = convert(bridge, patched, vae).unet
    assert third is not second and not any(p.is_inference() for p in third.parameters())


def test_codec_matches_comfys_vae_nodes(comfyui, bridge, tiny_sd15):
    model, _, vae = tiny_sd15
    nodes = comfyui.nodes
    with torch.inference_mode():
        image = nodes.LoadImage().load_image(IMAGE)[0]  # [1, H, W, 3] in [0, 1]
        reference = nodes.VAEEncode().encode(vae, image)[0]["samples"]
        dm = bridge.diffusion_model_from_comfy(model, vae)
        latent = dm.codec.encode(image.movedim(-1, 1) * 2 - 1)
        decoded = dm.codec.decode(latent)
    assert dm.codec.downscale == 8 and dm.codec.latent_channels == 4
    assert latent.shape == (1, 4, 8, 8) and not latent.is_inference()
    latent_format = model.get_model_object("latent_format")
    assert torch.allclose(latent, latent_format.process_in(reference), atol=1e-5)
    assert decoded.shape == (1, 3, 64, 64) and not decoded.is_inference()
    assert decoded.min() >= -1 and decoded.max() <= 1


def test_conditioning_from_clip_text_encode(comfyui, bridge, tiny_sd15, input_error):
    model, clip, vae = tiny_sd15
    with torch.inference_mode():
        conditioning = comfyui.nodes.CLIPTextEncode().encode(clip, "a yellow disc")[0]
        dm = bridge.diffusion_model_from_comfy(model, vae)
        cond = bridge.conditioning_from_comfy(conditioning, dm)
    assert cond.context.shape == (1, 77, 768) and not cond.context.is_inference()
    assert torch.equal(cond.context, conditioning[0][0].float())
    for bad in ([], None, [[]], [["text", {}]], [[torch.zeros(77, 768), {}]]):
        with pytest.raises(input_error, match="conditioning"):
            bridge.conditioning_from_comfy(bad)
    with pytest.raises(input_error, match="width 1024 does not fit the model's 768"):
        bridge.conditioning_from_comfy([[torch.zeros(1, 77, 1024), {}]], dm)


def full_size(context_dim, linear):
    """The real SD 1.x / 2.x UNet layout, as ComfyUI detects it from a checkpoint."""
    return {
        "use_checkpoint": False, "image_size": 32, "use_spatial_transformer": True, "legacy": False,
        "adm_in_channels": None, "in_channels": 4, "out_channels": 4, "model_channels": 320,
        "num_res_blocks": [2, 2, 2, 2], "channel_mult": [1, 2, 4, 4],
        "transformer_depth": [1, 1, 1, 1, 1, 1, 0, 0], "transformer_depth_output": [1] * 9 + [0] * 3,
        "transformer_depth_middle": 1, "use_linear_in_transformer": linear, "context_dim": context_dim,
        "use_temporal_resblock": False, "use_temporal_attention": False,
    }


@pytest.mark.parametrize("config_class, unet_config, heads", [
    ("SD15", full_size(768, False), (8, 8, 8, 8)), ("SD20", full_size(1024, True), (5, 10, 20, 20))])
def test_full_size_layouts_map_every_weight(bridge, config_class, unet_config, heads):
    model = make_comfy_model(config_class, unet_config, device="meta")  # shapes only, no weights
    config = bridge.diffusers_unet_config(model)
    assert config["down_block_types"] == ("CrossAttnDownBlock2D",) * 3 + ("DownBlock2D",)
    assert config["up_block_types"] == ("UpBlock2D",) + ("CrossAttnUpBlock2D",) * 3
    assert config["attention_head_dim"] == heads  # diffusers' published SD configs say the same
    mapping = bridge.weight_map(model)
    assert len(mapping) == len(set(mapping.values())) == len(model.model.diffusion_model.state_dict()) == 686


TINY_SDXL = {
    "use_checkpoint": False, "image_size": 32, "use_spatial_transformer": True, "legacy": False,
    "num_classes": "sequential", "adm_in_channels": 2816, "in_channels": 4, "out_channels": 4,
    "model_channels": 32, "num_res_blocks": [1], "channel_mult": [1], "transformer_depth": [1],
    "transformer_depth_output": [1, 1], "transformer_depth_middle": 1, "use_linear_in_transformer": True,
    "context_dim": 64, "num_head_channels": 32, "use_temporal_resblock": False, "use_temporal_attention": False,
}
TINY_FLUX = {
    "image_model": "flux", "in_channels": 16, "out_channels": 16, "vec_in_dim": 32, "context_in_dim": 32,
    "hidden_size": 64, "mlp_ratio": 2.0, "num_heads": 2, "depth": 1, "depth_single_blocks": 1,
    "axes_dim": [8, 12, 12], "theta": 10000, "patch_size": 2, "qkv_bias": True, "guidance_embed": True,
}


@pytest.mark.parametrize("config_class, unet_config, named", [
    ("SDXL", TINY_SDXL, "SDXL"), ("Flux", TINY_FLUX, "Flux")])
def test_other_model_families_get_a_clear_error(bridge, tiny_sd15, input_error, config_class, unet_config, named):
    _, _, vae = tiny_sd15
    model = make_comfy_model(config_class, unet_config, device="meta")
    with pytest.raises(input_error, match=f"{named}.*Stable Diffusion 1.x or 2.x"):
        convert(bridge, model, vae)


def test_flow_sampling_gets_a_clear_error(bridge, tiny_sd15, input_error):
    import comfy.model_sampling as ms
    model, _, vae = tiny_sd15

    class Flow(ms.ModelSamplingDiscreteFlow, ms.CONST):
        pass

    flow = model.clone()
    flow.add_object_patch("model_sampling", Flow(model.model.model_config))
    with pytest.raises(input_error, match="samples with ModelSamplingDiscreteFlow.*Stable Diffusion 1.x or 2.x"):
        convert(bridge, flow, vae)
    assert "model_sampling" not in model.object_patches

