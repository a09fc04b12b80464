"""The denoising network behind a DiffusionModel, and the diffusers UNet as one.

The engine asks a network for four things: a noise prediction with decoder features (``predict``),
the decoder's self-attention layers (reference attention), the modules an identity LoRA adapts,
and a frame to run each stage in (``run``). The frame is where a host application loads the
weights, applies its own patches and cleans up: ComfyUI's backend (nodes/comfy_network.py) runs
every stage through ComfyUI's sampler machinery on ComfyUI's own loaded model; the diffusers
UNet here simply calls the stage.
"""

from __future__ import annotations

from contextlib import ExitStack, contextmanager, nullcontext
from dataclasses import dataclass
from typing import Callable, Protocol, Sequence, TypeVar

import torch

from . import families
from .errors import DragInputError

T = TypeVar("T")


@dataclass(frozen=True)
class AttentionLayer:
    """A transformer block's self-attention, in forward order (down, middle, up blocks: the order
    MasaCtrl's "layer 10" counts in). level: the decoder level it sits in, -1 outside the decoder."""

    name: str
    level: int


@dataclass(frozen=True)
class Stage:
    """One stage of an edit as the network sees it.

    batch: latents per forward (the LoRA's batch, 2 for reference sampling) - the host sizes its
    memory by it; grad: the stage backpropagates through the network; reference: indices into
    ``attention_layers()`` whose keys and values come from the first half of the batch (mutual
    self-attention); lora: adapter weights active during the stage (a LoraWeights)."""

    name: str
    batch: int = 1
    grad: bool = False
    reference: tuple[int, ...] = ()
    lora: object | None = None


class Network(Protocol):
    device: torch.device
    dtype: torch.dtype  # of the weights (the maths runs in it; latents and losses stay fp32)
    downsampling: int  # latent pixels per pixel at the network's coarsest level
    context_width: int  # width of the text context it cross-attends to
    decoder_levels: int  # feature levels, numbered as diffusers numbers up_blocks
    family: families.Family  # what the drag restates for this model family (drag_ops/families.py)
    gradient_checkpointing: bool  # recompute activations in the backward pass (the family's default unless chosen)

    def level_channels(self, level: int) -> int: ...

    def check_conditioning(self, cond, input: str = "conditioning") -> None: ...  # what else the family needs

    def attention_layers(self) -> list[AttentionLayer]: ...

    def run(self, stage: Stage, cond, latent_hw: tuple[int, int], body: Callable[[], T]) -> T: ...

    def predict(self, z: torch.Tensor, t, cond, levels: Sequence[int]) -> tuple[torch.Tensor, list]: ...

    def lora_root(self) -> torch.nn.Module: ...

    def lora_targets(self, targets: Sequence[str]) -> list[str]: ...

    def lora_file_key(self, module: str) -> str: ...


def autocast(device: torch.device, weight_dtype: torch.dtype = torch.float32):
    """Mixed precision for a network with weights of `weight_dtype`: fp16 autocast on CUDA (as the
    papers run; bf16 for bf16 weights), the weights' own half type on other devices, none for fp32
    on the CPU. Callers keep their latents and losses in fp32; only the network's maths runs in half."""
    kind = torch.device(device).type
    half = weight_dtype if weight_dtype in (torch.float16, torch.bfloat16) else None
    if kind == "cuda":
        return torch.autocast("cuda", dtype=half or torch.float16)
    return torch.autocast(kind, dtype=half) if half else nullcontext()


@contextmanager
def capture_outputs(modules: Sequence[torch.nn.Module], into: list):
    """Append each module's output to `into` while inside (forward hooks, removed on exit)."""
    handles = [m.register_forward_hook(lambda m, i, o: into.append(o)) for m in modules]
    try:
        yield
    finally:
        for h in handles:
            h.remove()


def mutual_attention_kv(hidden: torch.Tensor) -> torch.Tensor:
    """Mutual self-attention (MasaCtrl): every item of the batch [original, edited] attends to the
    original's tokens, so the keys and values are the first half repeated."""
    n = hidden.shape[0] // 2
    return hidden[:n].repeat(2, *[1] * (hidden.dim() - 1))


