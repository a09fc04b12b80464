"""Train the shapes-world model on CPU: first the VAE, then the UNet on pre-encoded latents.

    python -m workbench.shapes.train --out workbench/shapes/weights          (from the repository root)

Step counts are either given (--vae-steps, --unet-steps: reproducible from --seed) or sized
from a time budget after timing the first steps (the counts chosen are logged and written to
training.json, so the run can be repeated exactly with them). EMA weights are saved every
--ckpt-minutes, so a usable model exists even if the run is stopped early.
"""

from __future__ import annotations

import argparse
import copy
import json
import math
import time
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from diffusers import AutoencoderKL, UNet2DConditionModel

from comfyui_drag.drag_ops.images import uint8_to_engine

from .. import metrics
from .model import empty_prompt, load_module, save_module, unet_config, vae_config
from .sample import DDIMSchedule, ddim_sample, grid
from .scenes import scene_images

VAL_SEED = 10_000_000  # validation scenes use seeds from here on, never seen in training


def log(msg: str) -> None:
    print(f"{datetime.now(timezone.utc):%H:%M:%S} {msg}", flush=True)


def dihedral(x: torch.Tensor, k: int) -> torch.Tensor:
    """One of the 8 rotations/flips: a rotated or mirrored scene is still a valid scene."""
    x = torch.rot90(x, k % 4, dims=(-2, -1))
    return torch.flip(x, dims=(-1,)) if k >= 4 else x


def lr_at(step: int, total: int | None, peak: float, warmup: int) -> float:
    """Linear warm-up, then cosine down to 2% of the peak."""
    if step < warmup or total is None:
        return peak * (step + 1) / warmup
    p = min(1.0, (step - warmup) / max(1, total - warmup))
    return peak * (0.02 + 0.98 * 0.5 * (1 + math.cos(math.pi * p)))


class StepBudget:
    """Total step count: given, or re-sized every ``every`` steps from the average time per step
    so far, so the cosine schedule ends on time even when other work slows the machine."""

    def __init__(self, steps: int, seconds: float, every: int = 25, skip: int = 2):
        self.fixed = bool(steps)
        self.total = steps or None
        self.seconds, self.every, self.skip = seconds, every, skip
        self.t_start = self.t_skip = time.time()

    def after(self, step: int, name: str) -> None:
        if step + 1 == self.skip:
            self.t_skip = time.time()
        if not self.fixed and step + 1 >= self.every and (step + 1) % self.every == 0:
            per_step = (time.time() - self.t_skip) / (step + 1 - self.skip)
            left = self.seconds - (time.time() - self.t_start)
            first = self.total is None
            self.total = step + 1 + max(0, int(left / per_step))
            if first:
                log(f"{name}: {per_step:.3f} s/step measured -> about {self.total} steps")


def init(cls, config: dict, folder: str | None, name: str):
    """A fresh module, or (with --init-from) one that continues from saved weights."""
    if folder and (Path(folder) / f"{name}.safetensors").exists():
        log(f"{name}: starting from {folder}")
        return load_module(cls, Path(folder), name)
    return cls(**config)


def train_vae(pool: torch.Tensor, val: torch.Tensor, a, seconds: float,
              vae: AutoencoderKL | None = None) -> tuple[AutoencoderKL, dict]:
    """Train a new VAE, or (given ``vae``) fine-tune only its decoder: the encoder and so the
    latents a UNet was trained on stay exactly as they are (as SD's ft-MSE decoder did)."""
    decoder_only = vae is not None
    torch.manual_seed(a.seed + 2 * decoder_only)
    g = torch.Generator().manual_seed(a.seed + 2 * decoder_only)
    if decoder_only:
        vae.train().requires_grad_(False)
        params = [*vae.decoder.parameters(), *vae.post_quant_conv.parameters()]
        for p in params:
            p.requires_grad_(True)
    else:
        vae = init(AutoencoderKL, vae_config(a.downsample), a.init_from, "vae").train().requires_grad_(True)
        params = list(vae.parameters())
    opt = torch.optim.AdamW(params, lr=a.vae_lr, betas=(0.9, 0.99), weight_decay=0.0)
    budget = StepBudget(a.vae_steps, seconds)
    step, t0, losses = 0, time.time(), []
    while budget.total is None or step < budget.total:
        x = dihedral(pool[torch.randint(len(pool), (a.vae_batch,), generator=g)], int(torch.randint(8, (1,), generator=g)))
        for group in opt.param_groups:
            group["lr"] = lr_at(step, budget.total, a.vae_lr, a.warmup)
        with torch.set_grad_enabled(not decoder_only):
            post = vae.encode(x).latent_dist
        # the decoder alone learns to decode exactly what the UNet will produce: posterior means
        rec = vae.decode(post.mean if decoder_only else post.sample(generator=g)).sample
        loss = F.l1_loss(rec, x) + F.mse_loss(rec, x)
        if not decoder_only:
            loss = loss + a.kl_weight * post.kl().mean()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        opt.step()
        losses.append(loss.item())
        budget.after(step, "vae")
        step += 1
        if step % a.log_every == 0:
            log(f"vae step {step}/{budget.total} loss {np.mean(losses[-a.log_every:]):.4f} "
                f"{(time.time() - t0) / step:.3f} s/step")
        if step % (a.log_every * 10) == 0:
            log(f"vae step {step} val PSNR {vae_psnr(vae, val):.2f} dB")
    vae.eval().requires_grad_(False)
    stats = dict(steps=step, minutes=round((time.time() - t0) / 60, 1), psnr_db=round(vae_psnr(vae, val), 2))
    log(f"vae done: {stats}")
    return vae, stats


