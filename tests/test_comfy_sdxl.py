"""SDXL on ComfyUI's own loaded model (nodes/comfy_network.py): ComfyUI builds SDXL's inputs (pooled prompt,
size and crop numbers) from the CONDITIONING as a KSampler does, the engine's prediction is ComfyUI's own,
the diffusers twin agrees, every stage runs through the engine on a tiny SDXL-layout MODEL with the
family's settings (drag_ops/families.py), and SD 1.5 and SDXL models in one run do not mix.

Skipped unless COMFYUI_PATH points at a ComfyUI checkout (see comfy_support.py).
"""

import pytest
import torch

from comfy_support import (assert_model_clean, bridge, comfyui, diffusers_twin, make_comfy_model,  # noqa: F401
                           patched_weights, requires_comfyui, tiny_sd15)
from test_comfy_network import TINY_FLUX, TINY_REFINER, engine, engine_out, in_stage, inputs, pack  # noqa: F401

pytestmark = requires_comfyui

# SDXL's layout in miniature, in ComfyUI's config format: three levels, no attention at the first, one and
# two transformer layers at the others (SDXL: 2 and 10), linear projections, and SDXL's 2816-wide added
# embedding (the 1280-wide pooled prompt and six 256-wide size/crop embeddings: ComfyUI builds it).
TINY_SDXL = {
    "use_checkpoint": False, "image_size": 32, "use_spatial_transformer": True, "legacy": False,
    "num_classes": "sequential", "adm_in_channels": 2816, "in_channels": 4, "out_channels": 4,
    "model_channels": 32, "num_res_blocks": [1, 1, 1], "channel_mult": [1, 2, 4],
    "transformer_depth": [0, 1, 2], "transformer_depth_output": [0, 0, 1, 1, 2, 2], "transformer_depth_middle": 2,
    "use_linear_in_transformer": True, "context_dim": 64, "num_head_channels": 32,
    "use_temporal_resblock": False, "use_temporal_attention": False,
}
# SDXL base 1.0 as ComfyUI detects it from a checkpoint (comfy/model_detection.py)
FULL_SDXL = {
    "use_checkpoint": False, "image_size": 32, "out_channels": 4, "use_spatial_transformer": True, "legacy": False,
    "num_classes": "sequential", "adm_in_channels": 2816, "in_channels": 4, "model_channels": 320,
    "num_res_blocks": [2, 2, 2], "transformer_depth": [0, 0, 2, 2, 10, 10], "channel_mult": [1, 2, 4],
    "transformer_depth_middle": 10, "use_linear_in_transformer": True, "context_dim": 2048, "num_head_channels": 64,
    "transformer_depth_output": [0, 0, 0, 2, 2, 2, 10, 10, 10], "use_temporal_attention": False,
    "use_temporal_resblock": False,
}
IMAGE = 64  # pixels; latent 8x8, feature maps 16x16 at SDXL's quarter of the image
FAST = {"lora.steps": 2, "lora.rank": 4, "lora.batch_size": 2}
FAST_DRAG = {"DragDiffusion": {"schedule.max_steps": 3}, "FreeDrag": {"schedule.max_steps": 3},
             "StableDrag": {"schedule.max_steps": 3}, "AdaptiveDrag": {"schedule.max_steps": 3, "schedule.n": 3},
             "GoodDrag": {"schedule.drag_rounds": 2, "schedule.rounds_per_denoise": 1}}


@pytest.fixture(scope="module")
def sdxl(comfyui):
    return make_comfy_model("SDXL", TINY_SDXL)


@pytest.fixture
def input_error(pack):
    return pack("drag_ops.errors").DragInputError


def sdxl_conditioning(seed=0, **options):
    """A CONDITIONING as CLIP Text Encode makes it with an SDXL CLIP: context and pooled prompt."""
    g = torch.Generator().manual_seed(seed)
    return [[torch.randn(1, 77, 64, generator=g), {"pooled_output": torch.randn(1, 1280, generator=g), **options}]]


def engine_cond(bridge, dm, conditioning):
    with torch.inference_mode():
        return bridge.conditioning_from_comfy(conditioning, dm)


def comfy_adm(model, conditioning, width, height):
    """SDXL's added embedding as ComfyUI builds it for a KSampler: pooled prompt + size/crop numbers."""
    with torch.no_grad():
        return model.model.encode_adm(**{"width": width, "height": height, **conditioning[0][1]},
                                      device=torch.device("cpu"))


