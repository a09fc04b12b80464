"""SDXL in the standalone engine: a diffusers UNet with SDXL's added embeddings (the pooled prompt and the
size/crop numbers) runs every stage, knows its family, and the family's values reach the settings with
their sources (drag_ops/families.py). Tiny random models only; the ComfyUI side is test_comfy_sdxl.py."""

import pytest
import torch

from comfyui_drag.drag_ops import families
from comfyui_drag.drag_ops.errors import DragInputError
from comfyui_drag.drag_ops.model import Conditioning
from comfyui_drag.drag_ops.network import DiffusersUNet
from comfyui_drag.drag_ops.overrides import apply_overrides
from comfyui_drag.drag_ops.pipeline import run_edit
from comfyui_drag.drag_ops.plan import plan
from comfyui_drag.drag_ops.points import parse_points
from comfyui_drag.drag_ops.presets import PRESETS, describe_text, preset, source_of
from tiny_models import blob_image, tiny_model, tiny_sdxl_cond, tiny_sdxl_model, tiny_sdxl_pipeline, tiny_sdxl_unet

FAST = {"lora.steps": 2, "lora.rank": 4, "lora.batch_size": 2}
FAST_DRAG = {"DragDiffusion": {"schedule.max_steps": 3}, "FreeDrag": {"schedule.max_steps": 3},
             "StableDrag": {"schedule.max_steps": 3}, "AdaptiveDrag": {"schedule.max_steps": 3, "schedule.n": 3},
             "GoodDrag": {"schedule.drag_rounds": 2, "schedule.rounds_per_denoise": 1}}


@pytest.fixture(scope="module")
def sdxl():
    return tiny_sdxl_model()


def test_the_family_is_read_from_the_config():
    assert DiffusersUNet(tiny_sdxl_unet()).family is families.SDXL
    assert tiny_model().network.family is families.SD
    assert DiffusersUNet(tiny_sdxl_unet()).gradient_checkpointing  # SDXL's default (memory at 1024 px)
    assert not DiffusersUNet(tiny_sdxl_unet(), gradient_checkpointing=False).gradient_checkpointing
    assert not tiny_model().network.gradient_checkpointing


def test_the_refiner_is_refused_with_the_reason():
    from diffusers import UNet2DConditionModel
    config = dict(tiny_sdxl_unet().config)
    config["projection_class_embeddings_input_dim"] = 1280 + 5 * config["addition_time_embed_dim"]
    refiner = UNet2DConditionModel.from_config(config)
    with pytest.raises(DragInputError, match="SDXL refiner.*low-noise"):
        DiffusersUNet(refiner)


def test_the_prediction_is_the_unets_own_with_comfyuis_default_size_conditioning(sdxl):
    """Without time_ids the size/crop numbers are the image's (latent x 8) and crop 0, as ComfyUI's KSampler
    gives them; given time_ids are used as they are."""
    unet = sdxl.network.unet
    cond = tiny_sdxl_cond()
    z = torch.randn(2, 4, 8, 12, generator=torch.Generator().manual_seed(1))
    ours, _ = sdxl.network.predict(z, 500, cond.batch(2))
    time_ids = torch.tensor([[64.0, 96.0, 0.0, 0.0, 64.0, 96.0]]).expand(2, 6)
    with torch.no_grad():
        theirs = unet(z, 500, encoder_hidden_states=cond.context.expand(2, -1, -1), return_dict=False,
                      added_cond_kwargs={"text_embeds": cond.added["text_embeds"].expand(2, -1), "time_ids": time_ids})[0]
    assert torch.allclose(ours, theirs, atol=1e-5)
    other = Conditioning(cond.context, {**cond.added, "time_ids": torch.tensor([[1024.0, 1024.0, 0, 0, 1024.0, 1024.0]])})
    moved, _ = sdxl.network.predict(z, 500, other.batch(2))
    assert (moved - ours).abs().max() > 1e-4  # the numbers reach the UNet