@torch.no_grad()
def vae_psnr(vae: AutoencoderKL, val: torch.Tensor) -> float:
    was_training = vae.training
    vae.eval()
    rec = torch.cat([vae.decode(vae.encode(x).latent_dist.mean).sample for x in val.split(64)])
    vae.train(was_training)
    return metrics.psnr(rec, val)


@torch.no_grad()
def encode_latents(vae: AutoencoderKL, pool: torch.Tensor, augment: int, fit_scale: bool = True) -> torch.Tensor:
    """Posterior means of the pool under ``augment`` of the 8 symmetries, scaled to unit std
    (the scale is written into the VAE's config, as SD's 0.18215 is). fit_scale=False keeps the
    VAE's scale: a UNet being continued was trained on latents of that scale."""
    lat = torch.cat([vae.encode(dihedral(x, k)).latent_dist.mean for k in range(augment) for x in pool.split(256)])
    if fit_scale:
        vae.register_to_config(scaling_factor=float(1.0 / lat.std()))
    log(f"latents {tuple(lat.shape)} mean {lat.mean():.3f} std {lat.std():.3f} "
        f"-> scaling_factor {vae.config.scaling_factor:.4f}")
    return lat * vae.config.scaling_factor


def train_unet(lat: torch.Tensor, vae: AutoencoderKL, a, seconds: float) -> tuple[UNet2DConditionModel, dict]:
    torch.manual_seed(a.seed + 1)
    g = torch.Generator().manual_seed(a.seed + 1)
    unet = init(UNet2DConditionModel, unet_config(a.downsample), a.init_from, "unet").train().requires_grad_(True)
    ema = copy.deepcopy(unet).eval().requires_grad_(False)
    params, ema_params = list(unet.parameters()), list(ema.parameters())
    opt = torch.optim.AdamW(params, lr=a.unet_lr, betas=(0.9, 0.99), weight_decay=0.01)
    sched = DDIMSchedule.stable_diffusion()
    alphas = sched.alphas_cumprod.float()
    cond = empty_prompt(a.unet_batch)
    budget = StepBudget(a.unet_steps, seconds)
    step, t0, last_ckpt, mses = 0, time.time(), time.time(), []
    while budget.total is None or step < budget.total:
        x0 = lat[torch.randint(len(lat), (a.unet_batch,), generator=g)]
        noise = torch.randn(x0.shape, generator=g)
        t = torch.randint(0, len(alphas), (a.unet_batch,), generator=g)
        zt, target = sched.training_target(x0, noise, t)
        for group in opt.param_groups:
            group["lr"] = lr_at(step, budget.total, a.unet_lr, a.warmup)
        pred = unet(zt, t, encoder_hidden_states=cond, return_dict=False)[0]
        mse = (pred - target).pow(2).mean(dim=(1, 2, 3))
        # Min-SNR-5 weighting (Hang et al. 2023): the easy low-noise steps do not dominate
        snr = alphas[t] / (1 - alphas[t])
        loss = (mse * snr.clamp(max=5.0) / snr).mean()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        opt.step()
        with torch.no_grad():
            decay = min(a.ema, (1 + step) / (10 + step))
            torch._foreach_lerp_(ema_params, params, 1 - decay)
        mses.append(mse.mean().item())
        budget.after(step, "unet")
        step += 1
        if step % a.log_every == 0:
            el = time.time() - t0
            log(f"unet step {step}/{budget.total} mse {np.mean(mses[-a.log_every:]):.4f} "
                f"{el / step:.3f} s/step, eta {(budget.total - step) * el / step / 60 if budget.total else 0:.0f} min")
        out_of_time = a.stop_by is not None and time.time() > a.stop_by
        if time.time() - last_ckpt > a.ckpt_minutes * 60 or out_of_time:
            checkpoint(ema, vae, a, step)
            last_ckpt = time.time()
        if out_of_time:
            log(f"unet: stopping at step {step}: --stop-by reached")
            break
    stats = dict(steps=step, planned_steps=budget.total, minutes=round((time.time() - t0) / 60, 1),
                 final_mse=round(float(np.mean(mses[-500:])), 4))
    log(f"unet done: {stats}")
    return ema, stats


def checkpoint(unet, vae, a, step: int) -> None:
    save_module(unet, Path(a.out), "unet")
    grid(ddim_sample(unet, vae, 16, seed=0)).save(Path(a.samples_dir) / f"shapes_samples_{step:06d}.png")
    log(f"checkpoint: unet (EMA) at step {step} saved to {a.out}")


