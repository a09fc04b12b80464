"""Inside ComfyUI: peak memory and time of each stage of the step-by-step drag graph on an
SD1.5-size random checkpoint, beside a stock KSampler run on the same checkpoint. Prints a table.

    COMFYUI_PATH=/path/to/ComfyUI python -m workbench.benchmarks.comfy_memory [--size 256] [--steps 2]
    COMFYUI_PATH=/path/to/ComfyUI python -m workbench.benchmarks.comfy_memory --gpu --size 512 --paper

Each stage is its own execution of the graph (ComfyUI's cache keeps what the earlier ones made),
measured as the peak memory in use while it runs (workbench/benchmarks/perf.py's PeakMemory: on the CPU the
C allocator's bytes in use, sampled; on a GPU CUDA's allocator peak), absolute, so a stage that
held a second copy of the UNet would show it. The checkpoint (a full SD1.5 UNet of random
weights, ComfyUI's SD1.5 CLIP-L and a TAESD VAE) is written once into a temporary models folder.
On the CPU a few steps per stage are enough (memory does not grow with them); --paper runs
DragDiffusion's own budgets (80 LoRA steps, inversion to 0.7 of 50 steps, 80 drag steps,
sampling) for the time of a whole edit.
"""

from __future__ import annotations

import argparse
import json
import pathlib
import sys
import tempfile
import time

from tests import comfy_support

from .perf import PeakMemory

CHECKPOINT = "sd15_size_random.safetensors"
SD15_UNET = {**comfy_support.TINY_UNET, "num_res_blocks": [2, 2, 2, 2], "channel_mult": [1, 2, 4, 4],
             "transformer_depth": [1, 1, 1, 1, 1, 1, 0, 0], "transformer_depth_output": [1] * 9 + [0] * 3}


def graph(size: int, steps: int, num_steps: int = 10) -> dict:
    """The step-by-step workflow's graph with a stock KSampler branch beside it."""
    points = json.dumps([{"handle": [size * 0.3, size * 0.4], "target": [size * 0.6, size * 0.5]}])
    return {
        "1": {"class_type": "CheckpointLoaderSimple", "inputs": {"ckpt_name": CHECKPOINT}},
        "2": {"class_type": "CLIPTextEncode", "inputs": {"clip": ["1", 1], "text": "a photo"}},
        "3": {"class_type": "LoadImage", "inputs": {"image": "memory.png"}},
        "4": {"class_type": "DragIdentityLoRA", "inputs": {
            "model": ["1", 0], "vae": ["1", 2], "image": ["3", 0], "conditioning": ["2", 0], "rank": 16,
            "steps": steps, "learning_rate": 5e-4, "batch_size": 4, "seed": 0, "save_name": ""}},
        "5": {"class_type": "DragDDIMInversion", "inputs": {
            "model": ["4", 0], "vae": ["1", 2], "image": ["3", 0], "conditioning": ["2", 0],
            "max_strength": 0.7, "num_steps": num_steps}},
        "6": {"class_type": "DragPointPicker", "inputs": {"image": ["3", 0], "points": points, "mask": ""}},
        "7": {"class_type": "DragLatentOptimizer", "inputs": {
            "model": ["4", 0], "inversion": ["5", 0], "conditioning": ["2", 0], "points": ["6", 0],
            "preset": "DragDiffusion", "tracker": "preset", "supervision": "preset", "schedule": "preset",
            "overrides": json.dumps({"schedule.max_steps": steps, "drag.reach_distance": 0})}},
        "8": {"class_type": "DragReferenceSampler", "inputs": {
            "model": ["4", 0], "inversion": ["5", 0], "drag": ["7", 0], "conditioning": ["2", 0],
            "reference_attention": True, "start_block": -1}},
        "10": {"class_type": "EmptyLatentImage", "inputs": {"width": size, "height": size, "batch_size": 1}},
        "11": {"class_type": "KSampler", "inputs": {
            "model": ["1", 0], "positive": ["2", 0], "negative": ["2", 0], "latent_image": ["10", 0], "seed": 0,
            "steps": steps, "cfg": 7.0, "sampler_name": "euler", "scheduler": "normal", "denoise": 1.0}},
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--size", type=int, default=256, help="image side in pixels")
    ap.add_argument("--steps", type=int, default=2, help="steps of every stage (LoRA, drag, KSampler)")
    ap.add_argument("--paper", action="store_true", help="DragDiffusion's budgets: 80 LoRA and drag steps, 50 DDIM")
    ap.add_argument("--gpu", action="store_true", help="let ComfyUI use its accelerator (default: CPU only)")
    args = ap.parse_args()
    checkout = comfy_support.comfyui_path()
    if checkout is None:
        sys.exit(comfy_support.SKIP_REASON)
    comfy = comfy_support.ComfyUI(checkout, pathlib.Path(tempfile.mkdtemp(prefix="comfy_memory_")), cpu=not args.gpu)
    import comfy.model_management as mm
    import torch
    comfy_support.write_tiny_checkpoint(comfy.models / "checkpoints" / CHECKPOINT, unet=SD15_UNET)
    comfy_support.write_test_image(comfy.input / "memory.png", size=args.size)
    prompt = graph(args.size, 80, 50) if args.paper else graph(args.size, args.steps)
    device = mm.get_torch_device()

    def measure(targets):
        if device.type == "cuda":
            torch.cuda.synchronize()
        t0 = time.perf_counter()
        with PeakMemory(device) as mem:
            run = comfy.execute(prompt, targets=targets)
            if device.type == "cuda":
                torch.cuda.synchronize()
        assert run.success, run.error
        return (mem.base + mem.peak * 2**20) / 2**30, time.perf_counter() - t0

    loaded, _ = measure(["1", "2", "3", "6"])  # checkpoint, prompt, image, points: the common start
    stages = [("stock KSampler (CFG 7, batch 2)", ["11"]), ("Drag Identity LoRA (batch 4)", ["4"]),
              ("Drag DDIM Inversion", ["5"]), ("Drag Latent Optimizer (gradients)", ["7"]),
              ("Drag Reference Sampler (batch 2)", ["8"])]
    rows = [(name, *measure(targets)) for name, targets in stages]
    ksampler = rows[0][1]
    model = comfy.execute(prompt, targets=["1"]).outputs["1"][0]
    unet = sum(p.numel() * p.element_size() for p in model.model.diffusion_model.parameters()) / 2**30
    budget = "DragDiffusion's budgets" if args.paper else f"{args.steps} steps per stage"
    print(f"ComfyUI {comfy.version}, {device}, {args.size}x{args.size}, {budget}; "
          f"after loading the checkpoint {loaded:.2f} GiB in use; the UNet's weights {unet:.2f} GiB")
    print("| stage | peak in use | above the KSampler's peak | s |")
    print("|---|---|---|---|")
    for name, peak, seconds in rows:
        print(f"| {name} | {peak:.2f} GiB | {peak - ksampler:+.2f} GiB | {seconds:.1f} |")
    edit = sum(seconds for _, _, seconds in rows[1:])
    print(f"whole edit (LoRA, inversion, drag, sampling): {edit:.1f} s; peak {max(r[1] for r in rows[1:]):.2f} GiB")


if __name__ == "__main__":
    main()
