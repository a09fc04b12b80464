"""How well does the shapes-world UNet see the clean image through the noise? Prints numbers.

Validation scenes (never trained on) are encoded through the engine's codec, noised to timestep t
with the training schedule, and denoised in one step (x0 from the predicted noise). The decoded x0
is compared with the VAE's own reconstruction, so the number is the denoiser's error alone. This
is the quantity a drag at strength s relies on (t ~ 1000 s): the features and the sampler can only
be as good as the model's guess of the image; a latent scale that differs from the one the
UNet was trained with shows here first. Under a minute on one thread.

    python -m workbench.benchmarks.denoiser_x0 [--weights DIR] [--scenes 8] [--t 100,300,500,700,900]
"""

from __future__ import annotations

import argparse
import math

import torch

from workbench.shapes import world
from workbench.shapes.scenes import scene_images
from comfyui_drag.drag_ops.images import uint8_to_engine
from workbench.metrics import psnr
from workbench.shapes.train import VAL_SEED


@torch.no_grad()
def denoiser_psnr(model, cond, images: torch.Tensor, timesteps, seed: int = 0) -> tuple[float, dict]:
    """(PSNR of the codec's reconstruction against the images, {t: PSNR of the one-step x0, decoded,
    against that reconstruction}), in dB."""
    z0 = model.codec.encode(images)
    reference = model.codec.decode(z0)
    g = torch.Generator().manual_seed(seed)
    context = cond.batch(len(images)).context
    out = {}
    for t in timesteps:
        zt, _ = model.schedule.training_target(z0, torch.randn(z0.shape, generator=g), torch.full((len(z0),), t))
        _, x0 = model.schedule.eps_and_x0(model.network.unet(zt, t, encoder_hidden_states=context).sample, t, zt)
        out[t] = psnr(model.codec.decode(x0), reference)
    return psnr(reference, images), out


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--weights", default=None, help="shapes-world weights folder (default: workbench/shapes/weights)")
    ap.add_argument("--scenes", type=int, default=8)
    ap.add_argument("--t", default="100,300,500,700,900", help="comma-separated training timesteps (0-999)")
    ap.add_argument("--threads", type=int, default=1)
    a = ap.parse_args(argv)
    try:
        timesteps = [int(t) for t in a.t.split(",")]
    except ValueError:
        ap.error(f"--t takes comma-separated integers, got {a.t!r}")
    if not all(0 <= t < 1000 for t in timesteps) or a.scenes < 1:
        ap.error("--t values must be in 0..999 and --scenes at least 1")
    torch.set_num_threads(a.threads)
    model = world.engine_model(a.weights)
    images = uint8_to_engine(scene_images(range(VAL_SEED, VAL_SEED + a.scenes)))
    codec_db, scores = denoiser_psnr(model, world.conditioning(), images, timesteps)
    print(f"latent scale {model.codec.scaling_factor:.4f}; VAE reconstruction {codec_db:.1f} dB against the scenes")
    print("| t | " + " | ".join(map(str, timesteps)) + " |")
    print("|---|" + "---|" * len(timesteps))
    print("| x0 PSNR (dB) | " + " | ".join(f"{v:.1f}" if math.isfinite(v) else "inf" for v in scores.values()) + " |")


if __name__ == "__main__":
    main()
