"""Stochastic (DDPM, eta = 1) inversion that records its noise, so that sampling back with the
recorded noise returns to the same latents exactly where nothing was edited (the "cycle SDE" of
SDE-Drag, Nie et al. 2024, which RegionDrag inverts with: region_utils/cycle_sde.py::Sampler).

Going up from level k-1 to k the latent is noised forward (q(z_k | z_{k-1})), the model predicts
at level k, and the noise a DDPM step from z_k would need to land on z_{k-1} is stored. The DDIM
schedule's levels and conventions (drag_ops/schedule.py) are the ones used throughout the engine.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from .inversion import Trajectory
from .model import Conditioning, DiffusionModel
from .network import Stage
from .progress import Callback, report


@dataclass
class NoisyTrajectory(Trajectory):
    """latents[k] at level k (as Trajectory); noises[k - 1]: the noise of the step from k to k - 1."""

    noises: torch.Tensor | None = None  # [n, C, h, w]


def _levels(schedule, k: int) -> tuple[int, float, float, float]:
    """(timestep, alpha at k, alpha at k - 1, sigma) of the step between levels k - 1 and k (eta = 1)."""
    t = schedule.timestep(k)
    a, a_prev = schedule._alpha(t), schedule._alpha(t - schedule.stride)
    sigma = ((1 - a_prev) / (1 - a)) ** 0.5 * (1 - a / a_prev) ** 0.5
    return t, a, a_prev, sigma


def invert_sde(model: DiffusionModel, latent: torch.Tensor, cond: Conditioning, strength: float,
               generator: torch.Generator, callback: Callback | None = None) -> NoisyTrajectory:
    """Noise a clean latent [1, C, h, w] up to step round(strength * num_steps), recording the noise;
    the fresh noise comes from generator (a CPU one, so a seed gives the same edit on any device)."""
    return model.run(Stage("invert"), cond, latent.shape[-2:],
                     lambda: _invert(model, latent, cond, strength, generator, callback))


@torch.no_grad()
def _invert(model, latent, cond, strength, generator, callback) -> NoisyTrajectory:
    schedule = model.schedule
    n = schedule.steps_for_strength(strength)
    z = latent.to(model.device, torch.float32)
    path, noises = [z], []
    for k in range(1, n + 1):
        t, a, a_prev, sigma = _levels(schedule, k)
        fresh = torch.randn(z.shape, generator=generator).to(z)
        z_k = (a / a_prev) ** 0.5 * z + (1 - a / a_prev) ** 0.5 * fresh
        out, _ = model.forward(z_k, t, cond)
        eps, x0 = schedule.eps_and_x0(out, t, z_k)
        noises.append((z - a_prev ** 0.5 * x0 - (1 - a_prev - sigma ** 2) ** 0.5 * eps) / sigma)
        z = z_k
        path.append(z)
        report(callback, "invert", k, n)
    return NoisyTrajectory(torch.cat(path), torch.cat(noises))


def sde_step(schedule, model_out: torch.Tensor, k: int, z: torch.Tensor, noise: torch.Tensor) -> torch.Tensor:
    """One DDPM step (eta = 1) from level k to k - 1 with the given noise (the recorded one)."""
    t, _, a_prev, sigma = _levels(schedule, k)
    eps, x0 = schedule.eps_and_x0(model_out, t, z)
    return a_prev ** 0.5 * x0 + (1 - a_prev - sigma ** 2) ** 0.5 * eps + sigma * noise
