"""Identity-preserving LoRA fine-tune (DragDiffusion Sec. 3.2) with peft.

The adapter learns to denoise this one image, so inversion + sampling reproduce it faithfully.
Base weights are never written: the adapter is injected, trained, read out and removed.
"""

from __future__ import annotations

from contextlib import contextmanager
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from . import rules
from .model import Conditioning, DiffusionModel
from .progress import Callback, report
from .rules import Items, Number, Text

ADAPTER = "drag_identity"
DEFAULT_TARGETS = ("to_q", "to_k", "to_v", "to_out.0")


@dataclass
class LoraSettings:
    rank: int = 16
    alpha: float | None = None  # None: alpha = rank (scale 1)
    learning_rate: float = 5e-4
    steps: int = 80
    batch_size: int = 4
    targets: tuple[str, ...] = DEFAULT_TARGETS
    seed: int = 0

    # the Drag Identity LoRA node's ranges
    RULES = {"rank": Number(1, 256, whole=True), "alpha": Number(0, 10_000, above=True, optional=True),
             "learning_rate": Number(0, 1, above=True), "steps": Number(0, 10_000, whole=True),
             "batch_size": Number(1, 64, whole=True), "targets": Items(Text(), 1, 64),
             "seed": Number(0, 2 ** 63 - 1, whole=True)}

    def __post_init__(self):
        rules.check(self)


@dataclass
class LoraWeights:
    """Trained adapter: peft state dict keyed by diffusers UNet module names (no adapter name)."""

    state: dict[str, torch.Tensor]
    rank: int
    alpha: float
    targets: tuple[str, ...]
    settings: LoraSettings | None = None  # how it was trained (None: made elsewhere)

    @contextmanager
    def applied(self, unet):
        """Run with the adapter active; afterwards the UNet is exactly as before."""
        from peft import set_peft_model_state_dict
        with _adapter(unet, self.rank, self.alpha, self.targets):
            with torch.inference_mode(False):
                set_peft_model_state_dict(unet, self.state, adapter_name=ADAPTER)
            yield unet


@contextmanager
def _adapter(unet, rank: int, alpha: float, targets, seed: int = 0):
    from peft import LoraConfig
    if ADAPTER in (getattr(unet, "peft_config", None) or {}):
        raise RuntimeError(f"the UNet already carries an adapter named {ADAPTER!r}")
    flags = {n: p.requires_grad for n, p in unet.named_parameters()}
    had_other = bool(getattr(unet, "peft_config", None))
    # adapter weights must be able to take part in autograd; peft draws their initial values from
    # the global generator: seed a private copy of it (same seed, same LoRA; the caller's RNG untouched)
    with torch.inference_mode(False), torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        unet.add_adapter(LoraConfig(r=rank, lora_alpha=alpha, target_modules=list(targets),
                                    init_lora_weights=True), adapter_name=ADAPTER)
        for n, p in unet.named_parameters():
            mine = "lora_" in n and ADAPTER in n
            if mine and p.dtype in (torch.float16, torch.bfloat16):
                p.data = p.data.float()  # train the adapter in fp32 (autocast runs the maths in fp16)
            p.requires_grad_(mine)
    try:
        yield
    finally:
        if had_other:
            unet.delete_adapters(ADAPTER)
        else:
            unet.unload_lora()  # removes the wrapper layers too, not just the weights
        for n, p in unet.named_parameters():
            p.requires_grad_(flags.get(n, p.requires_grad))


def check_targets(unet, targets) -> None:
    """Every target names layers a LoRA can adapt in this UNet (peft's rule: the module's name, or
    its last dotted parts); raises DragInputError (no input: the caller knows who chose them)."""
    from .errors import DragInputError
    modules = list(unet.named_modules())
    for target in targets:
        found = [m for name, m in modules if name == target or name.endswith("." + target)]
        if not found:
            raise DragInputError(f"LoRA target modules named {target!r} do not exist in this UNet (SD's attention "
                                 "projections are to_q, to_k, to_v, to_out.0)")
        if not any(isinstance(m, (torch.nn.Linear, torch.nn.Conv2d)) for m in found):
            raise DragInputError(f"the modules named {target!r} are not linear or convolution layers, which is "
                                 "what a LoRA adapts")


def random_crops(latent: torch.Tensor, n: int, generator: torch.Generator) -> torch.Tensor:
    """n random shifted crops of a [1, C, h, w] latent (edge-padded by ~1/10 of its size)."""
    h, w = latent.shape[-2:]
    pad = max(1, round(0.1 * min(h, w)))
    padded = F.pad(latent, (pad, pad, pad, pad), mode="replicate")
    offs = torch.randint(0, 2 * pad + 1, (n, 2), generator=generator).tolist()
    return torch.cat([padded[..., oy:oy + h, ox:ox + w] for oy, ox in offs])


def train_identity_lora(model: DiffusionModel, latent: torch.Tensor, cond: Conditioning,
                        settings: LoraSettings = LoraSettings(), callback: Callback | None = None) -> LoraWeights:
    """Fine-tune a LoRA on one image's latent [1, C, h, w] with the plain denoising loss."""
    from peft import get_peft_model_state_dict
    unet, schedule = model.unet, model.schedule
    check_targets(unet, settings.targets)
    alpha = float(settings.alpha if settings.alpha is not None else settings.rank)
    gen = torch.Generator().manual_seed(settings.seed)
    dev = model.device
    n_train = len(schedule.alphas_cumprod)
    with torch.inference_mode(False), torch.enable_grad(), model.backprop_memory(), \
            _adapter(unet, settings.rank, alpha, settings.targets, settings.seed):
        x0 = latent.detach().clone().float().cpu()
        ctx = cond.detached().batch(settings.batch_size)
        params = [p for p in unet.parameters() if p.requires_grad]
        opt = torch.optim.AdamW(params, lr=settings.learning_rate)
        for step in range(1, settings.steps + 1):
            crops = random_crops(x0, settings.batch_size, gen)
            noise = torch.randn(crops.shape, generator=gen)
            t = torch.randint(0, n_train, (settings.batch_size,), generator=gen)
            zt, target = schedule.training_target(crops, noise, t)
            out, _ = model.forward(zt.to(dev), t.to(dev), ctx)
            loss = F.mse_loss(out.float(), target.to(dev))
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            report(callback, "lora", step, settings.steps, {"loss": loss.item()})
        state = {k: v.detach().to("cpu", torch.float32).clone()
                 for k, v in get_peft_model_state_dict(unet, adapter_name=ADAPTER).items()}
    return LoraWeights(state, settings.rank, alpha, tuple(settings.targets), settings)
