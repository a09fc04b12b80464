"""Which decoder level of a UNet gives the drag its features: each level's output measured by how well
the engine's nearest-neighbour tracking (L1 over channels, :func:`drag_ops.tracking.window_search`)
finds content that was shifted by a known amount. Prints a table per model.

    python -m workbench.benchmarks.feature_levels                       SD 1.5 at 512 and SDXL at 1024, fp32
    python -m workbench.benchmarks.feature_levels --models sdxl --size 512 --threads 2

The UNets are real-size layouts with random weights (workbench/benchmarks/unets.py; nothing is downloaded), so
what this measures is the geometry of each level, not its semantics: how precisely a level localises
content (its resolution, and the aliasing of its downsampled grid), and how much its features still
say where content is when the noise around it differs (its receptive field). A trained model's
features are more semantic than a random one's at every level; the table is a basis for comparing
levels of SDXL with those of SD 1.5, whose up_blocks[2] the papers use.

The input is a latent with a natural-image-like spectrum (amplitude ~ 1/f), noised to the drag's
timestep (inversion strength 0.7 of 50 DDIM steps: t = 681). The shifted inputs are the same latent
moved by whole latent pixels, with the same noise moved along ("same noise": what a drag step
changes), or with fresh noise ("new noise": the content is all they share). Shifts, windows and
errors are parts of the picture, given in pixels of a 512-wide copy of it, so SD 1.5 at 512 and SDXL
at 1024 are compared on the same drag (a shift of 8 is one latent pixel of SD 1.5 at 512, two of SDXL
at 1024). Query points lie on a grid away from the borders; each is searched for in the shifted
features within 16 px beyond the largest shift, on the feature map at the level's own resolution and
resized (bilinear) to a half and a quarter of the image size, as the engine resizes features.

Cost: one forward per input (3 + shifts), then the UNet is freed before the search. SDXL at
1024x1024 in fp32 takes about 3 minutes a forward on one busy CPU thread and 10.3 GB for the weights;
--size 512 is four times cheaper (but not SDXL's native size). bf16 (--dtype bf16) halves the memory
and is slower on CPUs without native bf16 arithmetic.
"""

from __future__ import annotations

import argparse
import gc
import time

import torch
import torch.nn.functional as F


from workbench.benchmarks import unets  # noqa: E402
from comfyui_drag.drag_ops.coords import sample_at  # noqa: E402
from comfyui_drag.drag_ops.network import DiffusersUNet  # noqa: E402
from comfyui_drag.drag_ops.ddim import DDIMSchedule  # noqa: E402
from comfyui_drag.drag_ops.tracking import window_search  # noqa: E402

VAE_DOWNSCALE = 8  # image pixels per latent pixel (SD's and SDXL's VAE)


