"""The shapes-world model: a tiny VAE + UNet built from the same diffusers classes as SD 1.5.

Configs live here (training builds from them); the trained weights ship in ``weights/`` as
fp16 safetensors next to the diffusers config JSONs, and load back as fp32 modules.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch
from diffusers import AutoencoderKL, UNet2DConditionModel
from safetensors.torch import load_file, save_file

WEIGHTS = Path(__file__).resolve().parent / "weights"
IMAGE_SIZE = 64
CONTEXT_DIM = 32  # the "prompt" is one constant zero token of this width


def vae_config(downsample: int = 4) -> dict:
    """downsample 4: 64x64x3 -> 16x16x4; 2: -> 32x32x4 (a shape then spans 4-8 latent pixels, as an
    object spans tens of them in SD's 64x64 latent)."""
    levels = {4: (32, 64, 64), 2: (32, 64)}[downsample]
    return dict(
        in_channels=3, out_channels=3, latent_channels=4, sample_size=IMAGE_SIZE,
        block_out_channels=levels, layers_per_block=1,
        down_block_types=("DownEncoderBlock2D",) * len(levels), up_block_types=("UpDecoderBlock2D",) * len(levels),
        # the mid-block attention is global: a local latent edit would shift colours everywhere
        mid_block_add_attention=False,
    )


def unet_config(downsample: int = 4) -> dict:
    """downsample 4: three levels at 16, 8, 4; 2: four levels at 32, 16, 8, 4, laid out as SD 1.5's
    (up_blocks[2] is the second-to-last level, the one DragDiffusion's features come from), with
    attention on the middle two levels (SD: the top three; at 32x32 it would cost more than the rest)."""
    levels = {
        4: dict(block_out_channels=(64, 128, 128),
                down_block_types=("DownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D"),
                up_block_types=("CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "UpBlock2D")),
        2: dict(block_out_channels=(32, 64, 128, 128),
                down_block_types=("DownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "DownBlock2D"),
                up_block_types=("UpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "UpBlock2D")),
    }[downsample]
    return dict(
        sample_size=IMAGE_SIZE // downsample, in_channels=4, out_channels=4, layers_per_block=1, **levels,
        cross_attention_dim=CONTEXT_DIM,
        attention_head_dim=8,  # diffusers reads this as the number of heads
    )


def empty_prompt(batch: int = 1, device="cpu", dtype=torch.float32) -> torch.Tensor:
    """The conditioning the model was trained with: [batch, 1, 32] zeros."""
    return torch.zeros(batch, 1, CONTEXT_DIM, device=device, dtype=dtype)


def save_module(module: torch.nn.Module, folder: Path, name: str) -> None:
    """``name``.safetensors (fp16) and ``name``.json (the diffusers config)."""
    folder.mkdir(parents=True, exist_ok=True)
    state = {k: v.detach().to("cpu", torch.float16).contiguous() for k, v in module.state_dict().items()}
    save_file(state, str(folder / f"{name}.safetensors"))
    (folder / f"{name}.json").write_text(json.dumps(dict(module.config), indent=2, default=list) + "\n")


def load_module(cls, folder: Path, name: str, device="cpu"):
    config = json.loads((folder / f"{name}.json").read_text())
    # diffusers lists the arguments a module was built without under "_use_default_values" and on
    # load replaces them by its own defaults: that would turn the scaling factor training wrote with
    # register_to_config back into SD's 0.18215. The saved values are the model's, so they win.
    config.pop("_use_default_values", None)
    module = cls.from_config(config)
    module.load_state_dict(load_file(str(folder / f"{name}.safetensors")))  # fp16 -> fp32 params
    return module.to(device).eval().requires_grad_(False)


def load_shapes_model(device="cpu", folder: str | Path = WEIGHTS):
    """(unet, vae) in eval mode, fp32; the VAE's config carries the latent scaling factor."""
    folder = Path(folder)
    missing = [f for f in ("unet.safetensors", "vae.safetensors") if not (folder / f).exists()]
    if missing:
        raise FileNotFoundError(f"shapes-world weights missing in {folder}: {missing}; "
                                "train them with `python -m workbench.shapes.train` from the repository root")
    return load_module(UNet2DConditionModel, folder, "unet", device), load_module(AutoencoderKL, folder, "vae", device)
