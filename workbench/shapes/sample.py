"""DDIM samples from the shapes-world model (pure noise -> image) through the engine's schedule
and codec: a sanity check that the trained weights work the way the drag engine uses them.

    python -m workbench.shapes.sample --out out/shapes_samples.png   (from the repository root)
    python -m workbench.shapes.sample -n 64 --score                  (+ how many sampled shapes are clean)
"""

from __future__ import annotations

import argparse

import numpy as np
import torch
from PIL import Image

from .model import empty_prompt, load_shapes_model

from comfyui_drag.drag_ops.ddim import DDIMSchedule
from comfyui_drag.drag_ops.images import engine_to_uint8
from comfyui_drag.drag_ops.model import DiffusersVAECodec


@torch.no_grad()
def ddim_sample(unet, vae, n: int = 16, seed: int = 0, steps: int = 50) -> np.ndarray:
    """n images as uint8 [n, H, W, 3]."""
    codec, sched = DiffusersVAECodec(vae), DDIMSchedule.stable_diffusion(steps)
    size = unet.config.sample_size
    z = torch.randn(n, codec.latent_channels, size, size, generator=torch.Generator().manual_seed(seed))
    cond = empty_prompt(n)
    for k in range(steps, 0, -1):
        eps = unet(z, sched.timestep(k), encoder_hidden_states=cond, return_dict=False)[0]
        z = sched.step(eps, k, z)
    return engine_to_uint8(codec.decode(z))


def grid(images: np.ndarray, cols: int = 4, zoom: int = 4) -> Image.Image:
    n, h, w, c = images.shape
    rows = -(-n // cols)
    pad = np.zeros((rows * cols - n, h, w, c), np.uint8)
    g = np.concatenate([images, pad]).reshape(rows, cols, h, w, c).transpose(0, 2, 1, 3, 4)
    img = Image.fromarray(g.reshape(rows * h, cols * w, c))
    return img.resize((img.width * zoom, img.height * zoom), Image.NEAREST)


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default="out/shapes_samples.png")
    ap.add_argument("--weights", default=None, help="weights folder (default: workbench/shapes/weights)")
    ap.add_argument("-n", type=int, default=16)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--steps", type=int, default=50)
    ap.add_argument("--score", action="store_true",
                    help="print the share of sampled shapes whose outline is a clean circle, square or triangle")
    ap.add_argument("--threads", type=int, default=2)
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    unet, vae = load_shapes_model(**({"folder": a.weights} if a.weights else {}))
    images = ddim_sample(unet, vae, a.n, a.seed, a.steps)
    grid(images).save(a.out)
    print(a.out)
    if a.score:
        from .benchmark import outline_quality
        print(outline_quality(images))


if __name__ == "__main__":
    main()
