"""The hand-written DDIM schedule against diffusers' DDIMScheduler configured as Stable Diffusion
ships it (scaled-linear betas, "leading" spacing, steps_offset 1, set_alpha_to_one False): the
same timesteps, the same alphas and the same deterministic step, for epsilon and v prediction."""

import pytest
import torch
from diffusers import DDIMScheduler

from comfyui_drag.drag_ops.ddim import DDIMSchedule


def sd_scheduler(num_steps: int, prediction_type: str) -> DDIMScheduler:
    scheduler = DDIMScheduler(beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear",
                              clip_sample=False, set_alpha_to_one=False, steps_offset=1,
                              timestep_spacing="leading", prediction_type=prediction_type)
    scheduler.set_timesteps(num_steps)
    return scheduler


@pytest.mark.parametrize("num_steps", [50, 25, 10])
def test_timesteps_and_alphas_are_diffusers(num_steps):
    ours, theirs = DDIMSchedule.stable_diffusion(num_steps), sd_scheduler(num_steps, "epsilon")
    assert [ours.timestep(k) for k in range(num_steps, 0, -1)] == theirs.timesteps.tolist()
    assert torch.allclose(ours.alphas_cumprod, theirs.alphas_cumprod.double(), rtol=1e-6, atol=0)


@pytest.mark.parametrize("prediction_type", ["epsilon", "v_prediction"])
@pytest.mark.parametrize("k", [50, 35, 1])
def test_one_step_is_diffusers_step(prediction_type, k):
    ours, theirs = DDIMSchedule.stable_diffusion(50, prediction_type), sd_scheduler(50, prediction_type)
    g = torch.Generator().manual_seed(k)
    z, out = torch.randn(1, 4, 8, 8, generator=g), torch.randn(1, 4, 8, 8, generator=g)
    t = ours.timestep(k)
    expected = theirs.step(out, t, z, eta=0.0).prev_sample
    assert torch.allclose(ours.step(out, k, z), expected, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("prediction_type", ["epsilon", "v_prediction"])
def test_inversion_step_undoes_a_step_for_a_constant_prediction(prediction_type):
    """With a model whose noise estimate is the same at both ends of a step (what inversion
    assumes), inverting then stepping returns the latent."""
    schedule = DDIMSchedule.stable_diffusion(50, prediction_type)
    g = torch.Generator().manual_seed(0)
    z = torch.randn(1, 4, 8, 8, generator=g)
    eps = torch.randn(1, 4, 8, 8, generator=g)
    k = 20
    t = schedule.timestep(k)
    a = schedule.alphas_cumprod[t].item()

    def out_for(latent):  # the model output that means noise estimate eps at timestep t
        if prediction_type == "epsilon":
            return eps
        x0 = (latent - (1 - a) ** 0.5 * eps) / a ** 0.5
        return a ** 0.5 * eps - (1 - a) ** 0.5 * x0

    up = schedule.invert_step(out_for(z), k, z)
    assert torch.allclose(schedule.step(out_for(up), k, up), z, atol=1e-5)