class DiffusersUNet:
    """A diffusers UNet2DConditionModel as a Network (the standalone engine, CLI and benchmarks).
    SD 1.x/2.x and SDXL (drag_ops/families.py): SDXL's added embeddings come from the Conditioning's
    ``added`` ("text_embeds", the pooled prompt; "time_ids" if given, else filled in as ComfyUI does)."""

    def __init__(self, unet, gradient_checkpointing: bool | None = None):
        self.unet = unet
        self.family = families.of_diffusers_config(unet.config)
        # recompute activations in backward: SD 1.5 at 512x512 then fits 8 GB, at ~30% more time;
        # None: the family's default (on for SDXL)
        self.gradient_checkpointing = self.family.gradient_checkpointing if gradient_checkpointing is None \
            else gradient_checkpointing

    @property
    def device(self) -> torch.device:
        return next(self.unet.parameters()).device

    @property
    def dtype(self) -> torch.dtype:
        return next(self.unet.parameters()).dtype

    @property
    def downsampling(self) -> int:
        return 2 ** (len(self.unet.config.block_out_channels) - 1)

    @property
    def context_width(self) -> int:
        return self.unet.config.cross_attention_dim

    @property
    def decoder_levels(self) -> int:
        return len(self.unet.up_blocks)

    def level_channels(self, level: int) -> int:
        return self.unet.up_blocks[level].resnets[-1].out_channels

    def _attention_modules(self):
        unet = self.unet
        groups = [(f"down_blocks.{i}", b, -1) for i, b in enumerate(unet.down_blocks)]
        if getattr(unet, "mid_block", None) is not None:
            groups.append(("mid_block", unet.mid_block, -1))
        groups += [(f"up_blocks.{i}", b, i) for i, b in enumerate(unet.up_blocks)]
        return [(AttentionLayer(f"{prefix}.{name}", level), mod) for prefix, block, level in groups
                for name, mod in block.named_modules() if name.endswith("attn1") and hasattr(mod, "set_processor")]

    def attention_layers(self) -> list[AttentionLayer]:
        return [layer for layer, _ in self._attention_modules()]

    def run(self, stage: Stage, cond, latent_hw, body):
        with ExitStack() as stack:
            if stage.lora is not None:
                stack.enter_context(stage.lora.applied(self))
            if stage.reference:
                stack.enter_context(self._mutual_attention(stage.reference))
            if stage.grad and self.gradient_checkpointing:
                self.unet.enable_gradient_checkpointing()
                stack.callback(self.unet.disable_gradient_checkpointing)
            if not stage.grad:
                stack.enter_context(torch.no_grad())
            return body()

    @contextmanager
    def _mutual_attention(self, indices):
        modules = self._attention_modules()
        installed = []
        try:
            for i in indices:
                attn = modules[i][1]
                installed.append((attn, attn.processor))
                attn.set_processor(_MutualAttention(attn.processor))
            yield
        finally:
            for attn, proc in installed:
                attn.set_processor(proc)

    def check_conditioning(self, cond, input: str = "conditioning") -> None:
        """SDXL conditions on the pooled prompt too: it must be there, 1280 wide."""
        if self.unet.config.addition_embed_type != "text_time":
            return
        pooled = cond.added.get("text_embeds")
        width = families.POOLED_WIDTH
        if pooled is None or pooled.dim() != 2 or pooled.shape[-1] != width:
            raise DragInputError(f"SDXL needs the pooled prompt embedding (added['text_embeds'], [1, {width}]) beside "
                                 "the context: encode the prompt with the checkpoint's two text encoders", input=input)

    def _added(self, z: torch.Tensor, added: dict) -> dict:
        """SDXL's size and crop conditioning, when not given: original and target size the image's, crop
        (0, 0), in image pixels (latent x 8), which is what ComfyUI's KSampler uses by default."""
        if self.unet.config.addition_embed_type != "text_time" or "time_ids" in added:
            return added
        h, w = (8 * s for s in z.shape[-2:])
        time_ids = torch.tensor([[h, w, 0, 0, h, w]], dtype=torch.float32).expand(z.shape[0], 6)
        return {**added, "time_ids": time_ids}

    def predict(self, z, t, cond, levels=()):
        dev, dt = self.device, self.dtype
        added = {k: v.to(dev, dt) for k, v in self._added(z, cond.added).items()} or None
        captured: list[torch.Tensor] = []
        with capture_outputs([self.unet.up_blocks[b] for b in levels], captured), autocast(dev, dt):
            out = self.unet(z.to(dev, dt), t, encoder_hidden_states=cond.context.to(dev, dt),
                            added_cond_kwargs=added, return_dict=False)[0]
        return out.float(), captured

    def lora_root(self) -> torch.nn.Module:
        return self.unet

    def lora_targets(self, targets):
        return list(targets)

    def lora_file_key(self, module: str) -> str:
        """Kohya's name for a LoRA on this module (diffusers names: what ComfyUI, A1111 and diffusers load)."""
        return "lora_unet_" + module.replace(".", "_")


class _MutualAttention:
    """Wraps a layer's own attention processor: keys/values from the first half of the batch."""

    def __init__(self, inner):
        self.inner = inner

    def __call__(self, attn, hidden_states, encoder_hidden_states=None, *args, **kwargs):
        return self.inner(attn, hidden_states, mutual_attention_kv(hidden_states), *args, **kwargs)