def test_sdxl_base_layout_as_the_family_uses_it(pack):
    """Three decoder levels; features from up_blocks[1] (640 channels); reference attention over the 6 blocks
    of up_blocks[1], 64..69 of SDXL's 70; LoRA keyed as diffusers names SDXL's modules."""
    families = pack("drag_ops.families")
    model = make_comfy_model("SDXL", FULL_SDXL, device="meta")
    network = pack("nodes.comfy_network").ComfyNetwork(model)
    assert network.family is families.SDXL and network.gradient_checkpointing
    assert network.decoder_levels == 3 and network.downsampling == 4
    assert [network.level_channels(i) for i in range(3)] == [1280, 640, 320]
    unet = model.model.diffusion_model
    assert network._level_output(1) is unet.output_blocks[5][-1]  # up_blocks[1]'s upsampler
    layers = network.attention_layers()
    assert len(layers) == 70 and [layer.level for layer in layers[34:]] == [0] * 30 + [1] * 6
    config = families.adapt(pack("drag_ops.presets").preset("DragDiffusion"), network)
    assert config.reference.start_block == 64 and config.reference.indices(network) == tuple(range(64, 70))
    assert config.drag.features.blocks == (1,) and config.drag.features.scale == 4
    modules = [name for name, _ in unet.named_modules()
               if any(name.endswith("." + t) for t in network.lora_targets(("to_q", "to_k", "to_v", "to_out.0")))]
    keys = {network.lora_file_key(m) for m in modules}
    assert len(keys) == len(modules) == 70 * 8
    assert "lora_unet_up_blocks_1_attentions_0_transformer_blocks_0_attn1_to_q" in keys


def test_the_refiner_and_non_unet_models_get_a_clear_error(bridge, tiny_sd15, input_error):
    _, _, vae = tiny_sd15
    refiner = make_comfy_model("SDXLRefiner", TINY_REFINER, device="meta")
    with pytest.raises(input_error, match="SDXL refiner, trained only for the last, low-noise fifth.*or SDXL UNet"):
        engine(bridge, refiner, vae)
    flux = make_comfy_model("Flux", TINY_FLUX, device="meta")
    with pytest.raises(input_error, match=r"Flux, not a UNet; drag editing needs a Stable Diffusion 1.x, 2.x or SDXL"):
        engine(bridge, flux, vae)


@pytest.mark.parametrize("options", [{}, {"width": 1024, "height": 768, "crop_w": 16, "crop_h": 8}])
@pytest.mark.parametrize("t", [1, 500, 981])
def test_the_prediction_is_comfyuis_own_network_output(pack, bridge, tiny_sd15, sdxl, t, options):
    """The engine's forward goes through ComfyUI's sampler machinery, which adds SDXL's embedding of the
    pooled prompt and the size/crop numbers (the image's size when the CONDITIONING gives none)."""
    _, _, vae = tiny_sd15
    dm = engine(bridge, sdxl, vae)
    conditioning = sdxl_conditioning(**options)
    z, _ = inputs(64, seed=3)
    ours, _ = engine_out(pack, dm, engine_cond(bridge, dm, conditioning), z, t)
    y = comfy_adm(sdxl, conditioning, IMAGE, IMAGE)
    with torch.no_grad():
        theirs = sdxl.model.diffusion_model(z, timesteps=torch.tensor([float(t)]), context=conditioning[0][0], y=y)
    assert dm.schedule.prediction_type == "epsilon"
    assert torch.allclose(ours, theirs.float(), atol=1e-4, rtol=1e-4)
    other, _ = engine_out(pack, dm, engine_cond(bridge, dm, sdxl_conditioning(seed=1, **options)), z, t)
    assert (other - ours).abs().max() > 1e-3  # the prompt (and its pooled form) act