def test_a_prompt_without_the_pooled_embedding_is_refused_before_any_stage(sdxl):
    cond = Conditioning(tiny_sdxl_cond().context)
    with pytest.raises(DragInputError, match="pooled prompt") as e:
        plan(sdxl, preset("DragDiffusion"), image_hw=(32, 32), points=parse_points([[8, 8], [16, 8]]), cond=cond)
    assert e.value.input == "conditioning"


def test_the_family_sets_features_reference_attention_and_the_clloss_patch(sdxl):
    network = sdxl.network
    layers = network.attention_layers()
    first_level_1 = next(i for i, layer in enumerate(layers) if layer.level == 1)
    config = families.adapt(preset("AdaptiveDrag"), network)
    assert config.drag.features.blocks == (1,) and config.drag.features.scale == 4
    assert config.reference.start_block == first_level_1
    assert config.reference.indices(network) == tuple(i for i, layer in enumerate(layers) if layer.level >= 1)
    assert config.guidance.radius == 2 * preset("AdaptiveDrag").guidance.radius
    assert config.drag.features.resolve((1024, 768)) == (256, 192)
    # every other value is the preset's; on SD 1.x/2.x nothing changes
    plain = preset("AdaptiveDrag")
    assert config.tracker.__dict__ == plain.tracker.__dict__ and config.lora == plain.lora
    assert families.adapt(plain, tiny_model().network) is plain


def test_the_family_leaves_what_the_user_set(sdxl):
    """A setting the user set keeps its value (keep: the paths an input set), and so does a setting that
    no longer holds the papers' value; stating the family's values twice changes nothing."""
    network = sdxl.network
    chosen = apply_overrides(preset("AdaptiveDrag"), {"drag.features.blocks": [2], "guidance.radius": 3})
    config = families.adapt(chosen, network, keep={"drag.features.blocks": "overrides"})
    assert config.drag.features.blocks == (2,)  # named by keep
    assert config.guidance.radius == 3  # not the papers' value any more
    assert config.drag.features.scale == 4
    once = families.adapt(preset("AdaptiveDrag"), network)
    assert families.adapt(once, network) == once and once.guidance.radius == 4


def test_the_settings_output_names_the_family_its_memory_choices_and_sources(sdxl):
    network = sdxl.network
    config = families.adapt(apply_overrides(preset("GoodDrag"), {"drag.features.blocks": [0]}), network)
    lines = families.describe_text("GoodDrag", config, network).splitlines()
    assert lines[0].startswith("model family: SDXL: trained at 1024x1024")
    assert lines[1].startswith("memory: gradient checkpointing on in the LoRA and the drag")
    assert "estimate" in lines[1] and lines[1].endswith("; gradient checkpointing on; UNet weights in float32")
    assert "drag.features.blocks = (0,)  (user)" in lines
    assert any(line.startswith("drag.features.scale = 4  (ours: SDXL works at 1024 px") for line in lines)
    assert any(line.startswith("reference.start_block = ") and "up_blocks[1]" in line for line in lines)
    assert f"schedule.drag_rounds = 70  ({source_of('GoodDrag', 'schedule.drag_rounds')})" in lines
    network.gradient_checkpointing = False
    try:
        assert families.summary(network).splitlines()[1].endswith("gradient checkpointing off (chosen); "
                                                                  "UNet weights in float32")
    finally:
        network.gradient_checkpointing = True
    sd_text = families.describe_text("GoodDrag", preset("GoodDrag"), tiny_model().network)
    assert sd_text.splitlines()[0].startswith("model family: SD 1.x/2.x")
    assert sd_text.splitlines()[1].startswith("memory: identity LoRA batch 4")
    assert f"drag.features.scale = 2  ({source_of('GoodDrag', 'drag.features')})" in sd_text
    assert sd_text.splitlines()[2:] == describe_text("GoodDrag").splitlines()  # the presets' own output


