"""Sampling under reference-latent control (mutual self-attention, from MasaCtrl).

The original and the edited latents are denoised as one batch [original, edited]. In the chosen
decoder self-attention layers both items attend with the ORIGINAL's keys and values, so the
edited image keeps the original's appearance; cross-attention is untouched.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from . import rules
from .errors import DragInputError
from .inversion import Trajectory
from .model import Conditioning, DiffusionModel
from .network import Stage
from .progress import Callback, report
from .rules import Number


@dataclass
class ReferenceControl:
    """start_block: first transformer block (forward order, ``network.attention_layers()``) under
    control; None picks the blocks of the last two attention-bearing decoder levels (blocks 10..15
    on SD 1.5, as the papers use)."""

    start_block: int | None = None

    RULES = {"start_block": Number(0, 1000, whole=True, optional=True)}  # which exist: indices()

    def __post_init__(self):
        rules.check(self)

    def indices(self, network) -> tuple[int, ...]:
        """The controlled layers (indices into network.attention_layers()); DragInputError (no input:
        the caller knows who chose) if there are none."""
        layers = network.attention_layers()
        if self.start_block is not None:
            if not 0 <= self.start_block < len(layers):
                raise DragInputError(f"reference start block {self.start_block} does not exist: this UNet has "
                                     f"transformer blocks 0..{len(layers) - 1}")
            return tuple(range(self.start_block, len(layers)))
        levels = sorted({layer.level for layer in layers if layer.level >= 0})[-2:]
        if not levels:
            raise DragInputError("this UNet has no self-attention in its decoder for reference attention to share")
        return tuple(i for i, layer in enumerate(layers) if layer.level in levels)


def sample(model: DiffusionModel, trajectory: Trajectory, edited: torch.Tensor, step_index: int,
           cond: Conditioning, control: ReferenceControl | None = ReferenceControl(),
           callback: Callback | None = None, guidance=None,
           original: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Denoise [original z_k, edited z_k] from step index k to 0; returns (original, edited) latents.
    In the layers ``control`` picks, both attend with the original's keys and values. The original
    z_k is the trajectory's unless ``original`` gives it (a drag that denoised its own original).

    guidance, if given, is called each step as guidance(k, z, model_out) and returns z (e.g. with
    the edited item moved by a gradient step, :mod:`.guidance`); the DDIM step then uses that z.
    """
    reference = control.indices(model.network) if control is not None else ()
    stage = Stage("sample", batch=2, reference=reference, grad=guidance is not None)
    return model.run(stage, cond, edited.shape[-2:],
                     lambda: _sample(model, trajectory, edited, step_index, cond, callback, guidance, original))


@torch.no_grad()
def _sample(model, trajectory, edited, step_index, cond, callback, guidance, original):
    schedule, dev = model.schedule, model.device
    start = trajectory.at(step_index) if original is None else original
    z = torch.cat([start.to(dev, torch.float32), edited.to(dev, torch.float32)])
    for i, k in enumerate(range(step_index, 0, -1), 1):
        out, _ = model.forward(z, schedule.timestep(k), cond)
        if guidance is not None:
            z = guidance(k, z, out)
        z = schedule.step(out, k, z)
        report(callback, "sample", i, step_index, {"x0": z[1:]})
    return z[:1], z[1:]
