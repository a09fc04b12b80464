import pytest
import torch
import torch.nn.functional as F

from comfyui_drag.drag_ops.errors import DragInputError
from comfyui_drag.drag_ops.lora import LoraSettings, train_identity_lora
from comfyui_drag.drag_ops.pipeline import run_edit
from comfyui_drag.drag_ops.points import parse_points
from comfyui_drag.drag_ops.presets import EditConfig, dragdiffusion
from comfyui_drag.drag_ops.drag_schedules import SingleTimestep
from tiny_models import blob_image, tiny_cond, tiny_model


def denoising_loss(model, latent, cond, seed=1, n=16):
    g = torch.Generator().manual_seed(seed)
    noise = torch.randn((n, *latent.shape[1:]), generator=g)
    t = torch.linspace(50, 950, n).long()
    zt, target = model.schedule.training_target(latent.expand(n, -1, -1, -1), noise, t)
    with torch.no_grad():
        out, _ = model.forward(zt, t, cond)
    return F.mse_loss(out, target).item()


def test_identity_lora_lowers_the_denoising_loss_and_touches_only_its_own_weights():
    model, cond = tiny_model(eps_scale=1.0), tiny_cond()
    latent = model.codec.encode(blob_image())
    before = {k: v.clone() for k, v in model.network.unet.state_dict().items()}
    loss0 = denoising_loss(model, latent, cond)
    lora = train_identity_lora(model, latent, cond, LoraSettings(steps=30, learning_rate=5e-3, rank=4))

    after = model.network.unet.state_dict()
    assert after.keys() == before.keys() and all(torch.equal(before[k], after[k]) for k in before)
    assert not hasattr(model.network.unet, "peft_config") or not model.network.unet.peft_config
    assert lora.state and all("lora_A" in k or "lora_B" in k for k in lora.state)
    assert any(k.endswith("attn1.to_out.0.lora_B.weight") for k in lora.state)
    with lora.applied(model.network):
        loss1 = denoising_loss(model, latent, cond)
    assert loss1 < 0.9 * loss0
    assert denoising_loss(model, latent, cond) == loss0  # removed again, exactly


def test_full_edit_on_a_tiny_model_runs_every_stage():
    model, cond = tiny_model(), tiny_cond()
    config = dragdiffusion()
    config.lora = LoraSettings(steps=3, rank=4)
    config.schedule = SingleTimestep(max_steps=10)
    stages = set()
    result = run_edit(model, blob_image(), parse_points([[10, 12], [18, 12]]), cond, config,
                      callback=lambda stage, i, n, p: stages.add(stage))
    assert stages == {"lora", "invert", "drag", "sample"}
    assert result.image.shape == (1, 3, 32, 32) and result.image.abs().max() <= 1
    assert result.lora is not None and result.drag.steps > 0
    assert len(result.drag.history) >= 2


def test_a_second_drag_of_the_same_image_reuses_its_lora_and_gives_the_same_edit():
    model, cond = tiny_model(), tiny_cond()
    config = dragdiffusion()
    config.lora = LoraSettings(steps=3, rank=4)
    config.schedule = SingleTimestep(max_steps=5)
    points = parse_points([[10, 12], [18, 12]])
    first = run_edit(model, blob_image(), points, cond, config)
    stages = set()
    again = run_edit(model, blob_image(), points, cond, config, lora=first.lora,
                     callback=lambda stage, i, n, p: stages.add(stage))
    assert stages == {"invert", "drag", "sample"}  # no LoRA stage: nothing trained
    assert again.lora is first.lora and torch.equal(again.image, first.image)

    other = dragdiffusion()
    other.lora = LoraSettings(steps=4, rank=4)
    with pytest.raises(DragInputError, match="input 'lora'.*steps=3.*steps=4"):
        run_edit(model, blob_image(), points, cond, other, lora=first.lora)
    with pytest.raises(DragInputError, match="input 'lora'"):
        run_edit(model, blob_image(), points, cond, EditConfig(lora=None), lora=first.lora)


