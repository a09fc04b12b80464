"""Peak memory of each stage's UNet passes at full size, estimated without a GPU (prints numbers).

    python -m workbench.benchmarks.memory_estimate --model sdxl --size 1024
    python -m workbench.benchmarks.memory_estimate --model sd15 --size 512 --stages drag --checkpointing off

The real layout (workbench/benchmarks/unets.py) runs under torch's FakeTensorMode, where tensors have
shapes, dtypes and sizes but no storage and no arithmetic, and torch's MemTracker adds up what is
alive at each moment: the weights (fp16 unless --dtype: ComfyUI loads them so on most GPUs), the
activations autograd keeps, the temporaries. A stage is its UNet passes:
  - drag: one forward+backward at batch 1 with the gradient to the latent (a motion-supervision update;
    its loss and the features it reads are small beside the UNet's activations);
  - lora: one forward+backward at the LoRA batch with the gradient to rank-16 adapters on the pack's
    default targets, and their AdamW step;
  - sample: one forward at batch 2 without gradients (reference sampling's two branches).
What it leaves out: the VAE (ComfyUI decodes in tiles when memory is short), the CUDA context and
the caching allocator's slack (a few hundred MiB to a GiB or two on a real GPU), and the attention
kernel's own workspace (FakeTensorMode takes PyTorch's CPU attention, which, like the GPU's
memory-efficient kernels, never holds the full attention matrix). So these are lower bounds of a
GPU's peak, for choosing settings, not measurements.
"""

from __future__ import annotations

import argparse
import time

import torch

from comfyui_drag.drag_ops.lora import LoraSettings
from workbench.benchmarks import unets

GIB = 2 ** 30


def _tracker():
    from torch.distributed._tools.mem_tracker import MemTracker

    class FrozenWeightsTracker(MemTracker):
        """MemTracker hooks every parameter's gradient, which frozen weights refuse: gradients are
        counted as they are allocated instead."""

        def _track_module_params_and_buffers(self, module, install_grad_hooks=True):
            return super()._track_module_params_and_buffers(module, install_grad_hooks=False)

    return FrozenWeightsTracker()


def _lora(unet, settings: LoraSettings) -> list:
    """Rank-r adapters (x A^T B^T added to each target linear's output: what peft's LoRA layer computes
    and keeps for its backward) on the default targets; returns their weights. peft itself cannot be
    injected into a fake module (it moves the adapter with .to(), which fake parameters refuse)."""
    params = []
    for name, module in unet.named_modules():
        if isinstance(module, torch.nn.Linear) and any(name == t or name.endswith("." + t) for t in settings.targets):
            a = torch.zeros(settings.rank, module.in_features, requires_grad=True)
            b = torch.zeros(module.out_features, settings.rank, requires_grad=True)
            module.register_forward_hook(lambda m, i, out, a=a, b=b: out + (i[0] @ a.T) @ b.T)
            params += [a, b]
    return params


def peak(model: str, size: int, stage: str, checkpointing: bool, lora_batch: int = 4,
         dtype: torch.dtype = torch.float16) -> dict:
    """{"weights", "activations", "other", "total"} in bytes at the stage's peak."""
    from diffusers import UNet2DConditionModel
    from torch._subclasses.fake_tensor import FakeTensorMode

    batch = {"drag": 1, "lora": lora_batch, "sample": 2}[stage]
    default = torch.get_default_dtype()
    torch.set_default_dtype(dtype)  # built in that dtype: a fake module cannot be cast after
    try:
        with FakeTensorMode():
            unet = UNet2DConditionModel(**unets.LAYOUTS[model]).eval().requires_grad_(False)
            z, context, added = unets.inputs(model, size, batch)
            z.requires_grad_(stage == "drag")
            params = _lora(unet, LoraSettings()) if stage == "lora" else []
            if checkpointing and stage != "sample":
                unet.enable_gradient_checkpointing()
                unet.train()  # diffusers checkpoints only in training mode
            tracker = _tracker()
            tracker.track_external(unet, z)
            with tracker:
                if stage == "sample":
                    with torch.no_grad():
                        unet(z, 500, encoder_hidden_states=context, added_cond_kwargs=added)
                else:
                    out = unet(z, 500, encoder_hidden_states=context, added_cond_kwargs=added).sample
                    out.float().square().mean().backward()
                    if params:
                        optimizer = torch.optim.AdamW(params, lr=1e-4)
                        optimizer.step()  # its two moments per adapter weight
            snap = next(iter(tracker.get_tracker_snapshot("peak").values()))
    finally:
        torch.set_default_dtype(default)
    kinds = {str(k).split(".")[-1]: v for k, v in snap.items()}
    weights = kinds.get("PARAM", 0) + kinds.get("BUFFER", 0)
    activations = kinds.get("ACT", 0)
    total = kinds["Total"]
    return {"weights": weights, "activations": activations, "other": total - weights - activations, "total": total}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", choices=list(unets.LAYOUTS), default="sdxl")
    ap.add_argument("--size", type=int, default=None, help="image side (default: the model's native size)")
    ap.add_argument("--stages", default="drag,lora,sample")
    ap.add_argument("--checkpointing", choices=["on", "off", "both"], default="both")
    ap.add_argument("--dtype", choices=["fp16", "fp32"], default="fp16", help="the UNet's weights and activations")
    ap.add_argument("--lora-batch", type=int, default=LoraSettings().batch_size, help="default: the papers' 4")
    args = ap.parse_args()
    size = args.size or unets.NATIVE_SIZE[args.model]
    modes = {"on": [True], "off": [False], "both": [True, False]}[args.checkpointing]
    dtype = {"fp16": torch.float16, "fp32": torch.float32}[args.dtype]
    print(f"model {args.model}, image {size}x{size}, {args.dtype}; GiB at each stage's peak (FakeTensorMode + "
          "MemTracker: a lower bound of a GPU's peak)")
    print(f"{'stage':<22} {'checkpointing':<14} {'weights':>8} {'activations':>12} {'other':>8} {'total':>8}")
    for stage in args.stages.split(","):
        for on in modes if stage != "sample" else [False]:
            t0 = time.perf_counter()
            p = peak(args.model, size, stage, on, args.lora_batch, dtype)
            name = {"drag": "drag update (batch 1)", "lora": f"LoRA step (batch {args.lora_batch})",
                    "sample": "sampling (batch 2)"}[stage]
            print(f"{name:<22} {('on' if on else 'off') if stage != 'sample' else '-':<14} "
                  f"{p['weights'] / GIB:>8.2f} {p['activations'] / GIB:>12.2f} {p['other'] / GIB:>8.2f} "
                  f"{p['total'] / GIB:>8.2f}   ({time.perf_counter() - t0:.0f} s)", flush=True)


if __name__ == "__main__":
    main()
