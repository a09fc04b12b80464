"""Inside ComfyUI: peak memory and time of each stage of the step-by-step drag graph on an
SD1.5-size random checkpoint, beside a stock KSampler run on the same checkpoint. Prints a table.

    COMFYUI_PATH=/path/to/ComfyUI python -m workbench.benchmarks.comfy_memory [--size 256] [--steps 2]
    COMFYUI_PATH=/path/to/ComfyUI python -m workbench.benchmarks.comfy_memory --gpu --size 512 --paper
    COMFYUI_PATH=/path/to/ComfyUI python -m workbench.benchmarks.comfy_memory --gpu --model sdxl --size 1024 --paper

Each stage is its own execution of the graph (ComfyUI's cache keeps what the earlier ones made),
measured as the peak memory in use while it runs (workbench/benchmarks/perf.py's PeakMemory: on the CPU the
C allocator's bytes in use, sampled; on a GPU CUDA's allocator peak), absolute, so a stage that
held a second copy of the UNet would show it. The checkpoint (a full SD1.5 UNet of random
weights, ComfyUI's SD1.5 CLIP-L and a TAESD VAE) is written once into a temporary models folder.
On the CPU a few steps per stage are enough (memory does not grow with them); --paper runs
DragDiffusion's own budgets (80 LoRA steps, inversion to 0.7 of 50 steps, 80 drag steps,
sampling) for the time of a whole edit.

--model sdxl: SDXL base's UNet with random weights, built in this process from ComfyUI's own SDXL model
config (a comfy.model_base.SDXL in the dtype ComfyUI picks for it, fp16 on most GPUs) and handed to the
graph, with an SDXL CONDITIONING (2048-wide context, pooled prompt, size and crop), by a small node
registered here: SDXL's text encoders are not needed to measure the UNet stages. The VAE is the
checkpoint's TAESD. Building the weights takes about 10 GB of host memory.
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


SDXL_NODE = "DragMemorySDXLRandom"
SDXL_UNET = {  # SDXL base 1.0 as ComfyUI detects it from its checkpoint (comfy/model_detection.py)
    "use_checkpoint": False, "image_size": 32, "out_channels": 4, "use_spatial_transformer": True, "legacy": False,
    "num_classes": "sequential", "adm_in_channels": 2816, "in_channels": 4, "model_channels": 320,
    "num_res_blocks": [2, 2, 2], "transformer_depth": [0, 0, 2, 2, 10, 10], "channel_mult": [1, 2, 4],
    "transformer_depth_middle": 10, "use_linear_in_transformer": True, "context_dim": 2048, "num_head_channels": 64,
    "transformer_depth_output": [0, 0, 0, 2, 2, 2, 10, 10, 10], "use_temporal_attention": False,
    "use_temporal_resblock": False,
}


def sdxl_model(unet_config: dict):
    """A ModelPatcher of an SDXL UNet with random weights, loaded as ComfyUI loads a checkpoint's: its
    dtype and devices chosen by comfy.model_management."""
    import comfy.model_management as mm
    import comfy.model_patcher
    import comfy.supported_models
    import torch
    config = comfy.supported_models.SDXL(dict(unet_config))
    load, offload = mm.get_torch_device(), mm.unet_offload_device()
    dtype = mm.unet_dtype(supported_dtypes=config.supported_inference_dtypes)
    config.set_inference_dtype(dtype, mm.unet_manual_cast(dtype, load, config.supported_inference_dtypes))
    with torch.inference_mode():
        model = config.get_model({}, device=offload)
        gen = torch.Generator().manual_seed(0)
        model.diffusion_model.load_state_dict(comfy_support._random_state(model.diffusion_model, gen, "", dtype))
    return comfy.model_patcher.ModelPatcher(model, load_device=load, offload_device=offload)


def register_sdxl(comfy, size: int, unet_config: dict) -> None:
    """The node giving the graph the SDXL MODEL and an SDXL CONDITIONING (as CLIP Text Encode (SDXL) makes one)."""
    import torch

    class SDXLRandom:
        RETURN_TYPES = ("MODEL", "CONDITIONING")
        FUNCTION = "load"
        CATEGORY = "testing"
        made = None

        @classmethod
        def INPUT_TYPES(cls):
            return {"required": {}}

        def load(self):
            if SDXLRandom.made is None:
                g = torch.Generator().manual_seed(0)
                pooled = unet_config["adm_in_channels"] - 6 * 256  # beside six 256-wide size/crop embeddings
                options = {"pooled_output": torch.randn(1, pooled, generator=g), "width": size, "height": size,
                           "crop_w": 0, "crop_h": 0, "target_width": size, "target_height": size}
                context = torch.randn(1, 77, unet_config["context_dim"], generator=g)
                SDXLRandom.made = (sdxl_model(unet_config), [[context, options]])
            return SDXLRandom.made

    comfy.nodes.NODE_CLASS_MAPPINGS[SDXL_NODE] = SDXLRandom


def sdxl_graph(size: int, steps: int, num_steps: int = 10) -> dict:
    """The same graph on the SDXL node's MODEL and CONDITIONING (the checkpoint gives the VAE)."""
    out = graph(size, steps, num_steps)
    del out["2"]
    out["20"] = {"class_type": SDXL_NODE, "inputs": {}}
    for node in out.values():
        for name, value in node["inputs"].items():
            if value == ["1", 0]:
                node["inputs"][name] = ["20", 0]
            elif value == ["2", 0]:
                node["inputs"][name] = ["20", 1]
    return out


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
    ap.add_argument("--model", choices=["sd15", "sdxl"], default="sd15",
                    help="sd15: a checkpoint file of SD 1.5's size; sdxl: SDXL base's UNet (see above)")
    args = ap.parse_args()
    checkout = comfy_support.comfyui_path()
    if checkout is None:
        sys.exit(comfy_support.SKIP_REASON)
    comfy = comfy_support.ComfyUI(checkout, pathlib.Path(tempfile.mkdtemp(prefix="comfy_memory_")), cpu=not args.gpu)
    import comfy.model_management as mm
    import torch
    sdxl = args.model == "sdxl"
    # for SDXL only the checkpoint's VAE is used: the small checkpoint of the tests
    comfy_support.write_tiny_checkpoint(comfy.models / "checkpoints" / CHECKPOINT,
                                        unet=comfy_support.TINY_UNET if sdxl else SD15_UNET)
    comfy_support.write_test_image(comfy.input / "memory.png", size=args.size)
    if sdxl:
        register_sdxl(comfy, args.size, SDXL_UNET)
    make = sdxl_graph if sdxl else graph
    prompt = make(args.size, 80, 50) if args.paper else make(args.size, args.steps)
    start = ["20", "3", "6"] if sdxl else ["1", "2", "3", "6"]
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

    loaded, _ = measure(start)  # checkpoint (or the SDXL node), prompt, image, points: the common start
    stages = [("stock KSampler (CFG 7, batch 2)", ["11"]), ("Drag Identity LoRA (batch 4)", ["4"]),
              ("Drag DDIM Inversion", ["5"]), ("Drag Latent Optimizer (gradients)", ["7"]),
              ("Drag Reference Sampler (batch 2)", ["8"])]
    rows = [(name, *measure(targets)) for name, targets in stages]
    ksampler = rows[0][1]
    model = comfy.execute(prompt, targets=[start[0]]).outputs[start[0]][0]
    unet = sum(p.numel() * p.element_size() for p in model.model.diffusion_model.parameters()) / 2**30
    budget = "DragDiffusion's budgets" if args.paper else f"{args.steps} steps per stage"
    print(f"ComfyUI {comfy.version}, {args.model}, {device}, {args.size}x{args.size}, {budget}; "
          f"after loading the checkpoint {loaded:.2f} GiB in use; the UNet's weights {unet:.2f} GiB")
    print("| stage | peak in use | above the KSampler's peak | s |")
    print("|---|---|---|---|")
    for name, peak, seconds in rows:
        print(f"| {name} | {peak:.2f} GiB | {peak - ksampler:+.2f} GiB | {seconds:.1f} |")
    edit = sum(seconds for _, _, seconds in rows[1:])
    print(f"whole edit (LoRA, inversion, drag, sampling): {edit:.1f} s; peak {max(r[1] for r in rows[1:]):.2f} GiB")


if __name__ == "__main__":
    main()