def test_comfyui_and_diffusers_backends_agree_on_sdxl(pack, bridge, tiny_sd15, sdxl):
    """Noise prediction and every decoder level's features, then a drag from the same inversion: ComfyUI's
    SDXL and a diffusers UNet2DConditionModel (text_time embedding) with the same weights."""
    _, _, vae = tiny_sd15
    comfy_dm = engine(bridge, sdxl, vae, steps=10)
    twin = pack("drag_ops.model").DiffusionModel(pack("drag_ops.network").DiffusersUNet(diffusers_twin(sdxl)),
                                                 comfy_dm.codec, comfy_dm.schedule)
    assert twin.network.family is comfy_dm.network.family is pack("drag_ops.families").SDXL
    conditioning = sdxl_conditioning(seed=2)
    cond = engine_cond(bridge, comfy_dm, conditioning)
    twin_cond = pack("drag_ops.model").Conditioning(cond.context, {"text_embeds": conditioning[0][1]["pooled_output"]})
    z, _ = inputs(64, seed=2, batch=2)
    for t in (1, 300, 900):
        ours, f_ours = engine_out(pack, comfy_dm, cond, z, t, levels=(0, 1, 2))
        theirs, f_theirs = engine_out(pack, twin, twin_cond, z, t, levels=(0, 1, 2))
        assert torch.allclose(ours, theirs, atol=1e-4, rtol=1e-4), t
        assert torch.allclose(f_ours, f_theirs, atol=1e-4, rtol=1e-4), t

    invert, drag = pack("drag_ops.inversion").invert, pack("drag_ops.drag")
    points = pack("drag_ops.points").parse_points([[20, 24], [36, 28]])
    spec = pack("drag_ops.model").FeatureSpec(blocks=(1,), scale=4)
    settings = drag.DragSettings(learning_rate=0.3, features=spec)  # a large step: the handle moves within a few
    results = []
    for dm, c in ((comfy_dm, cond), (twin, twin_cond)):
        with torch.inference_mode():
            trajectory = invert(dm, z[:1] * 0.5, c, 0.6)
            results.append((trajectory, drag.drag(dm, trajectory, c, points, (IMAGE, IMAGE), settings=settings,
                                                  schedule=pack("drag_ops.drag_schedules").SingleTimestep(6))))
    (traj_c, drag_c), (traj_d, drag_d) = results
    assert torch.allclose(traj_c.latents, traj_d.latents, atol=1e-4, rtol=1e-4)
    assert drag_c.history == drag_d.history and drag_c.steps == drag_d.steps
    assert drag_c.geometry.feature_hw == (16, 16)
    assert torch.allclose(drag_c.latent, drag_d.latent, atol=1e-4, rtol=1e-4)
    assert (drag_c.latent - traj_c.start).abs().max() > 1e-3


def test_checkpointing_changes_memory_not_the_gradient(pack, bridge, tiny_sd15, sdxl):
    """Gradient checkpointing (SDXL's default) recomputes each layer of the 3-level layout in the backward
    pass: the gradient reaching the latent is the one without it."""
    _, _, vae = tiny_sd15
    dm = engine(bridge, sdxl, vae)
    cond = engine_cond(bridge, dm, sdxl_conditioning())
    z, _ = inputs(64, seed=4)
    spec = pack("drag_ops.model").FeatureSpec(blocks=(1,), scale=4)

    def gradient():
        with torch.inference_mode(False), torch.enable_grad():
            latent = z.clone().requires_grad_(True)
            out, feats = dm.forward(latent, 600, cond, spec, (16, 16))
            (out.square().mean() + feats.abs().mean()).backward()
        return latent.grad
    grads = []
    for on in (True, False):
        dm.network.gradient_checkpointing = on
        grads.append(in_stage(pack, dm, cond, gradient, grad=True))
    assert grads[0].abs().sum() > 0 and torch.allclose(grads[0], grads[1], atol=1e-6, rtol=1e-4)
    assert_model_clean(sdxl)


def test_a_conditioning_without_the_pooled_prompt_is_refused_before_any_stage(pack, bridge, tiny_sd15, sdxl,
                                                                            input_error):
    _, _, vae = tiny_sd15
    dm = engine(bridge, sdxl, vae)
    bare = [[torch.randn(1, 77, 64), {}]]
    plan = pack("drag_ops.plan").plan
    config = pack("drag_ops.presets").preset("DragDiffusion")
    with pytest.raises(input_error, match="SDXL needs the pooled prompt") as e:
        plan(dm, config, ("invert",), image_hw=(IMAGE, IMAGE), cond=lambda: engine_cond(bridge, dm, bare))
    assert e.value.input == "conditioning"