def parse_args(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default="workbench/shapes/weights", help="weights folder")
    ap.add_argument("--samples-dir", default="out", help="where checkpoint sample grids go")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--downsample", type=int, choices=(2, 4), default=4,
                    help="the VAE's downsampling: 4 (16x16 latents) or 2 (32x32, a four-level UNet)")
    ap.add_argument("--scenes", type=int, default=12000, help="rendered training scenes")
    ap.add_argument("--augment", type=int, default=2, help="symmetries of each scene encoded for the UNet (1-8)")
    ap.add_argument("--vae-steps", type=int, default=0, help="0: size from --vae-minutes")
    ap.add_argument("--vae-minutes", type=float, default=18)
    ap.add_argument("--vae-batch", type=int, default=16)
    ap.add_argument("--vae-lr", type=float, default=1e-3)
    ap.add_argument("--kl-weight", type=float, default=1e-6)
    ap.add_argument("--init-from", default=None, help="continue training from the weights in this folder")
    ap.add_argument("--decoder-only", action="store_true",
                    help="only fine-tune the decoder of the VAE in --out (latents unchanged), then stop")
    ap.add_argument("--skip-vae", action="store_true", help="reuse the VAE already in --out")
    ap.add_argument("--unet-steps", type=int, default=0, help="0: size from --unet-minutes")
    ap.add_argument("--unet-minutes", type=float, default=60)
    ap.add_argument("--unet-batch", type=int, default=64)
    ap.add_argument("--unet-lr", type=float, default=6e-4)
    ap.add_argument("--ema", type=float, default=0.999)
    ap.add_argument("--warmup", type=int, default=200)
    ap.add_argument("--ckpt-minutes", type=float, default=10)
    ap.add_argument("--log-every", type=int, default=50)
    ap.add_argument("--stop-by", default=None, help="HH:MM UTC: save and stop the UNet by then")
    a = ap.parse_args(argv)
    if a.stop_by:
        now = datetime.now(timezone.utc)
        hh, mm = map(int, a.stop_by.split(":"))
        a.stop_by = now.replace(hour=hh, minute=mm, second=0, microsecond=0).timestamp()
    return a


def main(argv=None):
    a = parse_args(argv)
    torch.set_num_threads(a.threads)
    out = Path(a.out)
    Path(a.samples_dir).mkdir(parents=True, exist_ok=True)
    t0 = time.time()
    pool = uint8_to_engine(scene_images(range(a.seed * 10**6, a.seed * 10**6 + a.scenes)))
    val = uint8_to_engine(scene_images(range(VAL_SEED, VAL_SEED + 256)))
    log(f"rendered {len(pool)} + {len(val)} scenes in {time.time() - t0:.0f} s")
    if a.decoder_only:
        vae = load_module(AutoencoderKL, out, "vae")
        before = vae_psnr(vae, val)
        seconds = a.vae_minutes * 60 if a.stop_by is None else min(a.vae_minutes * 60, a.stop_by - time.time() - 60)
        vae, stats = train_vae(pool, val, a, seconds, vae=vae)
        save_module(vae, out, "vae")
        stats.update(psnr_db_before=round(before, 2), psnr_db_fp16=round(vae_psnr(vae.half().float(), val), 2),
                     args={k: v for k, v in vars(a).items() if k != "stop_by"})
        (out / "training_decoder.json").write_text(json.dumps(stats, indent=2) + "\n")
        log(f"decoder fine-tune saved: {stats}")
        return
    if a.skip_vae:
        vae = load_module(AutoencoderKL, out, "vae")
        vae_stats = dict(reused=str(out))  # its PSNR is psnr_db_fp16 below: the file holds fp16 weights
    else:
        vae, vae_stats = train_vae(pool, val, a, a.vae_minutes * 60)
    lat = encode_latents(vae, pool, a.augment, fit_scale=not a.skip_vae)
    if not a.skip_vae:
        save_module(vae, out, "vae")  # saved after encoding: the config now holds the scaling factor
    vae_stats["psnr_db_fp16"] = round(vae_psnr(vae.half().float(), val), 2)
    vae_stats["scaling_factor"] = round(vae.config.scaling_factor, 4)
    record = dict(args={k: v for k, v in vars(a).items() if k != "stop_by"}, vae=vae_stats)
    if a.init_from and (Path(a.init_from) / "training.json").exists():  # the run this one continues
        record["continued_from"] = json.loads((Path(a.init_from) / "training.json").read_text())
    (out / "training.json").write_text(json.dumps(record, indent=2) + "\n")
    log(f"vae: {vae_stats}")
    seconds = a.unet_minutes * 60
    if a.stop_by is not None:
        seconds = min(seconds, a.stop_by - time.time() - 120)
    unet, unet_stats = train_unet(lat, vae, a, seconds)
    checkpoint(unet, vae, a, unet_stats["steps"])
    record["unet"] = unet_stats
    record["total_minutes"] = round((time.time() - t0) / 60, 1)
    (out / "training.json").write_text(json.dumps(record, indent=2) + "\n")
    log(f"all done in {record['total_minutes']} min")


if __name__ == "__main__":
    main()
