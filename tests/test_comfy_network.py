"""The drag on ComfyUI's own loaded model (nodes/comfy_network.py): its predictions are ComfyUI's,
it makes no copy of the UNet, every patch on the MODEL acts in it, and it agrees with the
standalone engine's diffusers backend on the same weights.

Skipped unless COMFYUI_PATH points at a ComfyUI checkout (see comfy_support.py).
"""

import pytest
import torch

from comfy_support import (IMAGE, assert_model_clean, bridge, comfyui, diffusers_twin, make_comfy_model,  # noqa: F401
                           patched_weights, requires_comfyui, tiny_sd15)

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


@pytest.fixture(scope="module")
def pack(comfyui):
    return comfyui.pack_module


@pytest.fixture
def input_error(pack):
    return pack("drag_ops.errors").DragInputError


@pytest.fixture(scope="module")
def sd2(comfyui):
    return make_comfy_model("SD20", TINY_SD2, model_type="V_PREDICTION")


def inputs(width, seed=0, batch=1):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(batch, 4, 8, 8, generator=g), torch.randn(1, 77, width, generator=g)


def engine(bridge, model, vae, steps=50):
    with torch.inference_mode():  # as inside a node
        return bridge.diffusion_model_from_comfy(model, vae, steps)


def in_stage(pack, dm, cond, body, grad=False, batch=1):
    Stage = pack("drag_ops.network").Stage
    with torch.inference_mode():  # stages start inside a node
        return dm.run(Stage("test", batch=batch, grad=grad), cond, (8, 8), body)


def engine_out(pack, dm, cond, z, t, levels=()):
    spec = pack("drag_ops.model").FeatureSpec(blocks=tuple(levels)) if levels else None
    return in_stage(pack, dm, cond, lambda: dm.forward(z, t, cond, spec, (8, 8)), batch=z.shape[0])


def cond_of(bridge, dm, context):
    with torch.inference_mode():
        return bridge.conditioning_from_comfy([[context, {}]], dm)


@pytest.mark.parametrize("t", [1, 500, 981])
def test_the_prediction_is_comfyuis_own_network_output(pack, bridge, tiny_sd15, t):
    model, _, vae = tiny_sd15
    dm = engine(bridge, model, vae)
    z, context = inputs(768)
    ours, _ = engine_out(pack, dm, cond_of(bridge, dm, context), z, t)
    with torch.no_grad():
        theirs = model.model.diffusion_model(z, timesteps=torch.tensor([float(t)]), context=context).float()
    assert dm.schedule.prediction_type == "epsilon"
    assert torch.allclose(ours, theirs, atol=1e-4, rtol=1e-4)


def test_v_prediction_is_comfyuis_own_network_output(pack, bridge, tiny_sd15, sd2):
    _, _, vae = tiny_sd15
    dm = engine(bridge, sd2, vae)
    assert dm.schedule.prediction_type == "v_prediction"
    z, context = inputs(1024, seed=1)
    for t in (1, 700):
        ours, _ = engine_out(pack, dm, cond_of(bridge, dm, context), z, t)
        with torch.no_grad():
            theirs = sd2.model.diffusion_model(z, timesteps=torch.tensor([float(t)]), context=context).float()
        assert torch.allclose(ours, theirs, atol=1e-4, rtol=1e-4)