@pytest.mark.parametrize("name", ["DragDiffusion", "FreeDrag", "StableDrag", "GoodDrag", "AdaptiveDrag"])
def test_every_stage_runs_on_sdxl_through_the_engine(pack, bridge, tiny_sd15, sdxl, name):
    """Identity LoRA, inversion, drag and reference sampling (the pipeline's stage functions, as the nodes
    call them) on the tiny SDXL MODEL with the family's settings; ComfyUI's model is left as it was."""
    _, _, vae = tiny_sd15
    families, pipeline = pack("drag_ops.families"), pack("drag_ops.pipeline")
    dm = engine(bridge, sdxl, vae, steps=10)
    cond = engine_cond(bridge, dm, sdxl_conditioning(width=IMAGE, height=IMAGE))
    config = families.adapt(pack("drag_ops.presets").preset(name), dm.network)
    config = pack("drag_ops.overrides").apply_overrides(config, {**FAST, **FAST_DRAG[name]})
    points = pack("drag_ops.points").parse_points([[20, 24], [36, 28]])
    image = torch.linspace(-1, 1, 3 * IMAGE * IMAGE).reshape(1, 3, IMAGE, IMAGE)
    checked = pack("drag_ops.plan").plan(dm, config, image_hw=(IMAGE, IMAGE), points=points, cond=cond)
    weights = patched_weights(sdxl)
    with torch.inference_mode():  # as inside a node
        latent = dm.codec.encode(image)
        lora = pack("drag_ops.lora").train_identity_lora(dm, latent, cond, config.lora)
        model = dm.with_lora(lora)
        mask, regions = pipeline.editable_region(model, image, latent, cond, points, None, config)
        trajectory = pack("drag_ops.inversion").invert(model, latent, cond, config.inversion_strength)
        result = pipeline.drag_stage(model, trajectory, cond, points, (IMAGE, IMAGE), mask, config, None, regions)
        original, edited = pipeline.sample_stage(model, trajectory, result, cond, config)
    assert set(checked.stages) == {"lora", "invert", "drag", "sample"}
    assert any("output_blocks" in k for k in lora.state)  # the LoRA covers the decoder's attention
    assert result.geometry.feature_hw == (16, 16) and result.steps > 0
    assert edited.shape == original.shape == (1, 4, 8, 8) and torch.isfinite(edited).all()
    assert (edited - original).abs().max() > 1e-4
    # requires_grad flags are ComfyUI's to set: unpatching a LoRA's weights puts them back as frozen Parameters
    assert_model_clean(sdxl)
    assert sdxl.patches == {}
    assert all(torch.equal(v, weights[k]) for k, v in patched_weights(sdxl).items())  # the LoRA was on a clone


def test_sd15_and_sdxl_in_one_run_do_not_mix(pack, bridge, tiny_sd15, sdxl, input_error):
    """Nothing is cached per model outside the MODEL itself: predictions of either model are the same
    before and after the other ran, each network keeps its own family and LoRA names, an inversion made
    on one is refused by the other, and a LoRA of one cannot be put on the other."""
    sd15, _, vae = tiny_sd15
    xl = engine(bridge, sdxl, vae)
    sd = engine(bridge, sd15, vae)
    xl_cond = engine_cond(bridge, xl, sdxl_conditioning())
    sd_z, sd_context = inputs(768, seed=5)
    with torch.inference_mode():
        sd_cond = bridge.conditioning_from_comfy([[sd_context, {}]], sd)
    xl_z, _ = inputs(64, seed=6)
    runs = []
    for _ in range(2):
        runs.append((engine_out(pack, sd, sd_cond, sd_z, 400, levels=(2,)),
                     engine_out(pack, xl, xl_cond, xl_z, 400, levels=(1,))))
    for (a, fa), (b, fb) in zip(runs[0], runs[1]):
        assert torch.equal(a, b) and torch.equal(fa, fb)
    assert xl.network.family.name == "SDXL" and sd.network.family.name == "SD 1.x/2.x"
    with pytest.raises(input_error, match="inversion was made with a SD15 model's latents.*SDXL") as e:
        with torch.inference_mode():
            bridge.diffusion_model_with_codec(sdxl, sd.codec)
    assert e.value.input == "inversion"
    sd_keys = [k for k in sd15.model.diffusion_model.state_dict() if k.endswith("attn1.to_q.weight")]
    name = "lora_unet_" + sd.network.lora_file_key(sd_keys[0][:-len(".weight")])[len("lora_unet_"):]
    lora = {f"{name}.lora_down.weight": torch.zeros(4, 320), f"{name}.lora_up.weight": torch.zeros(320, 4)}
    with pytest.raises(input_error, match="made for a different model"):
        bridge.apply_lora_patches(sdxl, lora)