def natural_latent(channels: int, size: int, generator: torch.Generator) -> torch.Tensor:
    """[channels, size, size] with amplitude ~ 1/f (the spectrum of natural images), unit std per channel."""
    fy = torch.fft.fftfreq(size)[:, None]
    fx = torch.fft.rfftfreq(size)[None]
    f = (fx ** 2 + fy ** 2).sqrt().clamp_min(1.0 / size)
    shape = (channels, size, size // 2 + 1)
    spectrum = torch.complex(torch.randn(shape, generator=generator), torch.randn(shape, generator=generator)) / f
    x = torch.fft.irfft2(spectrum, s=(size, size))
    return (x - x.mean((1, 2), keepdim=True)) / x.std((1, 2), keepdim=True)


def inputs(latent_size: int, shifts, timestep: int, seed: int):
    """Noised latents [original, shifted with the same noise..., the last shift with new noise, the original
    with its centre latent pixel changed]."""
    g = torch.Generator().manual_seed(seed)
    margin = max(max(abs(dx), abs(dy)) for dx, dy in shifts)
    big = latent_size + 2 * margin
    content = natural_latent(4, big, g)
    noise, fresh = torch.randn(4, big, big, generator=g), torch.randn(4, big, big, generator=g)
    a = float(DDIMSchedule.stable_diffusion(50).alphas_cumprod[timestep])

    def crop(x, dx, dy):
        return x[:, margin + dy:margin + dy + latent_size, margin + dx:margin + dx + latent_size]

    def noised(dx, dy, eps):
        return a ** 0.5 * crop(content, dx, dy) + (1 - a) ** 0.5 * crop(eps, dx, dy)

    items = [noised(0, 0, noise)] + [noised(dx, dy, noise) for dx, dy in shifts] + [noised(*shifts[-1], fresh)]
    impulse = items[0].clone()  # one latent pixel changed at the centre: whose features does it reach?
    impulse[:, latent_size // 2, latent_size // 2] += 1.0
    return torch.stack(items + [impulse])


def footprint(base: torch.Tensor, changed: torch.Tensor, image_size: int) -> float:
    """Radius (image px) around the centre that holds half of the features' change (L1 over channels)
    after the centre latent pixel changed: how far a level's features reach."""
    change = (changed - base).abs().sum(0)
    n = change.shape[-1]
    coords = (torch.arange(n, dtype=torch.float32) + 0.5) * image_size / n - image_size / 2
    dist = (coords[None, :] ** 2 + coords[:, None] ** 2).sqrt().reshape(-1)
    order = dist.argsort()
    mass = change.reshape(-1)[order].cumsum(0)
    return float(dist[order][int((mass < 0.5 * mass[-1]).sum())])


@torch.no_grad()
def decoder_features(name: str, latents: torch.Tensor, timestep: int, dtype: torch.dtype) -> tuple[list, dict]:
    """Each decoder level's output for each latent (native resolution, fp32, CPU) and the layout facts."""
    t0 = time.perf_counter()
    network = DiffusersUNet(unets.unet(name, dtype))
    unet = network.unet
    levels = list(range(network.decoder_levels))
    depth = [max((len(a.transformer_blocks) for a in getattr(b, "attentions", []) or []), default=0)
             for b in unet.up_blocks]
    layout = {"channels": [network.level_channels(i) for i in levels], "depth": depth,
              "params": sum(p.numel() for p in unet.parameters())}
    print(f"{name}: UNet built in {time.perf_counter() - t0:.0f} s ({layout['params'] / 1e9:.2f} B parameters, "
          f"{dtype}); decoder levels {levels}", flush=True)
    hw = latents.shape[-2:]
    cond = unets.conditioning(name, tuple(v * VAE_DOWNSCALE for v in hw))
    out = []
    for i, z in enumerate(latents):
        t0 = time.perf_counter()
        _, feats = network.predict(z[None], timestep, cond, levels)
        out.append([f[0].float().cpu() for f in feats])
        print(f"  forward {i + 1}/{len(latents)}: {time.perf_counter() - t0:.0f} s", flush=True)
    del network, unet
    gc.collect()
    return out, layout


def query_points(image_size: int, count: int, border: float) -> torch.Tensor:
    """A count x count grid of image points (x, y), `border` pixels from the edges."""
    axis = torch.linspace(border, image_size - 1 - border, count)
    y, x = torch.meshgrid(axis, axis, indexing="ij")
    return torch.stack([x.reshape(-1), y.reshape(-1)], -1)


def track_errors(orig: torch.Tensor, moved: torch.Tensor, points: torch.Tensor, shift_px: torch.Tensor,
                 window_px: float, map_size: int | None, image_size: int) -> torch.Tensor:
    """Image-pixel error of nearest-neighbour tracking for each point: the original feature at the point,
    searched for in the moved features within `window_px` image pixels of the point."""
    if map_size is not None:  # as the engine does: bilinear to the feature size, then a pixel search
        orig = F.interpolate(orig[None], size=(map_size, map_size), mode="bilinear", align_corners=False)[0]
        moved = F.interpolate(moved[None], size=(map_size, map_size), mode="bilinear", align_corners=False)[0]
    scale = orig.shape[-1] / image_size  # map pixels per image pixel
    p = points * scale
    reference = sample_at(orig[None], p)  # [P, C]
    radius = max(1, round(window_px * scale))
    expected = points - shift_px
    errors = []
    for i in range(len(points)):
        ref = reference[i][:, None, None]
        found, _ = window_search(moved[None], p[i], radius, lambda win: (win - ref).abs().sum(0))
        errors.append(float((found / scale - expected[i]).norm()))
    return torch.tensor(errors)


HIT = 8.0  # a point is found when within 8 px of a 512-wide picture (one SD latent pixel, 1/64 of the side)


def measure(name: str, size: int, shifts_512, points_per_side: int, timestep: int, dtype, seed: int) -> None:
    at512 = 512 / size  # errors as parts of the picture: pixels of a 512-wide copy of it
    step = VAE_DOWNSCALE * at512  # pixels at 512 per latent pixel
    shifts = [(round(dx / step), round(dy / step)) for dx, dy in shifts_512]
    if any(abs(dx * step - sx) > 1e-6 or abs(dy * step - sy) > 1e-6 for (dx, dy), (sx, sy) in zip(shifts, shifts_512)):
        raise SystemExit(f"--shifts must be whole latent pixels of {name} at {size} px: multiples of {step:g}")
    latent_size = size // VAE_DOWNSCALE
    latents = inputs(latent_size, shifts, timestep, seed)
    feats, layout = decoder_features(name, latents, timestep, dtype)
    n_shift = len(shifts)
    # the search window reaches 16 px (of a 512 picture) beyond the largest shift, in every map
    window = (max(max(abs(dx), abs(dy)) for dx, dy in shifts_512) + 16) / at512
    points = query_points(size, points_per_side, window + VAE_DOWNSCALE)
    maps = [("/2", size // 2), ("/4", size // 4)]
    print(f"\n{name} at {size}x{size} (latent {latent_size}), t = {timestep}, {len(points)} points; shifts "
          f"{[(dx * 8, dy * 8) for dx, dy in shifts]} px at {size}. px/feat: image px per native feature px; reach: "
          f"radius holding half the features' change when the centre latent pixel changes; tracking, on features "
          f"resized to 1/2 and 1/4 of the image: % of points found within {HIT:g} px and the median error. Reach, "
          f"shifts and errors in pixels of the picture at 512")
    columns = [(j, kind, label, map_size) for j in range(n_shift) for kind in (0, 1) for label, map_size in maps
               if kind == 0 or j == n_shift - 1]  # new noise: the last shift only
    header = f"{'level':<8}{'ch':>5}{'depth':>6}{'px/feat':>8}{'reach':>6} |"
    for j, kind, label, _ in columns:
        sx, sy = shifts_512[j]
        title = f"{sx},{sy} {'new' if kind else 'same'} {label}"
        header += f" {title:>17}"
    print(header)
    for level, channels in enumerate(layout["channels"]):
        native = feats[0][level].shape[-1]
        reach = footprint(feats[0][level], feats[-1][level], size) * at512
        row = f"up[{level}]{'':<3}{channels:>5}{layout['depth'][level]:>6}{size / native:>8.0f}{reach:>6.0f} |"
        for j, kind, _, map_size in columns:
            dx, dy = shifts[j]
            moved = feats[n_shift + 1 if kind else 1 + j][level]
            shift_px = torch.tensor([dx, dy], dtype=torch.float32) * VAE_DOWNSCALE
            e = track_errors(feats[0][level], moved, points, shift_px, window, map_size, size) * at512
            row += f" {f'{100 * float((e <= HIT).float().mean()):.0f}% {float(e.median()):.1f}':>17}"
        print(row, flush=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--models", default="sd15,sdxl", help="sd15, sdxl or both")
    ap.add_argument("--size", type=int, default=None, help="image side (default: each model's native 512 / 1024)")
    ap.add_argument("--shifts", default="8,0;64,64",
                    help="shifts dx,dy in pixels of a 512-wide picture, separated by ';' (whole latent pixels: "
                         "multiples of 8 for SD 1.5 at 512, of 4 for SDXL at 1024)")
    ap.add_argument("--points", type=int, default=8, help="query points per side of the grid")
    ap.add_argument("--timestep", type=int, default=681, help="noise level (681: strength 0.7 of 50 DDIM steps)")
    ap.add_argument("--dtype", choices=["fp32", "bf16"], default="fp32")
    ap.add_argument("--threads", type=int, default=torch.get_num_threads())
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    shifts = [tuple(int(v) for v in s.split(",")) for s in args.shifts.split(";")]
    dtype = torch.bfloat16 if args.dtype == "bf16" else torch.float32
    for name in args.models.split(","):
        size = args.size or unets.NATIVE_SIZE[name]
        measure(name, size, shifts, args.points, args.timestep, dtype, args.seed)


if __name__ == "__main__":
    main()
