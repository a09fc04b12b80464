"""Drag Auto Mask: AdaptiveDrag's superpixel mask, without drawing (drag_ops/automask.py).

SLIC superpixels over the diffusion model's own decoder features of the image (the paper uses
SAM 2 features; no SAM weights are available to the pack), keeping the superpixels under the
handles and along each handle-to-target path.
"""

from __future__ import annotations

from comfy_api.latest import io

from ..drag_ops import rules
from ..drag_ops.automask import AutoMaskSettings
from ..drag_ops.plan import MASK, plan
from ..drag_ops.presets import EditConfig
from .auto_mask_engine import compute_auto_mask
from .bridge import conditioning_from_comfy, diffusion_model_from_comfy
from .runtime import expect_drag_points, image_from_comfy, located, mask_from_comfy, stage_memory
from .types import CATEGORY, DRAG_POINTS

NODE_NAME = "Drag Auto Mask"


class DragAutoMask(io.ComfyNode):
    @classmethod
    def define_schema(cls) -> io.Schema:
        return io.Schema(
            node_id="DragAutoMask",
            display_name=NODE_NAME,
            category=CATEGORY,
            description=("AdaptiveDrag's auto-mask: superpixels (SLIC) over the diffusion model's own features of "
                         "the image, keeping those under the handles and along each handle-to-target path, smoothed "
                         "and grown. No mask drawing needed. (The paper clusters SAM 2 features; this pack has no "
                         "SAM weights and uses the checkpoint's UNet decoder features instead.)"),
            inputs=[
                io.Model.Input("model", tooltip=("The checkpoint whose UNet features describe the image (the same "
                                                 "MODEL as the drag, identity LoRA included, fits best).")),
                io.Vae.Input("vae", tooltip="The checkpoint's VAE, to encode the image."),
                io.Image.Input("image", tooltip="The image to edit."),
                DRAG_POINTS.Input("points", tooltip="Handle/target pairs from Drag Point Picker."),
                io.Int.Input("n_segments", default=200, min=2, max=5000, tooltip=(
                    "About how many superpixels to cut the image into (AdaptiveDrag: 200). Fewer: larger kept "
                    "regions.")),
                io.Boolean.Input("use_colour", default=True, tooltip=(
                    "Add the image's colour (CIELAB, weight 0.5) to the model features. Off: features alone, as "
                    "the paper (which uses SAM 2 features).")),
                io.Int.Input("dilation", default=-1, min=-1, max=512, tooltip=(
                    "Pixels the kept region grows by, so the moved object's edge may change too. -1: two latent "
                    "pixels (16 px on SD).")),
                io.Mask.Input("mask", optional=True, tooltip=(
                    "Optional region to intersect with (1 = may change), e.g. from a segmentation node or the "
                    "point picker.")),
                io.Conditioning.Input("conditioning", optional=True, tooltip=(
                    "Optional prompt for the feature pass; without it an empty (zero) text context is used.")),
            ],
            outputs=[
                io.Mask.Output(display_name="mask", tooltip=(
                    "Region allowed to change (1 = editable), for the drag optimizer or any MASK input.")),
                io.Image.Output(display_name="preview", tooltip=(
                    "The image with superpixel boundaries (cyan), the kept region tinted and the drag arrows.")),
            ],
        )

    @classmethod
    def execute(cls, model, vae, image, points, n_segments, use_colour, dilation, mask=None,
                conditioning=None) -> io.NodeOutput:
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
            dm = checked.model
            out_mask, preview, _ = compute_auto_mask(dm, img.to(dm.device), points, checked.cond, user_mask, settings)
        return io.NodeOutput(out_mask.cpu(), preview)