@pytest.mark.parametrize("layout", ["sd15", "sd2-v"])
def test_comfyui_and_diffusers_backends_agree_on_the_same_weights(pack, bridge, tiny_sd15, sd2, layout):
    """Noise prediction, decoder features, handle path and edited latent, from the same inversion."""
    model, _, vae = tiny_sd15
    if layout == "sd2-v":
        model = sd2
    comfy_dm = engine(bridge, model, vae, steps=10)
    twin = pack("drag_ops.model").DiffusionModel(pack("drag_ops.network").DiffusersUNet(diffusers_twin(model)),
                                                 comfy_dm.codec, comfy_dm.schedule)
    width = model.model.model_config.unet_config["context_dim"]
    z, context = inputs(width, seed=2, batch=2)
    cond = cond_of(bridge, comfy_dm, context)
    for t in (1, 300, 900):
        ours, f_ours = engine_out(pack, comfy_dm, cond, z, t, levels=(0, 1))
        theirs, f_theirs = engine_out(pack, twin, cond, z, t, levels=(0, 1))
        assert torch.allclose(ours, theirs, atol=1e-4, rtol=1e-4), t
        assert torch.allclose(f_ours, f_theirs, atol=1e-4, rtol=1e-4), t

    invert, drag = pack("drag_ops.inversion").invert, pack("drag_ops.drag")
    points = pack("drag_ops.points").parse_points([[20, 24], [36, 28]])
    # a large step so the handle moves within a few updates on this random model
    settings = drag.DragSettings(learning_rate=0.3, features=pack("drag_ops.model").FeatureSpec(blocks=(1,)))
    schedule = pack("drag_ops.drag_schedules").SingleTimestep(6)
    results = []
    for dm in (comfy_dm, twin):
        with torch.inference_mode():
            trajectory = invert(dm, z[:1] * 0.5, cond, 0.6)
            results.append((trajectory, drag.drag(dm, trajectory, cond, points, (64, 64), settings=settings,
                                                  schedule=schedule)))
    (traj_c, drag_c), (traj_d, drag_d) = results
    assert torch.allclose(traj_c.latents, traj_d.latents, atol=1e-4, rtol=1e-4)
    assert drag_c.history == drag_d.history and drag_c.steps == drag_d.steps
    assert drag_c.history[-1] != drag_c.history[0], "the handle moved"
    assert torch.allclose(drag_c.latent, drag_d.latent, atol=1e-4, rtol=1e-4)
    assert (drag_c.latent - traj_c.start).abs().max() > 1e-3  # the drag did move the latent


def test_stages_compute_with_comfyuis_own_weights_and_leave_them_as_they_were(pack, bridge, tiny_sd15):
    """No second copy: inside a gradient stage every weight the network uses lives in ComfyUI's own
    storage; the gradient reaches the latent; afterwards the parameters are ComfyUI's objects again."""
    model, _, vae = tiny_sd15
    unet = model.model.diffusion_model
    before = {k: v.clone() for k, v in patched_weights(model).items()}
    objects = {k: p for k, p in unet.named_parameters()}
    flags = {k: p.requires_grad for k, p in unet.named_parameters()}
    dm = engine(bridge, model, vae)
    z, context = inputs(768)
    cond = cond_of(bridge, dm, context)
    storage = {p.untyped_storage().data_ptr() for p in unet.parameters()}

    def body():
        used = {p.untyped_storage().data_ptr() for p in unet.parameters()}
        with torch.inference_mode(False), torch.enable_grad():
            latent = z.clone().requires_grad_(True)
            out, _ = dm.forward(latent, 500, cond)
            out.square().mean().backward()
        return used, latent.grad

    used, grad = in_stage(pack, dm, cond, body, grad=True)
    assert used == storage
    assert grad is not None and grad.abs().sum() > 0
    assert all(p is objects[k] for k, p in unet.named_parameters())
    assert_model_clean(model, flags)
    assert model.patches == {}
    assert all(torch.equal(v, before[k]) for k, v in patched_weights(model).items())


def first_denoised(comfyui, model, cond, noise):
    """What a stock KSampler's model call gives at its first step (euler, 1 step, CFG 1): the
    denoised prediction at sigma_max for x = noise scaled by the sampler, and that x."""
    import comfy.sample
    seen = {}

    def callback(step, x0, x, total):
        seen.setdefault("denoised", x0.clone())

    with torch.inference_mode():
        comfy.sample.sample(model, noise, 1, 1.0, "euler", "normal", cond, [], torch.zeros_like(noise),
                            denoise=1.0, callback=callback, disable_pbar=True, seed=0)
    return seen["denoised"]


def patched_models(comfyui, model):
    """The MODEL with a LoRA from the stock LoraLoader, and with PAG (a model_options patch)."""
    import comfy_extras.nodes_pag as pag
    import folder_paths
    import safetensors.torch
    from comfy_support import CHECKPOINT  # noqa: F401
    unet_keys = [k for k in model.model.diffusion_model.state_dict() if k.endswith("attn1.to_q.weight")]
    g = torch.Generator().manual_seed(7)
    sd = {}
    for k in unet_keys:
        name = "lora_unet_" + k[:-len(".weight")].replace(".", "_")
        w = model.model.diffusion_model.state_dict()[k]
        sd[f"{name}.lora_down.weight"] = torch.randn(4, w.shape[1], generator=g) * 0.3
        sd[f"{name}.lora_up.weight"] = torch.randn(w.shape[0], 4, generator=g) * 0.3
    path = f"{folder_paths.get_folder_paths('loras')[0]}/network_patch_test.safetensors"
    safetensors.torch.save_file(sd, path)
    with torch.inference_mode():
        lora = comfyui.nodes.LoraLoaderModelOnly().load_lora_model_only(model, "network_patch_test.safetensors", 1.0)[0]
        perturbed = pag.PerturbedAttentionGuidance.execute(model, 2.0)[0]
    return {"LoraLoader": lora, "PerturbedAttentionGuidance": perturbed}


