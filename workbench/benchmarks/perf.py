"""Speed and memory of each stage against the bare cost of the network (prints numbers).

    python -m workbench.benchmarks.perf --model shapes            the bundled tiny model, 64x64 images
    python -m workbench.benchmarks.perf --model sd15 --size 512   a random SD1.5-size UNet (few steps, ratios)
    python -m workbench.benchmarks.perf --model sdxl --size 256   a random SDXL-base-size UNet (workbench/benchmarks/unets.py), with
                                                                the SDXL family's settings and gradient checkpointing

Ratios: a preset's motion-supervision step over the network passes it needs (counted: each
forward with gradients costs a bare forward+backward, each no-grad forward a bare forward);
a LoRA step at batch 4 over a bare forward+backward at batch 4; an inversion step over a forward;
a reference-sampling step over a forward at batch 2. Times are taken without the memory sampler;
peak memory per stage comes from separate short runs: CUDA's allocator peak on a GPU; on the CPU
the bytes the C allocator has handed out (glibc's mallinfo2, resident memory elsewhere) sampled
every 5 ms, above the level when the stage began. `--parts full` times a whole edit (LoRA, inversion, drag, sampling, decode)
and splits it by stage, with the UNet passes it made; `--parts one_pass` times and counts the whole edit
of each training-free preset (FastDrag, RegionDrag), which has no drag loop to time by the update.
"""

from __future__ import annotations

import argparse
import ctypes
import os
import threading
import time

import torch

from comfyui_drag.drag_ops import pipeline, presets
from comfyui_drag.drag_ops.inversion import invert
from comfyui_drag.drag_ops.lora import LoraSettings, train_identity_lora
from comfyui_drag.drag_ops.model import Conditioning, DiffusionModel
from comfyui_drag.drag_ops.network import DiffusersUNet, Stage
from comfyui_drag.drag_ops.points import DragPoints
from comfyui_drag.drag_ops.reference import sample
from comfyui_drag.drag_ops.ddim import DDIMSchedule


class _IdentityCodec:
    """Latents in, latents out: the SD-size run measures the UNet stages only."""

    def __init__(self, channels, downscale=8):
        self.latent_channels, self.downscale = channels, downscale

    def encode(self, x):
        z = torch.nn.functional.avg_pool2d(x, self.downscale)
        return torch.cat([z, z[:, :1]], 1)[:, :self.latent_channels]

    def decode(self, z):  # back at the image's size, as a VAE's (the one-pass presets paste into the input)
        return torch.nn.functional.interpolate(z[:, :3], scale_factor=self.downscale, mode="nearest")


