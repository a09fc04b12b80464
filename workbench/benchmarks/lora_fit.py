"""Does the identity LoRA learn the image it is trained on? Prints numbers.

DragDiffusion keeps a dragged object itself through a LoRA fitted to the one input image. On SD
the adapter sits on the attention layers, which hold much of the UNet. The shapes-world UNet has
attention only at its 8x8 and 4x4 levels, and its cross-attention reads one zero token (so its
adapters there receive nothing). For each set of target modules this script fits the LoRA to
validation scenes (never trained on) and reports:

- fit: the denoising loss on 16 fixed (timestep, noise) pairs of the image, before and after;
- regeneration: the image re-noised with fresh noise to strength s and sampled back by DDIM, PSNR
  against the input, without and with the LoRA: what the adapter holds of the image once the
  noise has destroyed the detail a drag disturbs.

    python -m workbench.benchmarks.lora_fit [--scenes 4] [--steps 300] [--strength 0.5]
"""

from __future__ import annotations

import argparse
import time

import torch

from comfyui_drag.drag_ops.lora import DEFAULT_TARGETS, LoraSettings, train_identity_lora
from workbench.shapes import world
from workbench.shapes.scenes import scene_images
from comfyui_drag.drag_ops.images import uint8_to_engine
from workbench.metrics import psnr
from workbench.shapes.train import VAL_SEED

# the second set is DragDiffusion's targets as world.adapt extends them
TARGETS = {"attention": DEFAULT_TARGETS, "attention+resnets": DEFAULT_TARGETS + world.LORA_EXTRA_TARGETS}


@torch.no_grad()
def fixed_loss(model, cond, z0: torch.Tensor, pairs: int = 16, seed: int = 0) -> float:
    """Mean noise-prediction MSE of the latent z0 [1, C, h, w] over evenly spaced timesteps."""
    g = torch.Generator().manual_seed(seed)
    t = torch.linspace(0, 999, pairs).long()
    zt, target = model.schedule.training_target(z0.expand(pairs, -1, -1, -1),
                                                torch.randn((pairs, *z0.shape[1:]), generator=g), t)
    out, _ = model.forward(zt, t, cond.batch(pairs))
    return float((out - target).pow(2).mean())


@torch.no_grad()
def regenerate(model, cond, z0: torch.Tensor, strength: float, seed: int = 0) -> torch.Tensor:
    """z0 noised with fresh noise to the DDIM step of ``strength`` and sampled back, decoded."""
    k = model.schedule.steps_for_strength(strength)
    noise = torch.randn(z0.shape, generator=torch.Generator().manual_seed(seed))
    z, _ = model.schedule.training_target(z0, noise, torch.tensor([model.schedule.timestep(k)]))
    for step in range(k, 0, -1):
        out, _ = model.forward(z, model.schedule.timestep(step), cond)
        z = model.schedule.step(out, step, z)
    return model.codec.decode(z)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--weights", default=None, help="shapes-world weights folder (default: workbench/shapes/weights)")
    ap.add_argument("--scenes", type=int, default=4)
    ap.add_argument("--steps", type=int, default=world.LORA_STEPS, help="LoRA steps (default: world.adapt's)")
    ap.add_argument("--rank", type=int, default=world.LORA_RANK)
    ap.add_argument("--lr", type=float, default=world.LORA_LEARNING_RATE)
    ap.add_argument("--strength", type=float, default=0.5)
    ap.add_argument("--threads", type=int, default=1)
    a = ap.parse_args(argv)
    if a.scenes < 1 or a.steps < 1 or not 0 < a.strength <= 1:
        ap.error("--scenes and --steps must be at least 1 and --strength in (0, 1]")
    torch.set_num_threads(a.threads)
    model, cond = world.engine_model(a.weights), world.conditioning()
    images = uint8_to_engine(scene_images(range(VAL_SEED, VAL_SEED + a.scenes))).split(1)
    # the base model's numbers do not depend on the targets: once per scene
    scenes = []
    for image in images:
        z0 = model.codec.encode(image)
        scenes.append((image, z0, fixed_loss(model, cond, z0), psnr(regenerate(model, cond, z0, a.strength), image)))
    print(f"LoRA rank {a.rank}, {a.steps} steps at {a.lr:g}; regeneration from strength {a.strength:g}")
    print("| targets | LoRA parameters | loss before | loss after | regeneration without | with | s / fit |")
    print("|---|---|---|---|---|---|---|")
    for name, targets in TARGETS.items():
        rows = []
        for image, z0, before, plain in scenes:
            t0 = time.perf_counter()
            lora = train_identity_lora(model, z0, cond, LoraSettings(rank=a.rank, learning_rate=a.lr,
                                                                     steps=a.steps, targets=targets))
            seconds = time.perf_counter() - t0
            with lora.applied(model.network):
                rows.append((before, fixed_loss(model, cond, z0), plain,
                             psnr(regenerate(model, cond, z0, a.strength), image), seconds))
        size = sum(v.numel() for v in lora.state.values())
        m = [sum(r[j] for r in rows) / len(rows) for j in range(5)]
        print(f"| {name} | {size:,} | {m[0]:.4f} | {m[1]:.4f} | {m[2]:.1f} dB | {m[3]:.1f} dB | {m[4]:.0f} |")


if __name__ == "__main__":
    main()
