"""DDIM inversion (no classifier-free guidance), keeping the whole original trajectory."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from .model import Conditioning, DiffusionModel
from .network import Stage
from .progress import Callback, report


@dataclass
class Trajectory:
    """Latents of the original image along the DDIM path: latents[k] is at step index k."""

    latents: torch.Tensor  # [n + 1, C, h, w]; [0] is the encoded image

    @property
    def steps(self) -> int:
        return self.latents.shape[0] - 1

    def at(self, k: int) -> torch.Tensor:
        return self.latents[k:k + 1]

    @property
    def start(self) -> torch.Tensor:
        return self.at(self.steps)


def invert(model: DiffusionModel, latent: torch.Tensor, cond: Conditioning, strength: float = 0.7,
           callback: Callback | None = None) -> Trajectory:
    """Invert a clean latent [1, C, h, w] to step round(strength * num_steps)."""
    return model.run(Stage("invert"), cond, latent.shape[-2:], lambda: _invert(model, latent, cond, strength, callback))


@torch.no_grad()
def _invert(model, latent, cond, strength, callback) -> Trajectory:
    schedule = model.schedule
    n = schedule.steps_for_strength(strength)
    z = latent.to(model.device, torch.float32)
    path = [z]
    for k in range(1, n + 1):
        out, _ = model.forward(z, schedule.timestep(k), cond)
        z = schedule.invert_step(out, k, z)
        path.append(z)
        report(callback, "invert", k, n)
    return Trajectory(torch.cat(path))
