"""Drag Latent Optimizer: move each handle's content to its target by optimising the inverted latent."""

from __future__ import annotations

import torch
from comfy_api.latest import io

from ..drag_ops import families, presets, strategies
from ..drag_ops.pipeline import drag_stage, editable_region
from ..drag_ops.plan import plan
from .bridge import conditioning_from_comfy, diffusion_model_with_codec, identity_lora_text
from .method import PRESET_DEFAULT, configure, overridden
from .runtime import (Progress, expect_drag_points, latent_to_comfy, located, mask_from_comfy, stage_memory,
                      trajectory_image)
from .types import CATEGORY, DRAG_INVERSION, DRAG_POINTS, DRAG_RESULT
from .values import DragResult, check_inversion

NODE_NAME = "Drag Latent Optimizer"


# the method choice, shared by the optimizer and the one-box node (where the strategies are optional)
def preset_input(one_pass: bool = False) -> io.Combo.Input:
    """one_pass: also offer the training-free presets (Drag Edit runs them, without a LoRA; the optimizer
    cannot). Their options come last and the tooltip stays: saved workflows and /object_info keep theirs."""
    options = list(presets.ALL_PRESETS if one_pass else presets.PRESETS)
    return io.Combo.Input("preset", options=options, default="DragDiffusion", tooltip=(
        "DragDiffusion: nearest-neighbour tracking, 80 steps at t=35/50. FreeDrag: template + line search, "
        "no tracking. StableDrag: discriminative tracker + confident supervision. GoodDrag: alternating "
        "drag and denoise, information-preserving. AdaptiveDrag: superpixel regions, auto-mask, "
        "backtracking."))  # the one-pass presets are explained on Drag One-Pass Edit


def strategy_inputs(optional: bool) -> list[io.Combo.Input]:
    return [io.Combo.Input(kind, options=[PRESET_DEFAULT, *strategies.REGISTRIES[kind]], default=PRESET_DEFAULT,
                           optional=optional, tooltip=tooltip)
            for kind, tooltip in (("tracker", "Point tracker; 'preset' keeps the preset's."),
                                  ("supervision", "Motion supervision; 'preset' keeps the preset's."),
                                  ("schedule", "When to optimise, track and denoise; 'preset' keeps the preset's."))]


def overrides_input() -> io.String.Input:
    return io.String.Input("overrides", multiline=True, default="{}", optional=True, tooltip=(
        'Any preset setting by name, as JSON, e.g. {"drag.learning_rate": 0.02, "schedule.max_steps": 120, '
        '"supervision.radius": 2}. The settings output lists the names.'))


class DragLatentOptimizer(io.ComfyNode):
    @classmethod
    def define_schema(cls) -> io.Schema:
        return io.Schema(
            node_id="DragLatentOptimizer",
            display_name=NODE_NAME,
            category=CATEGORY,
            description=("Optimises the inverted latent so the content under each handle moves to its target "
                         "(motion supervision + point tracking). Pick a paper's preset, optionally swap its "
                         "tracker, supervision or schedule, and override any setting; the 'settings' output lists "
                         "every value used and where it comes from."),
            inputs=[
                io.Model.Input("model", tooltip="The MODEL the inversion used (with the identity LoRA)."),
                DRAG_INVERSION.Input("inversion", tooltip="From Drag DDIM Inversion."),
                io.Conditioning.Input("conditioning", tooltip="The prompt used for the inversion."),
                DRAG_POINTS.Input("points", tooltip="Handle/target pairs from Drag Point Picker."),
                preset_input(),
                *strategy_inputs(optional=False),
                io.Mask.Input("mask", optional=True,
                              tooltip="Region allowed to change (1 = editable). None: the whole image."),
                overrides_input(),
                io.Boolean.Input("gradient_checkpointing", default=False, optional=True, tooltip=(
                    "Recompute activations in the backward pass: less GPU memory (SD 1.5 at 512x512 fits 8 GB), "
                    "about a third slower. Off: the model family's choice, which is on for SDXL (the settings "
                    "output says which is in force).")),
            ],
            outputs=[
                DRAG_RESULT.Output(display_name="drag",
                                   tooltip="The dragged latent and its preset, for Drag Reference Sampler."),
                io.Latent.Output(display_name="noisy_latent", tooltip=(
                    "Still noise, not a picture: the dragged latent at the drag's timestep. VAE Decode shows "
                    "noise; Drag Reference Sampler turns it into the edited image.")),
                io.Image.Output(display_name="trajectory", tooltip=(
                    "The input with each handle's tracked path drawn from its start to where it ended.")),
                io.Mask.Output(display_name="mask",
                               tooltip="The editable region actually used (the auto-mask for AdaptiveDrag)."),
                io.String.Output(display_name="settings", tooltip=(
                    "Every setting used, with its source (paper section, method notes, or 'user').")),
            ],
        )

    @classmethod
    def execute(cls, model, inversion, conditioning, points, preset, tracker, supervision, schedule,
                mask=None, overrides="{}", gradient_checkpointing=False) -> io.NodeOutput:
        with located(NODE_NAME), stage_memory():
            config = configure(preset, tracker, supervision, schedule, overrides, lora=False)
            expect_drag_points(points)
            h, w = check_inversion(inversion).image_hw
            user_mask = mask_from_comfy(mask, (h, w))
            checked = plan(lambda: diffusion_model_with_codec(model, inversion.codec, inversion.num_steps), config,
                           ("drag",), image_hw=(h, w), points=points, mask=user_mask,
                           cond=lambda: conditioning_from_comfy(conditioning), inverted=inversion.trajectory.steps,
                           set_by=overridden(overrides))
            cond, dm = checked.cond, checked.model
            config = checked.config  # with the model family's values (SDXL: drag_ops/families.py)
            if gradient_checkpointing:  # off: the model family's choice (on for SDXL)
                dm.network.gradient_checkpointing = True
            trajectory = inversion.trajectory
            region, labels = editable_region(dm, inversion.image, trajectory.at(0), cond, points, user_mask, config)
            with Progress(checked.stages, model, (h, w)) as progress:
                result = drag_stage(dm, trajectory, cond, points, (h, w), region, config, progress, labels)
            latent = latent_to_comfy(model, result.latent)
            used = region if region is not None else torch.ones(h, w)
            preview = trajectory_image(inversion.image, result.history, points.targets, region)
        drag_result = DragResult(result, config, inversion.num_steps, region, inversion.trajectory.at(0).clone(),
                                  set_by=overridden(overrides))
        # the LoRA is the MODEL's (Drag Identity LoRA's, maybe cached from another run), not the preset's
        settings = identity_lora_text(model) + "\n" + families.describe_text(preset, config, dm.network)
        return io.NodeOutput(drag_result, latent, preview, used[None].float(), settings)