def sd15_model(size: int, weights=None) -> tuple[DiffusionModel, Conditioning, torch.Tensor, dict]:
    from diffusers import UNet2DConditionModel
    torch.manual_seed(0)
    unet = UNet2DConditionModel(cross_attention_dim=768, attention_head_dim=8,
                                block_out_channels=(320, 640, 1280, 1280)).eval().requires_grad_(False)
    # 10 DDIM steps: inversion depth does not change the cost of one step, only how many there are
    model = DiffusionModel(DiffusersUNet(unet), _IdentityCodec(4), DDIMSchedule.stable_diffusion(10))
    cond = Conditioning(torch.randn(1, 77, 768))
    latent = torch.randn(1, 4, size // 8, size // 8) * 0.8
    return model, cond, latent, {}


def sdxl_model(size: int, weights=None) -> tuple[DiffusionModel, Conditioning, torch.Tensor, dict]:
    """SDXL base's UNet layout with random weights; the presets get the SDXL family's values."""
    from workbench.benchmarks import unets
    from comfyui_drag.drag_ops import families
    network = DiffusersUNet(unets.unet("sdxl"))
    model = DiffusionModel(network, _IdentityCodec(4), DDIMSchedule.stable_diffusion(10))
    cond = unets.conditioning("sdxl", (size, size))
    latent = torch.randn(1, 4, size // 8, size // 8) * 0.8
    return model, cond, latent, {"adapt": lambda c: families.adapt(c, network)}


def shapes_model(size: int, weights=None):
    from workbench.shapes import world
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


class NetworkPasses:
    """Counts the network's passes as a whole edit makes them (any DiffusionModel on this network, e.g.
    a one-pass preset's own 10-step schedule): forwards without and with gradients, and the latents
    they carried (a reference-sampling pass carries 2)."""

    def __init__(self, network):
        self.network, self.inner = network, network.predict
        self.nograd = self.grad = self.latents = 0

    def __enter__(self):
        def counted(z, *a, **k):
            if torch.is_grad_enabled():
                self.grad += 1
            else:
                self.nograd += 1
            self.latents += z.shape[0]
            return self.inner(z, *a, **k)
        self.network.predict = counted
        return self

    def __exit__(self, *exc):
        del self.network.predict

    def text(self) -> str:
        return (f"UNet passes: {self.nograd} forward, {self.grad} forward+backward, carrying {self.latents} "
                "latents")


class _MallInfo2(ctypes.Structure):
    _fields_ = [(name, ctypes.c_size_t) for name in
                "arena ordblks smblks hblks hblkhd usmblks fsmblks uordblks fordblks keepcost".split()]


def _cpu_bytes_in_use():
    """Bytes malloc has handed out and not taken back (glibc), or None where unavailable:
    resident memory would miss tensors placed in memory the allocator kept from earlier frees."""
    try:
        libc = ctypes.CDLL("libc.so.6")
        libc.mallinfo2.restype = _MallInfo2
    except (OSError, AttributeError):
        return None

    def in_use() -> int:
        info = libc.mallinfo2()
        return info.uordblks + info.hblkhd
    return in_use


class PeakMemory:
    """Peak memory above the level at entry, in MiB (``peak``, set on exit): CUDA's allocator peak
    on a GPU, else the CPU allocator's bytes in use sampled by a thread every 5 ms (the CPU keeps
    no peak of its own)."""

    _cpu_in_use = staticmethod(_cpu_bytes_in_use() or (lambda: PeakMemory._rss()))

    def __init__(self, device: torch.device):
        self.cuda = device.type == "cuda"

    @staticmethod
    def _rss() -> int:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")

    def _sample(self) -> None:
        while not self._stop.wait(0.005):
            self.high = max(self.high, self._cpu_in_use())

    def __enter__(self):
        if self.cuda:
            torch.cuda.reset_peak_memory_stats()
            self.base = torch.cuda.memory_allocated()
        else:
            self.base = self.high = self._cpu_in_use()
            self._stop = threading.Event()
            self._thread = threading.Thread(target=self._sample, daemon=True)
            self._thread.start()
        return self

    def __exit__(self, *exc):
        if self.cuda:
            high = torch.cuda.max_memory_allocated()
        else:
            self._stop.set()
            self._thread.join()
            high = max(self.high, self._cpu_in_use())
        self.peak = (high - self.base) / 2**20


def peak_of(fn, device) -> float:
    """Peak memory (MiB) of one call of fn."""
    with PeakMemory(device) as mem:
        fn()
    return mem.peak


def seconds_per_step(run) -> float:
    """Mean time between the step callbacks of run(callback), from the end of its first step (warm).
    Timed without the memory sampler: its thread (mallinfo2 every 5 ms) slows what it watches."""
    stamps: list[float] = []
    run(lambda *a: stamps.append(time.perf_counter()))
    return (stamps[-1] - stamps[0]) / (len(stamps) - 1)


def cap_steps(config, steps: int) -> None:
    """A fixed drag budget, whatever the preset's schedule and stopping rule."""
    for attr in ("max_steps", "K"):
        if hasattr(config.schedule, attr):
            setattr(config.schedule, attr, steps)


def drag_setup(model, latent) -> tuple[int, int, DragPoints]:
    """Image size of the latent and one handle/target pair across it."""
    h, w = latent.shape[-2] * model.codec.downscale, latent.shape[-1] * model.codec.downscale
    return h, w, DragPoints(((w * 0.3, h * 0.4),), ((w * 0.7, h * 0.5),))


def timed(fn, repeat: int, warmup: bool = True) -> float:
    if warmup:
        fn()
    t0 = time.perf_counter()
    for _ in range(repeat):
        fn()
    return (time.perf_counter() - t0) / repeat


def bare_costs(model, cond, latent, batch: int, repeat: int, peaks: bool = True,
               warmup: bool = True) -> tuple[float, float, float, float]:
    """Seconds and peak MiB (nan unless ``peaks``) of a bare forward and a bare forward+backward."""
    z = latent.expand(batch, -1, -1, -1).clone()
    t = model.schedule.timestep(int(0.7 * model.schedule.num_steps))

    def fwd():
        with torch.no_grad():
            model.forward(z, t, cond)

    def fwd_bwd():
        x = z.clone().requires_grad_(True)
        out, _ = model.forward(x, t, cond)
        out.float().square().mean().backward()

    def measure():
        with torch.inference_mode(False), torch.enable_grad():
            times = timed(fwd, repeat, warmup), timed(fwd_bwd, repeat, warmup)
            if not peaks:
                return (*times, float("nan"), float("nan"))
            return (*times, peak_of(fwd, model.device), peak_of(fwd_bwd, model.device))
    return model.run(Stage("bare", batch=batch, grad=True), cond, latent.shape[-2:], measure)


def full_edit(model, cond, latent, config, steps: int) -> None:
    """One whole edit (run_edit), its time split by the stage its callbacks report. Timed without
    the memory sampler (see seconds_per_step): the stages' peaks are the rows above and below."""
    h, w, points = drag_setup(model, latent)
    image = model.codec.decode(latent)[:, :3].clamp(-1, 1)
    if steps:
        if config.lora is not None:
            config.lora.steps = steps
        cap_steps(config, steps)
    times: dict[str, float] = {}
    counts: dict[str, int] = {}
    last = [time.perf_counter()]

    def cb(stage, step, total, _p):  # called at the END of each step: the time since the last was it
        now = time.perf_counter()
        times[stage] = times.get(stage, 0.0) + now - last[0]
        counts[stage] = counts.get(stage, 0) + 1
        last[0] = now

    t0 = time.perf_counter()
    with NetworkPasses(model.network) as passes:
        pipeline.run_edit(model, image, points, cond, config, callback=cb)
    times["decode"] = time.perf_counter() - last[0]
    print(f"full edit {time.perf_counter() - t0:.2f} s:", ", ".join(f"{k} {v:.2f} s" for k, v in times.items()),
          "(encoding the image is inside the first stage's first step)")
    print("  steps per stage:", ", ".join(f"{k} {v}" for k, v in counts.items()))
    print(f"  {passes.text()}")


def one_pass_edits(model, cond, latent, names, adapt, t_f: float) -> None:
    """Each training-free preset's whole edit (FastDrag, RegionDrag): its time and its UNet passes, and the
    time as bare forwards at batch 1 (a pass at batch 2 costs about two)."""
    h, w, points = drag_setup(model, latent)
    image = model.codec.decode(latent)[:, :3].clamp(-1, 1)
    mask = torch.zeros(h, w)
    mask[h // 4: 3 * h // 4, w // 5: 4 * w // 5] = 1
    for name in names:
        config = adapt(presets.preset(name))
        t0 = time.perf_counter()
        with NetworkPasses(model.network) as passes:
            pipeline.run_edit(model, image, points, cond, config, mask)
        seconds = time.perf_counter() - t0
        print(f"{name:<14} whole edit {seconds:.2f} s = {seconds / t_f:.1f} bare forwards; {passes.text()}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", choices=["shapes", "sd15", "sdxl"], default="shapes")
    ap.add_argument("--size", type=int, default=None, help="image size (default: sd15 512, sdxl 1024)")
    ap.add_argument("--steps", type=int, default=10, help="drag updates timed per preset")
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--presets", default=",".join(presets.PRESETS))
    ap.add_argument("--parts", default="invert,sample,lora,presets,full,one_pass",
                    help="what to time besides the bare passes")
    ap.add_argument("--one-pass-presets", default=",".join(presets.ONE_PASS_PRESETS),
                    help="training-free presets whose whole edit is timed and counted (--parts one_pass)")
    ap.add_argument("--full-preset", default="DragDiffusion", help="preset of the whole edit (--parts full)")
    ap.add_argument("--full-steps", type=int, default=None,
                    help="cap LoRA and drag steps of the whole edit (default: the preset's own on shapes, 3 on sd15)")
    ap.add_argument("--checkpointing", action=argparse.BooleanOptionalAction, default=None,
                    help="gradient checkpointing in every stage with gradients (default: the model family's: "
                    "off for SD, on for SDXL)")
    ap.add_argument("--threads", type=int, default=torch.get_num_threads())
    ap.add_argument("--weights", default=None, help="shapes weights folder (timings do not depend on the values)")
    args = ap.parse_args()
    size = args.size or {"sd15": 512, "sdxl": 1024}.get(args.model, 64)
    torch.set_num_threads(args.threads)
    make = {"sd15": sd15_model, "sdxl": sdxl_model, "shapes": shapes_model}[args.model]
    model, cond, latent, extra = make(size, args.weights)
    adapt = extra.get("adapt", lambda c: c)
    if args.checkpointing is not None:
        model.network.gradient_checkpointing = args.checkpointing
    on = model.network.gradient_checkpointing
    print(f"model {args.model}, image {size}x{size}, latent {tuple(latent.shape[1:])}, threads {torch.get_num_threads()}, "
          f"gradient checkpointing {'on' if on else 'off'}")

    t_f, t_fb, m_f, m_fb = bare_costs(model, cond, latent, 1, args.repeat)
    print(f"bare forward {t_f * 1e3:.1f} ms ({m_f:.0f} MiB); bare forward+backward {t_fb * 1e3:.1f} ms ({m_fb:.0f} MiB)")

    parts = set(args.parts.split(","))
    num_steps = model.schedule.num_steps
    # inversion step vs forward (the peak from a short separate run, as for every stage)
    if "invert" in parts:
        t_f = bare_costs(model, cond, latent, 1, 1, peaks=False, warmup=False)[0]  # re-timed: the load drifts
        t_inv = seconds_per_step(lambda cb: invert(model, latent, cond, min(1.0, 6 / num_steps), cb))
        m_inv = peak_of(lambda: invert(model, latent, cond, min(1.0, 2 / num_steps)), model.device)
        print(f"inversion step {t_inv * 1e3:.1f} ms = {t_inv / t_f:.2f}x forward; peak {m_inv:.0f} MiB")

    # a reference-sampling step: one forward of [original, edited] under mutual self-attention
    if "sample" in parts:
        t_f2 = bare_costs(model, cond, latent, 2, 1, peaks=False, warmup=False)[0]
        traj = invert(model, latent, cond, min(1.0, 4 / num_steps))
        t_s = seconds_per_step(lambda cb: sample(model, traj, traj.start, traj.steps, cond, callback=cb))
        m_s = peak_of(lambda: sample(model, traj, traj.start, 2, cond), model.device)
        print(f"reference sampling step {t_s * 1e3:.1f} ms = {t_s / t_f2:.2f}x a bare forward at batch 2 "
              f"({t_f2 * 1e3:.1f} ms); peak {m_s:.0f} MiB")

    # LoRA step at batch 4 vs bare forward+backward at batch 4
    if "lora" in parts:
        # bare passes timed before and after the LoRA steps: on a shared machine the load drifts
        reps = max(1, args.repeat // 2)
        _, before, _, m_fb4 = bare_costs(model, cond, latent, 4, reps)
        t_lora = seconds_per_step(lambda cb: train_identity_lora(model, latent, cond,
                                                                 LoraSettings(steps=args.repeat + 1), cb))
        m_lora = peak_of(lambda: train_identity_lora(model, latent, cond, LoraSettings(steps=1)), model.device)
        _, after, _, _ = bare_costs(model, cond, latent, 4, reps, peaks=False, warmup=False)
        t_fb4 = (before + after) / 2
        print(f"LoRA step (batch 4) {t_lora * 1e3:.1f} ms = {t_lora / t_fb4:.2f}x bare forward+backward at batch 4 "
              f"({before * 1e3:.1f} ms before, {after * 1e3:.1f} ms after); peak {m_lora:.0f} MiB "
              f"(bare at batch 4: {m_fb4:.0f} MiB)")

    if "one_pass" in parts:
        t_f = bare_costs(model, cond, latent, 1, 1, peaks=False, warmup=False)[0]
        one_pass_edits(model, cond, latent, args.one_pass_presets.split(","), adapt, t_f)

    if "full" in parts:
        full_steps = args.full_steps if args.full_steps is not None else (0 if args.model == "shapes" else 3)
        full_edit(model, cond, latent, adapt(presets.preset(args.full_preset)), full_steps)

    # one motion-supervision step of each preset, against the passes it makes
    if "presets" not in parts:
        return
    traj = invert(model, latent, cond, 0.8)
    h, w, points = drag_setup(model, latent)
    # a painted mask, as every DragBench edit has: its term backpropagates through the whole UNet
    # (without one, a preset's loss stops at the feature block and skips the costliest up block)
    user_mask = torch.zeros(h, w)
    user_mask[h // 4: 3 * h // 4, w // 5: 4 * w // 5] = 1
    print(f"{'preset':<14} {'ms/update':>10} {'fwd+bwd':>8} {'fwd':>5} {'bare fwd+bwd ms':>16} {'ratio':>6} "
          f"{'peak MiB':>9}   (steady state: updates after the first two; bare passes re-timed beside each)")
    for name in args.presets.split(","):
        config = adapt(presets.preset(name))
        cap_steps(config, args.steps)
        config.drag.reach_distance = 0.0  # never "reached": every update is a full one
        region_mask, regions = pipeline.editable_region(model, torch.zeros(1, 3, h, w), traj.at(0), cond,
                                                         points, user_mask, config)
        traj_k = pipeline.truncate(traj, model, config.inversion_strength)
        # the bare passes again, just before: on a shared machine the load drifts between presets
        t_f, t_fb, _, _ = bare_costs(model, cond, latent, 1, max(1, args.repeat // 2), peaks=False, warmup=False)
        marks = []

        def run_drag(cb):
            pipeline.drag(model, traj_k, cond, points, (h, w), region_mask, config.drag, config.tracker,
                          config.supervision, config.schedule, cb, regions)

        with PassCounter(model) as count:  # timed without the memory sampler (see seconds_per_step)
            run_drag(lambda *a: marks.append((time.perf_counter(), count.grad, count.nograd)))
        cap_steps(config, 2)  # the peak needs a couple of updates, not the timed budget
        m_drag = peak_of(lambda: run_drag(None), model.device)
        (t0, g0, n0), (t1, g1, n1) = marks[1], marks[-1]
        updates = len(marks) - 2
        need = (g1 - g0) * t_fb + (n1 - n0) * t_f
        print(f"{name:<14} {(t1 - t0) / updates * 1e3:>10.1f} {(g1 - g0) / updates:>8.2f} "
              f"{(n1 - n0) / updates:>5.2f} {t_fb * 1e3:>16.1f} {(t1 - t0) / need:>6.2f} {m_drag:>9.0f}")

if __name__ == "__main__":
    main()
