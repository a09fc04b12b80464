"""Drag Edit: the whole edit in one node (identity LoRA, inversion, drag, reference sampling)."""

from __future__ import annotations

from ..drag_ops import presets, rules
from ..drag_ops.pipeline import run_edit
from ..drag_ops.plan import STAGES, plan
from .bridge import apply_identity_lora, conditioning_from_comfy, diffusion_model_from_comfy
from .drag_optimize import METHOD_INPUTS, OVERRIDES_INPUT, PRESET_DEFAULT, configure, overridden, trajectory_image
from .invert import latent_to_comfy
from .runtime import (Progress, expect_drag_points, image_from_comfy, image_to_comfy, located, mask_from_comfy,
                      stage_memory)

NODE_NAME = "Drag Edit"


class DragEdit:
    DESCRIPTION = ("Drag editing in one box: trains the identity LoRA, inverts, drags with the chosen paper's "
                   "preset and samples under reference control. Use the separate nodes to re-drag cheaply "
                   "(ComfyUI then reuses the LoRA and the inversion).")
    CATEGORY = "drag editing"
    FUNCTION = "edit"
    RETURN_TYPES = ("IMAGE", "LATENT", "MODEL", "IMAGE", "STRING")
    RETURN_NAMES = ("image", "latent", "model", "trajectory", "settings")
    OUTPUT_TOOLTIPS = ("The edited image.", "The edited clean latent.",
                       "The MODEL with the identity LoRA applied (the input MODEL when the LoRA is off).",
                       "The input with each handle's tracked path.",
                       "Every setting used, with its source.")

    @classmethod
    def INPUT_TYPES(cls):
        return {
            "required": {
                "model": ("MODEL", {"tooltip": "An SD 1.x/2.x model, as loaded."}),
                "vae": ("VAE", {"tooltip": "The checkpoint's VAE."}),
                "image": ("IMAGE", {"tooltip": "The image to edit."}),
                "conditioning": ("CONDITIONING", {"tooltip": "A prompt describing the image (empty works)."}),
                "points": ("DRAG_POINTS", {"tooltip": "Handle/target pairs from Drag Point Picker."}),
                "preset": METHOD_INPUTS["preset"],
                "identity_lora": ("BOOLEAN", {"default": True, "tooltip":
                                  "Fine-tune the identity LoRA first (all papers do; off is faster but "
                                  "changes the image more)."}),
                "seed": ("INT", {"default": 0, "min": 0, "max": 0xFFFFFFFFFFFFFFFF,
                                 "tooltip": "Seed of the LoRA training."}),
            },
            "optional": {
                "mask": ("MASK", {"tooltip": "Region allowed to change (1 = editable). None: the whole image."}),
                "tracker": METHOD_INPUTS["tracker"],
                "supervision": METHOD_INPUTS["supervision"],
                "schedule": METHOD_INPUTS["schedule"],
                "overrides": OVERRIDES_INPUT,
            },
        }

    def edit(self, model, vae, image, conditioning, points, preset, identity_lora, seed, mask=None,
             tracker=PRESET_DEFAULT, supervision=PRESET_DEFAULT, schedule=PRESET_DEFAULT, overrides="{}"):
        with located(NODE_NAME), stage_memory():
            config = configure(preset, tracker, supervision, schedule, overrides)
            lora = rules.replace(config.lora, seed=seed % 2 ** 63) if identity_lora else None
            config = rules.replace(config, lora=lora)
            expect_drag_points(points)
            img = image_from_comfy(image)
            h, w = img.shape[-2:]
            user_mask = mask_from_comfy(mask, (h, w))
            checked = plan(lambda: diffusion_model_from_comfy(model, vae), config,
                           STAGES if identity_lora else STAGES[1:], image_hw=(h, w), points=points, mask=user_mask,
                           cond=lambda: conditioning_from_comfy(conditioning), set_by=overridden(overrides))
            cond = checked.cond
            dm = checked.model
            with Progress(checked.stages, model, (h, w)) as progress:
                result = run_edit(dm, img, points, cond, config, user_mask, progress)
            out_model = model
            if result.lora is not None:
                out_model, _ = apply_identity_lora(model, result.lora, NODE_NAME)
            preview = trajectory_image(img, result.drag.history, points.targets, user_mask)
        settings = presets.describe_text(preset, config)
        if not identity_lora:
            settings = "identity LoRA: off (the identity_lora input)\n" + settings
        return (image_to_comfy(result.image), latent_to_comfy(model, result.latent), out_model, preview, settings)


NODE_CLASS_MAPPINGS = {"DragEdit": DragEdit}
NODE_DISPLAY_NAME_MAPPINGS = {"DragEdit": NODE_NAME}
