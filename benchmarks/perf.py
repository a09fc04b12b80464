"""Speed and memory of each stage against the bare cost of the network (prints numbers).

    python benchmarks/perf.py --model shapes            the bundled tiny model, 64x64 images
    python benchmarks/perf.py --model sd15 --size 512   a random SD1.5-size UNet (few steps, ratios)

Ratios: a preset's motion-supervision step over the network passes it needs (counted: each
forward with gradients costs a bare forward+backward, each no-grad forward a bare forward);
a LoRA step at batch 4 over a bare forward+backward at batch 4; an inversion step over a forward.
"""

from __future__ import annotations

import argparse
import pathlib
import sys
import time

import torch

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1]))
import pack_loader  # noqa: E402

pack_loader.load()
from comfyui_drag.drag_ops import pipeline, presets  # noqa: E402
from comfyui_drag.drag_ops.inversion import invert  # noqa: E402
from comfyui_drag.drag_ops.lora import LoraSettings, train_identity_lora  # noqa: E402
from comfyui_drag.drag_ops.model import Conditioning, DiffusersVAECodec, DiffusionModel  # noqa: E402
from comfyui_drag.drag_ops.points import DragPoints  # noqa: E402
from comfyui_drag.drag_ops.schedule import DDIMSchedule  # noqa: E402


class _IdentityCodec:
    """Latents in, latents out: the SD-size run measures the UNet stages only."""

    def __init__(self, channels, downscale=8):
        self.latent_channels, self.downscale = channels, downscale

    def encode(self, x):
        raise NotImplementedError

    def decode(self, z):
        return z[:, :3]


