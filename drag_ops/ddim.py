"""The DDIM schedule: timesteps, one deterministic step each way, and model-output conversion.

This is the only place the sampler maths lives (inversion, drag, sampling and LoRA all use it).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch


def scaled_linear_alphas(num_train_timesteps: int = 1000, beta_start: float = 0.00085,
                         beta_end: float = 0.012) -> torch.Tensor:
    """Stable Diffusion's noise schedule (betas linear in sqrt space)."""
    betas = torch.linspace(beta_start ** 0.5, beta_end ** 0.5, num_train_timesteps, dtype=torch.float64) ** 2
    return torch.cumprod(1.0 - betas, dim=0)


@dataclass
class DDIMSchedule:
    """DDIM with SD's conventions: "leading" spacing, steps_offset 1, set_alpha_to_one False.

    Step index k counts inversion steps: k = 0 is the clean latent, k = n is the latent at
    ``timesteps_ascending[n - 1]`` (50 steps, k = 35 -> t = 681).
    """

    alphas_cumprod: torch.Tensor  # [num_train_timesteps], float64
    num_steps: int = 50
    prediction_type: str = "epsilon"  # or "v_prediction" (SD 2.x 768)

    def __post_init__(self):
        if self.prediction_type not in ("epsilon", "v_prediction"):
            raise ValueError(f"unsupported prediction type {self.prediction_type!r}; "
                             "expected 'epsilon' or 'v_prediction'")
        if not 1 <= self.num_steps <= len(self.alphas_cumprod):
            raise ValueError(f"num_steps must be in 1..{len(self.alphas_cumprod)}, got {self.num_steps}")
        self.alphas_cumprod = self.alphas_cumprod.detach().to("cpu", torch.float64)
        self.stride = len(self.alphas_cumprod) // self.num_steps
        self.timesteps_ascending = [k * self.stride + 1 for k in range(self.num_steps)]

    @classmethod
    def stable_diffusion(cls, num_steps: int = 50, prediction_type: str = "epsilon") -> "DDIMSchedule":
        return cls(scaled_linear_alphas(), num_steps, prediction_type)

    # -- indexing ------------------------------------------------------------------------
    def timestep(self, k: int) -> int:
        """Timestep of the latent at step index k (k >= 1)."""
        return self.timesteps_ascending[k - 1]

    def steps_for_strength(self, strength: float) -> int:
        if not 0.0 < strength <= 1.0:
            raise ValueError(f"inversion strength must be in (0, 1], got {strength}")
        return max(1, round(strength * self.num_steps))

    def _alpha(self, t: int) -> float:
        # t < 0 is the final step (x0): SD uses alphas_cumprod[0], not 1 (set_alpha_to_one=False)
        return float(self.alphas_cumprod[max(t, 0)])

    # -- maths ---------------------------------------------------------------------------
    def eps_and_x0(self, model_out: torch.Tensor, t: int, z: torch.Tensor):
        a = self._alpha(t)
        if self.prediction_type == "epsilon":
            eps = model_out
            x0 = (z - (1 - a) ** 0.5 * eps) / a ** 0.5
        else:
            x0 = a ** 0.5 * z - (1 - a) ** 0.5 * model_out
            eps = a ** 0.5 * model_out + (1 - a) ** 0.5 * z
        return eps, x0

    def step(self, model_out: torch.Tensor, k: int, z: torch.Tensor) -> torch.Tensor:
        """One deterministic DDIM step from index k to k - 1 (eta = 0)."""
        t = self.timestep(k)
        eps, x0 = self.eps_and_x0(model_out, t, z)
        a_prev = self._alpha(t - self.stride)
        return a_prev ** 0.5 * x0 + (1 - a_prev) ** 0.5 * eps

    def invert_step(self, model_out: torch.Tensor, k: int, z: torch.Tensor) -> torch.Tensor:
        """One DDIM inversion step from index k - 1 to k; model_out is evaluated at timestep(k)."""
        t = self.timestep(k)
        a_prev, a = self._alpha(t - self.stride), self._alpha(t)
        # the model was told timestep t, so its output converts to eps at t's noise level
        eps, _ = self.eps_and_x0(model_out, t, z)
        x0 = (z - (1 - a_prev) ** 0.5 * eps) / a_prev ** 0.5
        return a ** 0.5 * x0 + (1 - a) ** 0.5 * eps

    def training_target(self, x0: torch.Tensor, noise: torch.Tensor, t: torch.Tensor):
        """Noised latent and the regression target for a batch of training timesteps t."""
        a = self.alphas_cumprod.to(x0.device)[t].to(x0.dtype).view(-1, *[1] * (x0.dim() - 1))
        zt = a.sqrt() * x0 + (1 - a).sqrt() * noise
        target = noise if self.prediction_type == "epsilon" else a.sqrt() * noise - (1 - a).sqrt() * x0
        return zt, target
