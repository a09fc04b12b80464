"""Tiny random diffusers models with SD's block layout, for engine tests (seeded, CPU, fast)."""

import torch
from diffusers import AutoencoderKL, UNet2DConditionModel

from comfyui_drag.drag_ops.model import Conditioning, DiffusersVAECodec, DiffusionModel
from comfyui_drag.drag_ops.network import DiffusersUNet
from comfyui_drag.drag_ops.ddim import DDIMSchedule

CONTEXT_DIM = 32


def tiny_unet(seed: int = 0) -> UNet2DConditionModel:
    torch.manual_seed(seed)
    return UNet2DConditionModel(
        sample_size=16, in_channels=4, out_channels=4, layers_per_block=1,
        block_out_channels=(32, 32, 64, 64), norm_num_groups=16, cross_attention_dim=CONTEXT_DIM,
        attention_head_dim=8,
        down_block_types=("CrossAttnDownBlock2D",) * 3 + ("DownBlock2D",),
        up_block_types=("UpBlock2D",) + ("CrossAttnUpBlock2D",) * 3,
    ).eval()


def tiny_vae(seed: int = 0) -> AutoencoderKL:
    torch.manual_seed(seed)
    return AutoencoderKL(in_channels=3, out_channels=3, latent_channels=4, block_out_channels=(16, 16),
                         down_block_types=("DownEncoderBlock2D",) * 2, up_block_types=("UpDecoderBlock2D",) * 2,
                         layers_per_block=1, norm_num_groups=8, sample_size=32).eval()


def tiny_model(num_steps: int = 10, seed: int = 0, eps_scale: float = 0.1) -> DiffusionModel:
    """eps_scale shrinks the random noise prediction: a trained UNet's prediction is consistent
    along the DDIM path, a random one's is not, and inversion is only as exact as that."""
    unet = tiny_unet(seed)
    with torch.no_grad():
        unet.conv_out.weight.mul_(eps_scale)
        unet.conv_out.bias.mul_(eps_scale)
    return DiffusionModel(DiffusersUNet(unet), DiffusersVAECodec(tiny_vae(seed), scaling_factor=1.0),
                          DDIMSchedule.stable_diffusion(num_steps))


def tiny_cond(seed: int = 0) -> Conditioning:
    g = torch.Generator().manual_seed(seed)
    return Conditioning(torch.randn(1, 4, CONTEXT_DIM, generator=g))


def blob_image(h: int = 32, w: int = 32, centre=(10, 12), radius: float = 5) -> torch.Tensor:
    """[1, 3, h, w] in [-1, 1]: a red disc on a grey gradient."""
    y, x = torch.meshgrid(torch.arange(h, dtype=torch.float32), torch.arange(w, dtype=torch.float32), indexing="ij")
    disc = (((x - centre[0]) ** 2 + (y - centre[1]) ** 2) <= radius ** 2).float()
    bg = 0.2 * (x / w) - 0.1
    img = torch.stack([bg + disc * 0.9, bg - disc * 0.5, bg - disc * 0.5])
    return img[None].clamp(-1, 1)