def sd15_model(size: int, weights=None) -> tuple[DiffusionModel, Conditioning, torch.Tensor, dict]:
    from diffusers import UNet2DConditionModel
    torch.manual_seed(0)
    unet = UNet2DConditionModel(cross_attention_dim=768, attention_head_dim=8,
                                block_out_channels=(320, 640, 1280, 1280)).eval().requires_grad_(False)
    model = DiffusionModel(unet, _IdentityCodec(4), DDIMSchedule.stable_diffusion(50))
    cond = Conditioning(torch.randn(1, 77, 768))
    latent = torch.randn(1, 4, size // 8, size // 8) * 0.8
    return model, cond, latent, {}


def shapes_model(size: int, weights=None):
    from comfyui_drag.shapes import world
    model, cond = world.engine_model(weights), world.conditioning()
    scene = world.demo_scene(0)
    latent = model.codec.encode(world.to_engine_image(scene))
    return model, cond, latent, {"adapt": world.adapt}


class PassCounter:
    """Counts the model's forward passes, split by whether autograd records them."""

    def __init__(self, model):
        self.model, self.inner = model, model.forward
        self.grad = self.nograd = 0

    def __enter__(self):
        def counted(*a, **k):
            if torch.is_grad_enabled():
                self.grad += 1
            else:
                self.nograd += 1
            return self.inner(*a, **k)
        self.model.forward = counted
        return self

    def __exit__(self, *exc):
        del self.model.forward


def timed(fn, repeat: int) -> float:
    fn()  # warm-up
    t0 = time.perf_counter()
    for _ in range(repeat):
        fn()
    return (time.perf_counter() - t0) / repeat


def bare_costs(model, cond, latent, batch: int, repeat: int) -> tuple[float, float]:
    z = latent.expand(batch, -1, -1, -1).clone()
    t = model.schedule.timestep(35)

    def fwd():
        with torch.no_grad():
            model.forward(z, t, cond)

    def fwd_bwd():
        x = z.clone().requires_grad_(True)
        out, _ = model.forward(x, t, cond)
        out.float().square().mean().backward()

    with torch.inference_mode(False), torch.enable_grad(), model.backprop_memory():
        return timed(fwd, repeat), timed(fwd_bwd, repeat)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", choices=["shapes", "sd15"], default="shapes")
    ap.add_argument("--size", type=int, default=None, help="image size (sd15 default 512)")
    ap.add_argument("--steps", type=int, default=10, help="drag updates timed per preset")
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--presets", default=",".join(presets.PRESETS))
    ap.add_argument("--parts", default="invert,lora,presets", help="what to time besides the bare passes")
    ap.add_argument("--checkpointing", action="store_true", help="gradient checkpointing (all stages)")
    ap.add_argument("--threads", type=int, default=torch.get_num_threads())
    ap.add_argument("--weights", default=None, help="shapes weights folder (timings do not depend on the values)")
    args = ap.parse_args()
    size = args.size or (512 if args.model == "sd15" else 64)
    torch.set_num_threads(args.threads)
    model, cond, latent, extra = (sd15_model if args.model == "sd15" else shapes_model)(size, args.weights)
    adapt = extra.get("adapt", lambda c: c)
    model.gradient_checkpointing = args.checkpointing
    print(f"model {args.model}, image {size}x{size}, latent {tuple(latent.shape[1:])}, threads {torch.get_num_threads()}, "
          f"gradient checkpointing {'on' if args.checkpointing else 'off'}")

    t_f, t_fb = bare_costs(model, cond, latent, 1, args.repeat)
    print(f"bare forward {t_f * 1e3:.1f} ms; bare forward+backward {t_fb * 1e3:.1f} ms")

    parts = set(args.parts.split(","))
    # inversion step vs forward
    stamps = []
    if "invert" in parts:
        invert(model, latent, cond, 6 / 50, lambda *a: stamps.append(time.perf_counter()))
        t_inv = (stamps[-1] - stamps[0]) / (len(stamps) - 1)
        print(f"inversion step {t_inv * 1e3:.1f} ms = {t_inv / t_f:.2f}x forward")

    # LoRA step at batch 4 vs bare forward+backward at batch 4
    if "lora" in parts:
        _, t_fb4 = bare_costs(model, cond, latent, 4, max(2, args.repeat // 2))
        stamps = []
        train_identity_lora(model, latent, cond, LoraSettings(steps=args.repeat + 1),
                            lambda *a: stamps.append(time.perf_counter()))
        t_lora = (stamps[-1] - stamps[0]) / (len(stamps) - 1)
        print(f"LoRA step (batch 4) {t_lora * 1e3:.1f} ms = {t_lora / t_fb4:.2f}x bare forward+backward at batch 4 "
              f"({t_fb4 * 1e3:.1f} ms)")

    # one motion-supervision step of each preset, against the passes it makes
    if "presets" not in parts:
        return
    traj = invert(model, latent, cond, 0.8)
    h, w = latent.shape[-2] * model.codec.downscale, latent.shape[-1] * model.codec.downscale
    points = DragPoints(((w * 0.3, h * 0.4),), ((w * 0.7, h * 0.5),))
    print(f"{'preset':<14} {'ms/update':>10} {'fwd+bwd':>8} {'fwd':>5} {'ratio':>6}   (steady state: updates after the first two)")
    for name in args.presets.split(","):
        config = adapt(presets.preset(name))
        for attr in ("max_steps", "K"):  # a fixed budget, whatever the preset's stopping rule
            if hasattr(config.schedule, attr):
                setattr(config.schedule, attr, args.steps)
        config.drag.reach_distance = 0.0  # never "reached": every update is a full one
        region_mask, regions = pipeline.editable_region(model, torch.zeros(1, 3, h, w), traj.at(0), cond,
                                                         points, None, config)
        traj_k = pipeline.truncate(traj, model, config.inversion_strength)
        marks = []
        with PassCounter(model) as count:
            def cb(stage, step, total, _p):
                marks.append((time.perf_counter(), count.grad, count.nograd))
            pipeline.drag(model, traj_k, cond, points, (h, w), region_mask, config.drag, config.tracker,
                          config.supervision, config.schedule, cb, regions)
        (t0, g0, n0), (t1, g1, n1) = marks[1], marks[-1]
        updates = len(marks) - 2
        need = (g1 - g0) * t_fb + (n1 - n0) * t_f
        print(f"{name:<14} {(t1 - t0) / updates * 1e3:>10.1f} {(g1 - g0) / updates:>8.2f} "
              f"{(n1 - n0) / updates:>5.2f} {(t1 - t0) / need:>6.2f}")

if __name__ == "__main__":
    main()
