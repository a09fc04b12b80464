"""Drag Latent Optimizer: move each handle's content to its target by optimising the inverted latent."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from PIL import Image, ImageDraw

from ..drag_ops import presets, rules, strategies
from ..drag_ops.drag import DragResult
from ..drag_ops.errors import DragInputError
from ..drag_ops.overrides import apply_overrides, parse_overrides
from ..drag_ops.pipeline import drag_stage, editable_region
from ..drag_ops.plan import plan
from .bridge import conditioning_from_comfy, diffusion_model_with_codec, identity_lora_text
from .invert import Inversion, latent_to_comfy
from .runtime import Progress, draw_points, expect_drag_points, located, mask_from_comfy, stage_memory

NODE_NAME = "Drag Latent Optimizer"
PRESET_DEFAULT = "preset"


@dataclass
class DragOutcome:
    """The DRAG_RESULT type: the dragged latent and how it was made (the sampler follows the preset)."""

    result: DragResult
    config: presets.EditConfig
    num_steps: int
    mask: torch.Tensor | None
    origin: torch.Tensor | None = None  # the inversion's encoded image: the sampler checks it gets the same


def check_inversion(inversion) -> Inversion:
    if not isinstance(inversion, Inversion):
        raise DragInputError(f"expected DRAG_INVERSION from Drag DDIM Inversion, got {type(inversion).__name__}",
                             input="inversion")
    return inversion


def configure(preset: str, tracker: str = PRESET_DEFAULT, supervision: str = PRESET_DEFAULT,
              schedule: str = PRESET_DEFAULT, overrides: str = "", *, lora: bool = True) -> presets.EditConfig:
    """A preset with the user's strategy choices and setting overrides, checked. lora=False: for a
    node that trains no identity LoRA (its MODEL brings one): the preset's LoRA settings are left
    out, and overriding them is refused rather than ignored."""
    config = strategies.with_strategies(presets.preset(preset), tracker, supervision, schedule)
    wanted = parse_overrides(overrides)
    if not lora:
        config = rules.replace(config, lora=None)
        for path in wanted:
            if str(path).split(".")[0] == "lora":
                raise DragInputError(f"{path}: this node trains no identity LoRA; set it on Drag Identity LoRA "
                                     "(whose MODEL this node takes), or use Drag Edit", input="overrides")
    return apply_overrides(config, wanted)


def overridden(overrides: str) -> dict:
    """{setting path: 'overrides'} for the settings the overrides input set (see plan's set_by)."""
    return dict.fromkeys(parse_overrides(overrides), "overrides")


def trajectory_image(image: torch.Tensor, history: list, targets, mask: torch.Tensor | None) -> torch.Tensor:
    """The input with each handle's tracked path, its start and target: IMAGE [1, H, W, 3]."""
    arr = ((image[0].permute(1, 2, 0).float().cpu() + 1) * 127.5).clamp(0, 255).byte().numpy()
    if mask is not None:  # dim what may not change
        keep = mask.cpu().numpy()[..., None] > 0.5
        arr = np.where(keep, arr, (arr * 0.55).astype(np.uint8))
    img = Image.fromarray(arr)
    h, w = arr.shape[:2]
    zoom = max(1, 512 // max(h, w))
    img = img.resize((w * zoom, h * zoom), Image.NEAREST)
    draw = ImageDraw.Draw(img)
    for i in range(len(targets)):
        path = [(p[i][0] * zoom, p[i][1] * zoom) for p in history]
        if len(path) > 1:
            draw.line(path, fill=(255, 220, 0), width=max(1, zoom))
    img = draw_points(img, history[0], targets, zoom)
    out = torch.from_numpy(np.array(img.resize((w, h), Image.LANCZOS) if zoom > 1 else img)).float() / 255
    return out[None]


def _strategy_choice(kind: str, tooltip: str):
    return [PRESET_DEFAULT] + list(strategies.REGISTRIES[kind]), {"default": PRESET_DEFAULT, "tooltip": tooltip}


# the method choice, shared by the optimizer and the one-box node
METHOD_INPUTS = {
    "preset": (list(presets.PRESETS), {"default": "DragDiffusion", "tooltip":
               "DragDiffusion: nearest-neighbour tracking, 80 steps at t=35/50. FreeDrag: template + line search, "
               "no tracking. StableDrag: discriminative tracker + confident supervision. GoodDrag: alternating "
               "drag and denoise, information-preserving. AdaptiveDrag: superpixel regions, auto-mask, "
               "backtracking."}),
    "tracker": _strategy_choice("tracker", "Point tracker; 'preset' keeps the preset's."),
    "supervision": _strategy_choice("supervision", "Motion supervision; 'preset' keeps the preset's."),
    "schedule": _strategy_choice("schedule", "When to optimise, track and denoise; 'preset' keeps the preset's."),
}
OVERRIDES_INPUT = ("STRING", {"multiline": True, "default": "{}", "tooltip":
                              'Any preset setting by name, as JSON, e.g. {"drag.learning_rate": 0.02, '
                              '"schedule.max_steps": 120, "supervision.radius": 2}. The settings output lists '
                              'the names.'})


class DragLatentOptimizer:
    DESCRIPTION = ("Optimises the inverted latent so the content under each handle moves to its target "
                   "(motion supervision + point tracking). Pick a paper's preset, optionally swap its tracker, "
                   "supervision or schedule, and override any setting; the 'settings' output lists every value "
                   "used and where it comes from.")
    CATEGORY = "drag editing"
    FUNCTION = "optimize"
    RETURN_TYPES = ("DRAG_RESULT", "LATENT", "IMAGE", "MASK", "STRING")
    RETURN_NAMES = ("drag", "latent", "trajectory", "mask", "settings")
    OUTPUT_TOOLTIPS = ("The dragged latent and its preset, for Drag Reference Sampler.",
                       "The dragged noisy latent (at the drag's timestep).",
                       "The input with each handle's tracked path drawn from its start to where it ended.",
                       "The editable region actually used (the auto-mask for AdaptiveDrag).",
                       "Every setting used, with its source (paper section, method notes, or 'user').")

    @classmethod
    def INPUT_TYPES(cls):
        return {
            "required": {
                "model": ("MODEL", {"tooltip": "The MODEL the inversion used (with the identity LoRA)."}),
                "inversion": ("DRAG_INVERSION", {"tooltip": "From Drag DDIM Inversion."}),
                "conditioning": ("CONDITIONING", {"tooltip": "The prompt used for the inversion."}),
                "points": ("DRAG_POINTS", {"tooltip": "Handle/target pairs from Drag Point Picker."}),
                **METHOD_INPUTS,
            },
            "optional": {
                "mask": ("MASK", {"tooltip": "Region allowed to change (1 = editable). None: the whole image."}),
                "overrides": OVERRIDES_INPUT,
                "gradient_checkpointing": ("BOOLEAN", {"default": False, "tooltip":
                                           "Recompute activations in the backward pass: less GPU memory "
                                           "(SD 1.5 at 512x512 fits 8 GB), about a third slower."}),
            },
        }

    def optimize(self, model, inversion, conditioning, points, preset, tracker, supervision, schedule,
                 mask=None, overrides="{}", gradient_checkpointing=False):
        with located(NODE_NAME), stage_memory():
            config = configure(preset, tracker, supervision, schedule, overrides, lora=False)
            expect_drag_points(points)
            h, w = check_inversion(inversion).image_hw
            user_mask = mask_from_comfy(mask, (h, w))
            checked = plan(lambda: diffusion_model_with_codec(model, inversion.codec, inversion.num_steps), config, ("drag",),
                           image_hw=(h, w), points=points, mask=user_mask,
                           cond=lambda: conditioning_from_comfy(conditioning), inverted=inversion.trajectory.steps,
                           set_by=overridden(overrides))
            cond = checked.cond
            dm = checked.model
            dm.network.gradient_checkpointing = gradient_checkpointing
            trajectory = inversion.trajectory
            region, labels = editable_region(dm, inversion.image, trajectory.at(0), cond, points, user_mask, config)
            with Progress(checked.stages, model, (h, w)) as progress:
                result = drag_stage(dm, trajectory, cond, points, (h, w), region, config, progress, labels)
            latent = latent_to_comfy(model, result.latent)
            used = region if region is not None else torch.ones(h, w)
            preview = trajectory_image(inversion.image, result.history, points.targets, region)
        outcome = DragOutcome(result, config, inversion.num_steps, region, inversion.trajectory.at(0).clone())
        # the LoRA is the MODEL's (Drag Identity LoRA's, maybe cached from another run), not the preset's
        settings = identity_lora_text(model) + "\n" + presets.describe_text(preset, config)
        return outcome, latent, preview, used[None].float(), settings


NODE_CLASS_MAPPINGS = {"DragLatentOptimizer": DragLatentOptimizer}
NODE_DISPLAY_NAME_MAPPINGS = {"DragLatentOptimizer": NODE_NAME}