@pytest.mark.parametrize("name", list(PRESETS))
def test_every_preset_runs_end_to_end_on_an_sdxl_shaped_unet(sdxl, name):
    """LoRA, inversion, drag and reference sampling, with SDXL's added embeddings; run_edit gives the preset
    the family's values (features at a quarter of the image)."""
    config = apply_overrides(preset(name), {**FAST, **FAST_DRAG[name]})
    stages = set()
    result = run_edit(sdxl, blob_image(), parse_points([[10, 12], [18, 12]]), tiny_sdxl_cond(), config,
                      callback=lambda stage, i, n, p: stages.add(stage))
    assert stages == {"lora", "invert", "drag", "sample"}
    assert result.image.shape == (1, 3, 32, 32) and torch.isfinite(result.image).all()
    assert result.drag.geometry.feature_hw == (8, 8)  # a quarter of the image
    assert result.lora is not None and any("up_blocks.1" in k for k in result.lora.state)
    assert result.drag.steps > 0


def test_the_bench_cli_runs_on_an_sdxl_checkpoint_folder(tmp_path):
    """`python -m workbench bench --drag100 DIR --checkpoint SDXL_FOLDER`: the SDXL pipeline's two text encoders make the
    context and the pooled prompt, the family's values reach the run (and its JSON), a --set stays as set."""
    import json
    import subprocess
    import sys
    from pathlib import Path

    from test_benchmark import make_drag100
    folder = tmp_path / "sdxl"
    tiny_sdxl_pipeline().save_pretrained(folder, safe_serialization=True)
    report = tmp_path / "report.json"
    sets = ["lora.steps=2", "lora.rank=4", "lora.batch_size=1", "schedule.max_steps=2", "drag.features.scale=2"]
    run = subprocess.run([sys.executable, "-m", "workbench", "bench", "--drag100", str(make_drag100(tmp_path / "data")),
                          "--checkpoint", str(folder), "--presets", "DragDiffusion", "--device", "cpu",
                          "--json", str(report), *[a for s in sets for a in ("--set", s)]],
                         cwd=Path(__file__).resolve().parents[1], capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr[-2000:]
    assert "model family: SDXL" in run.stdout
    data = json.loads(report.read_text())
    assert data["model"].startswith("model family: SDXL")
    settings = data["settings"]["DragDiffusion"]
    assert settings["drag.features.blocks"] == [1] and settings["drag.features.scale"] == 2  # the family's; --set's
    assert data["summary"]["DragDiffusion"]["tasks"] == 1


@pytest.mark.parametrize("name", ["FastDrag", "RegionDrag"])
def test_the_one_pass_presets_run_on_an_sdxl_shaped_unet(sdxl, name):
    """Inversion, the latent edit and sampling beside the inversion's latent (its keys and values in the
    decoder's self-attention for FastDrag, which on SDXL is up_blocks[0] and [1], in every one for
    RegionDrag); the settings say the family, and that nothing trains."""
    from comfyui_drag.drag_ops import one_pass
    config = apply_overrides(preset(name), {"num_steps": 6})
    batches = []
    predict = sdxl.network.predict
    sdxl.network.predict = lambda z, *a, **k: batches.append(z.shape[0]) or predict(z, *a, **k)
    try:
        result = run_edit(sdxl, blob_image(centre=(10, 12)), parse_points([[10, 12], [18, 12]]), tiny_sdxl_cond(),
                          config)
    finally:
        del sdxl.network.predict
    assert result.image.shape == (1, 3, 32, 32) and torch.isfinite(result.image).all()
    assert result.lora is None and 2 in batches  # some sampling steps ran beside the inversion's latent
    layers = sdxl.network.attention_layers()
    decoder = tuple(i for i, layer in enumerate(layers) if layer.level >= 0)
    assert config.attention.indices(sdxl.network) == (decoder if name == "FastDrag" else tuple(range(len(layers))))
    assert one_pass.is_one_pass(families.adapt(config, sdxl.network))
    lines = families.describe_text(name, config, sdxl.network).splitlines()
    assert lines[0].startswith("model family: SDXL")
    assert lines[1] == "memory: training-free (no LoRA, no backward pass); UNet weights in float32"
    assert "num_steps = 6  (user)" in lines
