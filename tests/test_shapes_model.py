"""The shapes-world model layouts that shapes/train.py builds."""

import json

import pytest
import torch
from diffusers import AutoencoderKL, UNet2DConditionModel

from comfyui_drag.shapes.model import IMAGE_SIZE, WEIGHTS, empty_prompt, unet_config, vae_config


def test_the_default_layout_is_the_one_the_shipped_weights_have():
    """`python -m shapes.train` without --downsample rebuilds the shipped model's layout."""
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
    from comfyui_drag.shapes.model import load_shapes_model
    from comfyui_drag.shapes.scenes import scene_images
    from comfyui_drag.shapes.train import to_tensor

    _, vae = load_shapes_model("cpu")
    assert vae.config.scaling_factor == pytest.approx(json.loads((WEIGHTS / "vae.json").read_text())["scaling_factor"])
    assert 0.8 < DiffusersVAECodec(vae).encode(to_tensor(scene_images(range(32)))).std().item() < 1.25