def test_non_square_images_work_end_to_end():
    model, cond = tiny_model(), tiny_cond()
    config = EditConfig(lora=None, schedule=SingleTimestep(max_steps=3))
    result = run_edit(model, blob_image(h=32, w=48), parse_points([[40, 20], [30, 25]]), cond, config)
    assert result.image.shape == (1, 3, 32, 48)


def test_image_sizes_the_models_cannot_take_are_rejected():
    model, cond = tiny_model(), tiny_cond()
    with pytest.raises(DragInputError, match="multiple of 16"):
        run_edit(model, blob_image(h=36, w=32), parse_points([[1, 2], [5, 6]]), cond, EditConfig(lora=None))


def test_cancel_from_the_callback_stops_and_leaves_the_unet_clean():
    model, cond = tiny_model(), tiny_cond()
    before = {k: v.clone() for k, v in model.network.unet.state_dict().items()}
    procs = {k: type(v) for k, v in model.network.unet.attn_processors.items()}

    class Cancelled(Exception):
        pass

    def cancel_in(stage_name):
        def cb(stage, i, n, p):
            if stage == stage_name and i == 2:
                raise Cancelled
        return cb

    config = EditConfig(lora=LoraSettings(steps=3, rank=4), schedule=SingleTimestep(max_steps=4))
    for stage in ("lora", "invert", "drag", "sample"):
        with pytest.raises(Cancelled):
            run_edit(model, blob_image(), parse_points([[10, 12], [18, 12]]), cond, config, callback=cancel_in(stage))
        assert {k: type(v) for k, v in model.network.unet.attn_processors.items()} == procs
        after = model.network.unet.state_dict()
        assert after.keys() == before.keys() and all(torch.equal(before[k], after[k]) for k in before)


def test_the_whole_edit_runs_under_inference_mode_as_comfyui_runs_nodes():
    model, cond = tiny_model(), tiny_cond()
    config = EditConfig(lora=LoraSettings(steps=2, rank=4), schedule=SingleTimestep(max_steps=3))
    with torch.inference_mode():
        image, c = blob_image().clone(), tiny_cond()
        result = run_edit(model, image, parse_points([[10, 12], [18, 12]]), c, config)
    assert result.drag.steps > 0 and torch.isfinite(result.image).all()


@pytest.mark.parametrize("half, tolerance", [(torch.bfloat16, 0.15), (torch.float16, 0.05)])
def test_a_half_precision_unet_runs_the_whole_edit_in_mixed_precision(half, tolerance):
    """What a GPU user gets (ComfyUI loads SD in fp16): the UNet's maths in half under autocast,
    latents, losses and the LoRA's own weights in fp32, and an edit close to the fp32 one (within
    what a half type's rounding makes of 2 LoRA steps, 4 drag updates and 7 sampling steps on a
    random model: bf16 keeps 8 bits of mantissa, fp16 11)."""
    cond = tiny_cond()
    config = dragdiffusion()
    config.lora = LoraSettings(steps=2, rank=4)
    config.schedule = SingleTimestep(max_steps=4)
    points = parse_points([[10, 12], [18, 12]])
    full = run_edit(tiny_model(), blob_image(), points, cond, config)
    model = tiny_model()
    model.network.unet.to(half)
    weights = {k: v.clone() for k, v in model.network.unet.state_dict().items()}
    mixed = run_edit(model, blob_image(), points, cond, config)
    assert mixed.latent.dtype == torch.float32 and torch.isfinite(mixed.image).all()
    assert all(v.dtype == torch.float32 for v in mixed.lora.state.values())
    after = model.network.unet.state_dict()
    assert after.keys() == weights.keys() and all(torch.equal(weights[k], after[k]) for k in weights)
    assert mixed.drag.history == full.drag.history
    assert (mixed.latent - full.latent).norm() < tolerance * full.latent.norm()
