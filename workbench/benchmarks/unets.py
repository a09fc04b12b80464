"""Real-size UNet layouts for the benchmarks, built from config dicts with random weights (nothing is
downloaded): SD 1.5 and SDXL base as diffusers' UNet2DConditionModel.

The SDXL dict is the architecture of stabilityai/stable-diffusion-xl-base-1.0's unet/config.json
(2.57 B parameters; fine-tunes and merges share it); SD 1.5's is diffusers' default layout with
CLIP-L's 768-wide context (0.86 B parameters).
"""

from __future__ import annotations

import torch

SD15 = dict(cross_attention_dim=768, attention_head_dim=8, block_out_channels=(320, 640, 1280, 1280))

SDXL = dict(
    sample_size=128, in_channels=4, out_channels=4, layers_per_block=2,
    block_out_channels=(320, 640, 1280),
    down_block_types=("DownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D"),
    up_block_types=("CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "UpBlock2D"),
    transformer_layers_per_block=(1, 2, 10), attention_head_dim=(5, 10, 20),  # heads, as diffusers names them
    cross_attention_dim=2048, use_linear_projection=True,
    addition_embed_type="text_time", addition_time_embed_dim=256, projection_class_embeddings_input_dim=2816,
)

LAYOUTS = {"sd15": SD15, "sdxl": SDXL}
NATIVE_SIZE = {"sd15": 512, "sdxl": 1024}  # the image side each was trained at
CONTEXT = {"sd15": 768, "sdxl": 2048}


def unet(name: str, dtype: torch.dtype = torch.float32, seed: int = 0):
    """A random-weight UNet2DConditionModel of that layout (eval, frozen)."""
    from diffusers import UNet2DConditionModel
    torch.manual_seed(seed)
    model = UNet2DConditionModel(**LAYOUTS[name])
    return model.to(dtype).eval().requires_grad_(False)


def conditioning(name: str, image_hw: tuple[int, int], seed: int = 0):
    """A random prompt of the right widths; SDXL's pooled text embedding beside it (its size and crop
    micro-conditioning are filled in from the latent by DiffusersUNet, as ComfyUI does)."""
    from comfyui_drag.drag_ops.model import Conditioning
    g = torch.Generator().manual_seed(seed)
    context = torch.randn(1, 77, CONTEXT[name], generator=g)
    added = {"text_embeds": torch.randn(1, 1280, generator=g)} if name == "sdxl" else {}
    return Conditioning(context, added)


def inputs(name: str, size: int, batch: int = 1):
    """(latent, context, added_cond_kwargs or None) of a forward at an image side of `size`, random, on the
    current default device and dtype (for the meta-device and fake-tensor counts, whose values do not matter)."""
    z = torch.randn(batch, 4, size // 8, size // 8)
    context = torch.randn(batch, 77, CONTEXT[name])
    added = {"text_embeds": torch.randn(batch, 1280), "time_ids": torch.randn(batch, 6)} if name == "sdxl" else None
    return z, context, added


def flops_per_forward(name: str, size: int) -> float:
    """Floating-point operations of one UNet forward at an image side of `size` (torch's FLOP counter on
    the meta device: no weights, no compute)."""
    from diffusers import UNet2DConditionModel
    from torch.utils.flop_counter import FlopCounterMode
    with torch.device("meta"):
        model = UNet2DConditionModel(**LAYOUTS[name]).eval()
        z, context, added = inputs(name, size)
        with FlopCounterMode(display=False) as counter:
            model(z, 500, encoder_hidden_states=context, added_cond_kwargs=added)
    return float(counter.get_total_flops())


if __name__ == "__main__":  # python -m workbench.benchmarks.unets: the compute of one forward of each layout
    base = flops_per_forward("sd15", 512)
    for name, size in (("sd15", 512), ("sdxl", 768), ("sdxl", 1024)):
        f = flops_per_forward(name, size)
        print(f"{name} at {size}x{size}: {f / 1e12:.2f} TFLOP per UNet forward, {f / base:.1f}x SD 1.5 at 512")
