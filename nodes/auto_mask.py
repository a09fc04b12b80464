"""Drag Auto Mask: AdaptiveDrag's superpixel mask, without drawing (drag_ops/automask.py).

SLIC superpixels over the diffusion model's own decoder features of the image (the paper uses
SAM 2 features; no SAM weights are available to the pack), keeping the superpixels under the
handles and along each handle-to-target path. No ComfyUI import at module level.
"""

from __future__ import annotations

import numpy as np
import torch
from PIL import Image

from ..drag_ops import rules
from ..drag_ops.automask import AutoMaskSettings, boundaries_preview, make_auto_mask
from ..drag_ops.model import Conditioning, DiffusionModel
from ..drag_ops.pipeline import check_image
from ..drag_ops.plan import MASK, plan
from ..drag_ops.points import DragPoints, parse_points
from ..drag_ops.presets import EditConfig
from .bridge import conditioning_from_comfy, diffusion_model_from_comfy
from .runtime import draw_points, expect_drag_points, image_from_comfy, located, mask_from_comfy, stage_memory

NODE_NAME = "Drag Auto Mask"
EMPTY_TOKENS = 77


def empty_conditioning(model: DiffusionModel) -> Conditioning:
    """A zero text context: the features only need to see the image."""
    context = torch.zeros(1, EMPTY_TOKENS, model.network.context_width)
    return Conditioning(context.to(model.device), native=[[context, {}]])


def compute_auto_mask(model: DiffusionModel, image: torch.Tensor, points: DragPoints, cond: Conditioning | None = None,
                      user_mask: torch.Tensor | None = None, settings: AutoMaskSettings = AutoMaskSettings()):
    """Engine side of the node: image [1, 3, H, W] in [-1, 1], points in image pixels, user_mask [H, W]
    or None. Returns (mask [1, H, W] float, preview [1, H, W, 3] in [0, 1], labels [H, W])."""
    hw = check_image(image, model)
    points = parse_points(points, hw[1], hw[0])
    cond = cond if cond is not None else empty_conditioning(model)
    mask, labels = make_auto_mask(model, image, cond, points, user_mask, settings)
    preview = boundaries_preview(image, labels, mask)
    pil = Image.fromarray((preview.numpy() * 255).round().astype(np.uint8))
    pil = draw_points(pil, points.handles, points.targets)
    preview = torch.from_numpy(np.asarray(pil, dtype=np.float32) / 255.0)
    return mask[None], preview[None], labels


class DragAutoMask:
    DESCRIPTION = ("AdaptiveDrag's auto-mask: superpixels (SLIC) over the diffusion model's own features of the "
                   "image, keeping those under the handles and along each handle-to-target path, smoothed and "
                   "grown. No mask drawing needed. (The paper clusters SAM 2 features; this pack has no SAM "
                   "weights and uses the checkpoint's UNet decoder features instead.)")
    CATEGORY = "drag editing"
    FUNCTION = "make_mask"
    RETURN_TYPES = ("MASK", "IMAGE")
    RETURN_NAMES = ("mask", "preview")
    OUTPUT_TOOLTIPS = ("Region allowed to change (1 = editable), for the drag optimizer or any MASK input.",
                       "The image with superpixel boundaries (cyan), the kept region tinted and the drag arrows.")

    @classmethod
    def INPUT_TYPES(cls):
        return {
            "required": {
                "model": ("MODEL", {"tooltip": "The checkpoint whose UNet features describe the image "
                                               "(the same MODEL as the drag, identity LoRA included, fits best)."}),
                "vae": ("VAE", {"tooltip": "The checkpoint's VAE, to encode the image."}),
                "image": ("IMAGE", {"tooltip": "The image to edit."}),
                "points": ("DRAG_POINTS", {"tooltip": "Handle/target pairs from Drag Point Picker."}),
                "n_segments": ("INT", {"default": 200, "min": 2, "max": 5000, "tooltip":
                                       "About how many superpixels to cut the image into (AdaptiveDrag: 200). "
                                       "Fewer: larger kept regions."}),
                "use_colour": ("BOOLEAN", {"default": True, "tooltip":
                                           "Add the image's colour (CIELAB, weight 0.5) to the model features. "
                                           "Off: features alone, as the paper (which uses SAM 2 features)."}),
                "dilation": ("INT", {"default": -1, "min": -1, "max": 512, "tooltip":
                                     "Pixels the kept region grows by, so the moved object's edge may change "
                                     "too. -1: two latent pixels (16 px on SD)."}),
            },
            "optional": {
                "mask": ("MASK", {"tooltip": "Optional region to intersect with (1 = may change), e.g. from a "
                                             "segmentation node or the point picker."}),
                "conditioning": ("CONDITIONING", {"tooltip": "Optional prompt for the feature pass; without it "
                                                             "an empty (zero) text context is used."}),
            },
        }

    def make_mask(self, model, vae, image, points, n_segments, use_colour, dilation, mask=None, conditioning=None):
        with located(NODE_NAME), stage_memory():
            expect_drag_points(points)
            settings = rules.build(AutoMaskSettings, n_segments=n_segments,
                                   colour_weight=AutoMaskSettings.colour_weight if use_colour else 0.0,
                                   dilation=None if dilation < 0 else dilation)
            img = image_from_comfy(image)
            hw = tuple(img.shape[-2:])
            user_mask = mask_from_comfy(mask, hw)
            checked = plan(lambda: diffusion_model_from_comfy(model, vae), EditConfig(lora=None, auto_mask=settings),
                           (MASK,), image_hw=hw, points=points, mask=user_mask,
                           cond=lambda: conditioning_from_comfy(conditioning) if conditioning is not None else None)
            cond = checked.cond
            dm = checked.model
            out_mask, preview, _ = compute_auto_mask(dm, img.to(dm.device), points, cond, user_mask, settings)
        return out_mask.cpu(), preview


NODE_CLASS_MAPPINGS = {"DragAutoMask": DragAutoMask}
NODE_DISPLAY_NAME_MAPPINGS = {"DragAutoMask": NODE_NAME}