def test_patches_on_the_model_act_in_the_drag_as_in_a_ksampler(pack, comfyui, bridge, tiny_sd15):
    model, clip, vae = tiny_sd15
    with torch.inference_mode():
        cond = comfyui.nodes.CLIPTextEncode().encode(clip, "a yellow disc")[0]
    noise = torch.randn(1, 4, 8, 8, generator=torch.Generator().manual_seed(4))
    t = 999  # the KSampler's first step is at sigma_max
    plain = None
    for name, patched in {"none": model, **patched_models(comfyui, model)}.items():
        dm = engine(bridge, patched, vae)
        with torch.inference_mode():
            engine_cond = bridge.conditioning_from_comfy(cond, dm)
        ours, _ = engine_out(pack, dm, engine_cond, noise, t)
        sigma = float(patched.get_model_object("model_sampling").sigma_max)
        x = noise * (1 + sigma ** 2) ** 0.5
        theirs = (x - first_denoised(comfyui, patched, cond, noise)) / sigma  # epsilon
        assert torch.allclose(ours, theirs.float(), atol=1e-3, rtol=1e-3), name
        if plain is None:
            plain = ours
        else:
            assert (ours - plain).abs().max() > 1e-2, f"{name} changed nothing"


def test_a_drag_runs_through_a_model_with_a_model_options_patch(pack, bridge, tiny_sd15, sd2):
    """FreeU_V2 edits the decoder's activations in place; the drag still backpropagates through it."""
    import comfy_extras.nodes_freelunch as freelunch
    _, _, vae = tiny_sd15
    with torch.inference_mode():
        patched = freelunch.FreeU_V2().patch(sd2, 1.3, 1.4, 0.9, 0.2)[0]
    dm = engine(bridge, patched, vae, steps=10)
    _, context = inputs(1024, seed=3)
    cond = cond_of(bridge, dm, context)
    z = torch.randn(1, 4, 8, 8, generator=torch.Generator().manual_seed(3)) * 0.5
    plain, _ = engine_out(pack, engine(bridge, sd2, vae, steps=10), cond, z, 500)
    ours, _ = engine_out(pack, dm, cond, z, 500)
    assert (ours - plain).abs().max() > 1e-3  # FreeU acts (its 640-channel level)

    # the gradient through its in-place edits is the true one: a directional derivative
    direction = torch.randn(z.shape, generator=torch.Generator().manual_seed(5))
    weight = torch.randn(z.shape, generator=torch.Generator().manual_seed(6))

    def loss(latent):
        return (dm.forward(latent, 500, cond)[0] * weight).sum()

    def grad_and_slope():
        with torch.inference_mode(False), torch.enable_grad():
            latent = z.clone().requires_grad_(True)
            loss(latent).backward()
        with torch.no_grad():
            slope = (loss(z + 1e-2 * direction) - loss(z - 1e-2 * direction)) / 2e-2
        return float((latent.grad * direction).sum()), float(slope)
    analytic, numeric = in_stage(pack, dm, cond, grad_and_slope, grad=True)
    assert analytic == pytest.approx(numeric, rel=2e-2)
    drag = pack("drag_ops.drag")
    with torch.inference_mode():
        trajectory = pack("drag_ops.inversion").invert(dm, z, cond, 0.6)
        settings = drag.DragSettings(features=pack("drag_ops.model").FeatureSpec(blocks=(1,)))
        result = drag.drag(dm, trajectory, cond, pack("drag_ops.points").parse_points([[20, 24], [36, 28]]),
                           (64, 64), settings=settings, schedule=pack("drag_ops.drag_schedules").SingleTimestep(2))
    assert result.steps == 2 and torch.isfinite(result.latent).all()
    assert_model_clean(sd2)


def test_schedule_is_stable_diffusions(bridge, tiny_sd15):
    from comfyui_drag.drag_ops.ddim import scaled_linear_alphas
    model, _, vae = tiny_sd15
    schedule = engine(bridge, model, vae, steps=25).schedule
    assert schedule.num_steps == 25 and schedule.timesteps_ascending[:2] == [1, 41]
    assert torch.allclose(schedule.alphas_cumprod, scaled_linear_alphas(), rtol=1e-5, atol=0)


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
    assert not cond.native[0][0].is_inference() and torch.equal(cond.native[0][0], conditioning[0][0])
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


