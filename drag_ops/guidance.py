"""Correspondence sample (AdaptiveDrag, Sec. 3.5, eq. 4): guidance during sampling.

"The optimal result is achieved when the region around the target in the output resembles the
area around the handle in the input." At chosen sampling steps the edited branch's predicted
clean latent x0' is pulled, around each target, toward the input's clean latent z0 around the
matching handle, by a gradient step on the edited latent z_t.

The paper states only the loss: CLoss = sum_i E(p_iA, p_iB), E the symmetric cross-entropy of
CLIP (Radford et al. 2021) on the cosine similarity of the two patches. The authors' code for it
does not work, so the rest is designed here:

- tokens: every latent pixel of a (2r+1)^2 patch is a token, described by its 3x3 latent
  neighbourhood (4 x 9 = 36 values on SD; a single 4-channel latent pixel is too weakly
  discriminative for a cosine). p_A: tokens of z0 (the encoded input) around the ORIGINAL handle
  p_i; p_B: tokens of the edited branch's x0' around the target t_i, same offsets.
- E: logits S = cos(p_A, p_B) / temperature (P x P); E = (CE(S, diag) + CE(S^T, diag)) / 2, so each
  token of the target patch must match the token at the same offset of the handle patch better
  than any other: the patch's content and its spatial layout are both pulled across.
- the step: with the model's noise prediction held fixed, x0' = (z - sqrt(1 - a) eps) / sqrt(a),
  so a step of delta on x0' is a step of sqrt(a) delta on z. The step is normalised (its largest
  entry is ``step_size`` in x0 units) so it does not depend on the loss scale. With
  ``through_model=True`` the gradient also flows through the UNet's prediction (one extra forward
  and backward per iteration, under the same reference attention).
- when: the first ``fraction`` of the sampling steps (the layout is decided early; late steps
  only refine detail, where a pull would blur it).
The numbers (radius, temperature, step size, fraction) are ours, untuned on real models.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from . import rules
from .coords import sample_at, square_offsets
from .rules import Flag, Number


def patch_tokens(latent: torch.Tensor, centre_xy: torch.Tensor, offsets: torch.Tensor) -> torch.Tensor:
    """Tokens [P, C*9] of latent [1, C, h, w]: 3x3 neighbourhoods at centre + offsets (latent coords)."""
    desc = F.unfold(F.pad(latent, (1, 1, 1, 1), mode="replicate"), 3).reshape(1, -1, *latent.shape[-2:])
    return sample_at(desc, centre_xy[None] + offsets.to(centre_xy))


def symmetric_ce(a: torch.Tensor, b: torch.Tensor, temperature: float) -> torch.Tensor:
    """CLIP's symmetric cross-entropy for matching rows of a [P, D] and b [P, D] by cosine."""
    logits = F.normalize(a, dim=-1) @ F.normalize(b, dim=-1).T / temperature
    labels = torch.arange(len(a), device=a.device)
    return (F.cross_entropy(logits, labels) + F.cross_entropy(logits.T, labels)) / 2


def correspondence_loss(reference: torch.Tensor, edited: torch.Tensor, handles: torch.Tensor,
                        targets: torch.Tensor, radius: int = 2, temperature: float = 0.1) -> torch.Tensor:
    """Eq. 4: sum over points of E(patch of reference around handle_i, patch of edited around target_i).
    reference, edited: [1, C, h, w]; handles, targets: [N, 2] latent coordinates (x, y)."""
    offsets = square_offsets(radius)
    total = edited.new_zeros(())
    for h, t in zip(handles, targets):
        p_a = patch_tokens(reference, h, offsets).detach()
        p_b = patch_tokens(edited, t, offsets)
        total = total + symmetric_ce(p_a, p_b, temperature)
    return total


@dataclass
class CorrespondenceGuidance:
    """CLoss settings (see the module doc); ``bind`` makes the per-edit callable for sampling."""

    radius: int = 2  # latent pixels: a 5x5 latent patch is 40x40 image pixels on SD
    temperature: float = 0.1
    step_size: float = 0.05  # largest change of x0' per iteration, latent units
    iterations: int = 1
    fraction: float = 0.5  # of the sampling steps, from the first
    through_model: bool = False

    RULES = {"radius": Number(0, 64, whole=True), "temperature": Number(0, 100, above=True),
             "step_size": Number(0, 10),
             "iterations": Number(1, 100, whole=True),  # per sampling step, where cancel is not checked
             "fraction": Number(0, 1), "through_model": Flag()}

    def __post_init__(self):
        rules.check(self)

    def bind(self, model, cond, trajectory, result) -> "BoundCorrespondence":
        """For one edit: the model and prompt, the input's trajectory, the drag's result (points, geometry)."""
        if result.targets is None or result.geometry is None:
            raise ValueError("correspondence guidance needs a drag result with targets and geometry")
        g = result.geometry
        starts = g.image_to_latent(torch.tensor(result.history[0], dtype=torch.float32))
        targets = g.image_to_latent(torch.tensor(result.targets, dtype=torch.float32))
        n = result.step_index
        guided = set(range(n, n - math.ceil(self.fraction * n), -1))
        return BoundCorrespondence(self, model, cond, trajectory.at(0), starts, targets, guided)


class BoundCorrespondence:
    """guidance(k, z, out) -> z: called by :func:`~.reference.sample` each step, z = [original, edited]."""

    def __init__(self, settings: CorrespondenceGuidance, model, cond, clean, starts, targets, guided):
        self.settings, self.model, self.cond, self.guided = settings, model, cond, guided
        self.clean, self.starts, self.targets = clean, starts, targets
        self.losses: list[float] = []  # before each guided iteration, for inspection

    def loss(self, x0_edited: torch.Tensor) -> torch.Tensor:
        st = self.settings
        return correspondence_loss(self.clean.to(x0_edited), x0_edited, self.starts, self.targets,
                                   st.radius, st.temperature)

    def __call__(self, k: int, z: torch.Tensor, out: torch.Tensor) -> torch.Tensor:
        if k not in self.guided:
            return z
        st, schedule = self.settings, self.model.schedule
        t = schedule.timestep(k)
        a = float(schedule.alphas_cumprod[t])
        with torch.inference_mode(False), torch.enable_grad():
            z = z.detach().clone().float()
            edited = z[1:].clone()
            for _ in range(st.iterations):
                edited.requires_grad_(True)
                if st.through_model:
                    model_out, _ = self.model.forward(torch.cat([z[:1], edited]), t, self.cond)
                    x0 = schedule.eps_and_x0(model_out[1:], t, edited)[1]
                else:
                    x0 = schedule.eps_and_x0(out[1:].detach().clone().float(), t, edited)[1]
                loss = self.loss(x0)
                self.losses.append(float(loss.detach()))
                (grad,) = torch.autograd.grad(loss, edited)
                step = grad / grad.abs().max().clamp_min(1e-12)
                edited = (edited - a ** 0.5 * st.step_size * step).detach()
            return torch.cat([z[:1], edited])
