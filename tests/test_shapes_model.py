"""The shapes-world model layouts that workbench/shapes/train.py builds."""

import json

import pytest
import torch
from diffusers import AutoencoderKL, UNet2DConditionModel

from workbench.shapes.model import IMAGE_SIZE, WEIGHTS, empty_prompt, unet_config, vae_config


def test_the_default_layout_is_the_one_the_shipped_weights_have():
    """`python -m workbench.shapes.train` without --downsample rebuilds the shipped model's layout."""
    for name, config in (("vae", vae_config()), ("unet", unet_config())):
        shipped = json.loads((WEIGHTS / f"{name}.json").read_text())
        assert {k: list(v) if isinstance(v, tuple) else v for k, v in config.items()} == \
               {k: shipped[k] for k in config}


@pytest.mark.parametrize("downsample", [4, 2])
def test_the_vae_latent_is_what_the_unet_denoises(downsample):
    torch.manual_seed(0)
    vae, unet = AutoencoderKL(**vae_config(downsample)).eval(), UNet2DConditionModel(**unet_config(downsample)).eval()
    side = IMAGE_SIZE // downsample
    captured = []
    unet.up_blocks[2].register_forward_hook(lambda m, i, o: captured.append(o))
    with torch.no_grad():
        latent = vae.encode(torch.zeros(1, 3, IMAGE_SIZE, IMAGE_SIZE)).latent_dist.mean
        out = unet(latent, 500, encoder_hidden_states=empty_prompt(1)).sample
    assert latent.shape == out.shape == (1, 4, side, side) and unet.config.sample_size == side
    if downsample == 2:  # laid out as SD 1.5: up_blocks[2] (DragDiffusion's features) at the latent's size
        assert len(unet.up_blocks) == 4 and captured[0].shape[-1] == side


def test_the_shipped_vae_scales_latents_to_what_the_unet_was_trained_on():
    """Training scales latents to unit std and writes the factor into vae.json; loading must keep it
    (diffusers would otherwise put SD's 0.18215 back, and every latent would be 4.5x too small)."""
    from comfyui_drag.drag_ops.model import DiffusersVAECodec
    from workbench.shapes.model import load_shapes_model
    from workbench.shapes.scenes import scene_images
    from comfyui_drag.drag_ops.images import uint8_to_engine

    _, vae = load_shapes_model("cpu")
    assert vae.config.scaling_factor == pytest.approx(json.loads((WEIGHTS / "vae.json").read_text())["scaling_factor"])
    assert 0.8 < DiffusersVAECodec(vae).encode(uint8_to_engine(scene_images(range(32)))).std().item() < 1.25


def test_continuing_the_unet_keeps_the_vae_and_its_scale_and_records_the_earlier_run(tmp_path):
    """`--init-from DIR --skip-vae` (how the UNet is trained further): the VAE file and its latent
    scale stay as they were (the UNet was trained on latents of that scale, whatever a new scene
    pool's std is), the UNet moves on, and training.json keeps the record it continues."""
    import shutil

    from safetensors.torch import load_file

    from workbench.shapes.train import main

    weights = tmp_path / "weights"
    shutil.copytree(WEIGHTS, weights)
    vae_bytes = (weights / "vae.safetensors").read_bytes()
    before = load_file(weights / "unet.safetensors")
    main(["--out", str(weights), "--init-from", str(weights), "--skip-vae", "--samples-dir", str(tmp_path),
          "--threads", "1", "--scenes", "8", "--augment", "1", "--unet-steps", "1", "--unet-batch", "2",
          "--warmup", "1"])
    assert (weights / "vae.safetensors").read_bytes() == vae_bytes
    record = json.loads((weights / "training.json").read_text())
    shipped = json.loads((WEIGHTS / "training.json").read_text())
    shipped_scale = json.loads((WEIGHTS / "vae.json").read_text())["scaling_factor"]
    assert record["continued_from"] == shipped and record["unet"]["steps"] == 1
    assert record["vae"]["scaling_factor"] == pytest.approx(shipped_scale, abs=1e-4)
    assert json.loads((weights / "vae.json").read_text())["scaling_factor"] == shipped_scale
    after = load_file(weights / "unet.safetensors")
    assert before.keys() == after.keys() and any(not torch.equal(before[k], after[k]) for k in before)