@pytest.mark.parametrize("config_class, unet_config", [("SD15", full_size(768, False)), ("SD20", full_size(1024, True))])
def test_full_size_layouts_as_the_papers_count_them(pack, config_class, unet_config):
    """Decoder levels as diffusers' up_blocks, the 16 transformer blocks with MasaCtrl's 10..15 in
    the last two decoder levels, and LoRA files keyed as diffusers names them."""
    model = make_comfy_model(config_class, unet_config, device="meta")  # shapes only, no weights
    network = pack("nodes.comfy_network").ComfyNetwork(model)
    assert network.decoder_levels == 4 and network.downsampling == 8
    assert [network.level_channels(i) for i in range(4)] == [1280, 1280, 640, 320]
    unet = model.model.diffusion_model
    assert network._level_output(2) is unet.output_blocks[8][-1]  # up_blocks[2]'s upsampler
    layers = network.attention_layers()
    assert len(layers) == 16 and [layer.level for layer in layers[10:]] == [2, 2, 2, 3, 3, 3]
    assert pack("drag_ops.reference").ReferenceControl().indices(network) == tuple(range(10, 16))
    targets = network.lora_targets(("to_q", "to_k", "to_v", "to_out.0", "conv1", "conv2"))
    modules = [name for name, _ in unet.named_modules() if any(name.endswith("." + t) for t in targets)]
    keys = {network.lora_file_key(m) for m in modules}
    assert len(keys) == len(modules) == 16 * 8 + 22 * 2  # 8 projections per block, 2 convs per ResBlock
    assert "lora_unet_up_blocks_2_attentions_0_transformer_blocks_0_attn1_to_q" in keys
    assert "lora_unet_down_blocks_0_resnets_0_conv1" in keys
    assert all(k.startswith(("lora_unet_down_blocks", "lora_unet_mid_block", "lora_unet_up_blocks")) for k in keys)


# the SDXL refiner's kind of UNet (its 2560-wide added embedding: pooled prompt, size, crop, aesthetic score)
TINY_REFINER = {
    "use_checkpoint": False, "image_size": 32, "use_spatial_transformer": True, "legacy": False,
    "num_classes": "sequential", "adm_in_channels": 2560, "in_channels": 4, "out_channels": 4,
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
    ("SDXLRefiner", TINY_REFINER, "SDXL refiner"), ("Flux", TINY_FLUX, "Flux")])
def test_other_model_families_get_a_clear_error(bridge, tiny_sd15, input_error, config_class, unet_config, named):
    _, _, vae = tiny_sd15
    model = make_comfy_model(config_class, unet_config, device="meta")
    with pytest.raises(input_error, match=f"{named}.*Stable Diffusion 1.x, 2.x or SDXL"):
        engine(bridge, model, vae)


def test_flow_sampling_gets_a_clear_error(bridge, tiny_sd15, input_error):
    import comfy.model_sampling as ms
    model, _, vae = tiny_sd15

    class Flow(ms.ModelSamplingDiscreteFlow, ms.CONST):
        pass

    flow = model.clone()
    flow.add_object_patch("model_sampling", Flow(model.model.model_config))
    with pytest.raises(input_error, match="samples with ModelSamplingDiscreteFlow.*Stable Diffusion 1.x, 2.x or SDXL"):
        engine(bridge, flow, vae)
    assert "model_sampling" not in model.object_patches


def test_after_unload_models_nothing_of_the_model_stays_alive(comfyui, tiny_sd15):
    """POST /free {"unload_models": true, "free_memory": true}: ComfyUI unloads its models and drops
    its caches; then neither the UNet the graph loaded nor any copy of one may stay in memory."""
    import gc
    import weakref

    import comfy.model_management as mm
    from test_comfy_drag_graph import drag_graph

    def unets(size):
        return [m for m in gc.get_objects() if isinstance(m, torch.nn.Module)
                and type(m).__name__ in ("UNetModel", "UNet2DConditionModel")
                and sum(p.numel() for p in m.parameters()) == size]

    size = sum(p.numel() for p in tiny_sd15[0].model.diffusion_model.parameters())
    before = weakref.WeakSet(unets(size))  # other tests' models, not this graph's
    run = comfyui.execute(drag_graph(), fresh=True)
    assert run.success, run.error
    loaded = weakref.ref(run.outputs["1"][0].model.diffusion_model)
    del run
    mm.unload_all_models()  # what ComfyUI's prompt worker does for those flags
    comfyui._executor.reset()
    gc.collect()
    assert loaded() is None
    assert not [type(m).__name__ for m in unets(size) if m not in before]
