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
from .errors import DragInputError
from .model import Conditioning, DiffusionModel
from .network import Stage
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
    """Trained adapter: {"<module>.lora_A.weight": down, "<module>.lora_B.weight": up}, module names
    as the network that trained it names them."""

    state: dict[str, torch.Tensor]
    rank: int
    alpha: float
    targets: tuple[str, ...]
    settings: LoraSettings | None = None  # how it was trained (None: made elsewhere)

    @contextmanager
    def applied(self, network):
        """Run with the adapter active; afterwards the network is exactly as before."""
        with _adapter(network, self.rank, self.alpha, self.targets) as layers:
            with torch.inference_mode(False), torch.no_grad():
                for module, layer in layers.items():
                    layer.lora_A[ADAPTER].weight.copy_(self.state[f"{module}.lora_A.weight"])
                    layer.lora_B[ADAPTER].weight.copy_(self.state[f"{module}.lora_B.weight"])
            yield network

    def modules(self) -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
        """{module: (down, up)}."""
        parts: dict = {}
        for key, value in self.state.items():
            module, _, part = key.rpartition(".lora_")
            if part not in ("A.weight", "B.weight"):
                raise ValueError(f"not a plain LoRA weight: {key!r} (DoRA, biases and embeddings are not supported)")
            parts.setdefault(module, {})[part[0]] = value
        broken = sorted(m for m, p in parts.items() if set(p) != {"A", "B"})
        if broken:
            raise ValueError(f"LoRA modules without both A and B weights: {broken[:3]}")
        return {m: (p["A"], p["B"]) for m, p in sorted(parts.items())}


def kohya_state_dict(lora: LoraWeights, network, dtype: torch.dtype = torch.float16) -> dict:
    """The adapter as a kohya-format state dict (``<key>.lora_down/lora_up.weight`` and ``.alpha``,
    keys from network.lora_file_key): what ComfyUI's stock LoraLoader, A1111 and diffusers load."""
    scale = float(lora.alpha) / float(lora.rank)
    out = {}
    for module, (down, up) in lora.modules().items():
        name = network.lora_file_key(module)
        with torch.inference_mode(False):
            out[f"{name}.lora_down.weight"] = down.detach().to("cpu", dtype).contiguous()
            out[f"{name}.lora_up.weight"] = up.detach().to("cpu", dtype).contiguous()
            out[f"{name}.alpha"] = torch.tensor(scale * down.shape[0], dtype=torch.float32)
    return out


def _lora_layers(root: torch.nn.Module) -> dict:
    from peft.tuners.lora import LoraLayer
    return {name: m for name, m in root.named_modules() if isinstance(m, LoraLayer)}


@contextmanager
def _adapter(network, rank: int, alpha: float, targets, seed: int = 0):
    """peft LoRA layers on the network's target modules while inside; yields {module name: layer}.
    On exit every layer is replaced by the module it wrapped, so the network is as before."""
    from peft import LoraConfig, inject_adapter_in_model
    root = network.lora_root()
    if _lora_layers(root):
        raise RuntimeError("the network already carries LoRA layers")
    # only the adapter learns; inference tensors (a host's weights) take no part in autograd anyway
    flags = {n: p.requires_grad for n, p in root.named_parameters() if not p.is_inference()}
    had_config = "peft_config" in vars(root)  # peft records its adapters on the module it injects into
    config = LoraConfig(r=rank, lora_alpha=alpha, target_modules=network.lora_targets(targets),
                        init_lora_weights=True)
    # adapter weights must be able to take part in autograd; peft draws their initial values from
    # the global generator: seed a private copy of it (same seed, same LoRA; the caller's RNG untouched)
    with torch.inference_mode(False), torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        try:
            inject_adapter_in_model(config, root, adapter_name=ADAPTER)
        except ValueError as e:  # no module matched
            raise DragInputError(f"none of the LoRA targets {list(targets)} is a module of this model ({e})",
                                 input="model") from None
        layers = _lora_layers(root)
        for n, p in root.named_parameters():
            mine = "lora_" in n and ADAPTER in n
            if mine and p.dtype in (torch.float16, torch.bfloat16):
                p.data = p.data.float()  # train the adapter in fp32 (autocast runs the maths in fp16)
            if not p.is_inference():
                p.requires_grad_(mine)
    try:
        yield layers
    finally:
        for name, layer in _lora_layers(root).items():
            parent, _, child = name.rpartition(".")
            setattr(root.get_submodule(parent) if parent else root, child, layer.get_base_layer())
        if not had_config:
            vars(root).pop("peft_config", None)
        for n, p in root.named_parameters():
            if n in flags:
                p.requires_grad_(flags[n])


def check_targets(network, targets) -> None:
    """Every target names layers a LoRA can adapt in this network (peft's rule: the module's name,
    or its last dotted parts, as the network names them); raises DragInputError (no input: the
    caller knows who chose them)."""
    modules = list(network.lora_root().named_modules())
    for target, name in zip(targets, network.lora_targets(targets)):
        found = [m for path, m in modules if path == name or path.endswith("." + name)]
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
    check_targets(model.network, settings.targets)
    stage = Stage("lora", batch=settings.batch_size, grad=True)
    return model.run(stage, cond, latent.shape[-2:], lambda: _train(model, latent, cond, settings, callback))


def _train(model, latent, cond, settings, callback) -> LoraWeights:
    schedule = model.schedule
    alpha = float(settings.alpha if settings.alpha is not None else settings.rank)
    gen = torch.Generator().manual_seed(settings.seed)
    dev = model.device
    n_train = len(schedule.alphas_cumprod)
    with torch.inference_mode(False), torch.enable_grad(), \
            _adapter(model.network, settings.rank, alpha, settings.targets, settings.seed) as layers:
        x0 = latent.detach().clone().float().cpu()
        ctx = cond.detached().batch(settings.batch_size)
        params = [p for layer in layers.values() for p in layer.parameters() if p.requires_grad]
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
        state = {}
        for module, layer in layers.items():
            state[f"{module}.lora_A.weight"] = layer.lora_A[ADAPTER].weight.detach().to("cpu", torch.float32).clone()
            state[f"{module}.lora_B.weight"] = layer.lora_B[ADAPTER].weight.detach().to("cpu", torch.float32).clone()
    return LoraWeights(state, settings.rank, alpha, tuple(settings.targets), settings)
