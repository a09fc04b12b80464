"""Sampling under reference-latent control (mutual self-attention, from MasaCtrl).

The original and the edited latents are denoised as one batch [original, edited]. In the chosen
decoder self-attention layers both items attend with the ORIGINAL's keys and values, so the
edited image keeps the original's appearance; cross-attention is untouched.
"""

from __future__ import annotations

from contextlib import contextmanager, nullcontext
from dataclasses import dataclass

import torch

from .inversion import Trajectory
from .model import Conditioning, DiffusionModel
from . import rules
from .errors import DragInputError
from .progress import Callback, report
from .rules import Number


def self_attention_layers(unet) -> list[tuple[str, object, int]]:
    """(name, attn1 module, up-block index or -1) for every transformer block, in forward order
    (down blocks, mid block, up blocks): the index MasaCtrl's "layer 10" counts in."""
    groups = [(f"down_blocks.{i}", b, -1) for i, b in enumerate(unet.down_blocks)]
    if getattr(unet, "mid_block", None) is not None:
        groups.append(("mid_block", unet.mid_block, -1))
    groups += [(f"up_blocks.{i}", b, i) for i, b in enumerate(unet.up_blocks)]
    layers = []
    for prefix, block, up in groups:
        for name, mod in block.named_modules():
            if name.endswith("attn1") and hasattr(mod, "set_processor"):
                layers.append((f"{prefix}.{name}", mod, up))
    return layers


@dataclass
class ReferenceControl:
    """start_block: first transformer block (forward order) under control; None picks the blocks
    of the last two attention-bearing up blocks (blocks 10..15 on SD 1.5, as the papers use)."""

    start_block: int | None = None

    RULES = {"start_block": Number(0, 1000, whole=True, optional=True)}  # which exist: layers()

    def __post_init__(self):
        rules.check(self)

    def layers(self, unet):
        """The controlled layers; DragInputError (no input: the caller knows who chose) if there are none."""
        layers = self_attention_layers(unet)
        if self.start_block is not None:
            if not 0 <= self.start_block < len(layers):
                raise DragInputError(f"reference start block {self.start_block} does not exist: this UNet has "
                                     f"transformer blocks 0..{len(layers) - 1}")
            return layers[self.start_block:]
        ups = sorted({up for _, _, up in layers if up >= 0})[-2:]
        if not ups:
            raise DragInputError("this UNet has no self-attention in its decoder for reference attention to share")
        return [layer for layer in layers if layer[2] in ups]


class _MutualAttention:
    """Wraps a layer's own processor: keys/values come from the first half of the batch."""

    def __init__(self, inner):
        self.inner = inner

    def __call__(self, attn, hidden_states, encoder_hidden_states=None, *args, **kwargs):
        n = hidden_states.shape[0] // 2
        source = hidden_states[:n].repeat(2, *[1] * (hidden_states.dim() - 1))
        return self.inner(attn, hidden_states, source, *args, **kwargs)


@contextmanager
def mutual_attention(unet, control: ReferenceControl):
    installed = []
    try:
        for _, attn, _ in control.layers(unet):
            installed.append((attn, attn.processor))
            attn.set_processor(_MutualAttention(attn.processor))
        yield
    finally:
        for attn, proc in installed:
            attn.set_processor(proc)


@torch.no_grad()
def sample(model: DiffusionModel, trajectory: Trajectory, edited: torch.Tensor, step_index: int,
           cond: Conditioning, control: ReferenceControl | None = ReferenceControl(),
           callback: Callback | None = None, guidance=None) -> tuple[torch.Tensor, torch.Tensor]:
    """Denoise [original z_k, edited z_k] from step index k to 0; returns (original, edited) latents.

    guidance, if given, is called each step as guidance(k, z, model_out) and returns z (e.g. with
    the edited item moved by a gradient step, :mod:`.guidance`); the DDIM step then uses that z.
    """
    schedule, dev = model.schedule, model.device
    z = torch.cat([trajectory.at(step_index).to(dev), edited.to(dev, torch.float32)])
    ctx = mutual_attention(model.unet, control) if control is not None else nullcontext()
    with ctx:
        for i, k in enumerate(range(step_index, 0, -1), 1):
            out, _ = model.forward(z, schedule.timestep(k), cond)
            if guidance is not None:
                z = guidance(k, z, out)
            z = schedule.step(out, k, z)
            report(callback, "sample", i, step_index, {"x0": z[1:]})
    return z[:1], z[1:]
