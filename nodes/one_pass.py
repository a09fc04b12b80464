"""Drag One-Pass Edit: a training-free drag in seconds (FastDrag's latent warp, RegionDrag's region copy)."""

from __future__ import annotations

from comfy_api.latest import io

from ..drag_ops import families
from ..drag_ops.one_pass import plan_one_pass, run_one_pass
from ..drag_ops.one_pass_presets import ONE_PASS_PRESETS
from .bridge import conditioning_from_comfy, diffusion_model_from_comfy, identity_lora_text
from .drag_optimize import overrides_input
from .method import configure_one_pass
from .runtime import (Progress, expect_drag_points, image_from_comfy, image_to_comfy, latent_to_comfy, located,
                      mask_from_comfy, stage_memory, trajectory_image)
from .types import CATEGORY, DRAG_POINTS

NODE_NAME = "Drag One-Pass Edit"

ONE_PASS_TOOLTIP = ("FastDrag: the inverted latent warped like a stretched sheet from each handle (the mask is the "
                    "region that stretches), 10 DDIM steps. RegionDrag: the masked region under each handle copied "
                    "onto where its points send it at every step of a 20-step DDPM pass; outside the mask the "
                    "input stays. Neither trains or optimises anything.")


def run_one_pass_node(model, vae, image, conditioning, points, config, mask):
    """What Drag One-Pass Edit and Drag Edit (with a one-pass preset) do, inside their located(): check
    everything, run, convert back. Returns (EditResult, engine image, user mask, the engine's network)."""
    expect_drag_points(points)
    img = image_from_comfy(image)
    h, w = img.shape[-2:]
    user_mask = mask_from_comfy(mask, (h, w))
    dm = diffusion_model_from_comfy(model, vae, config.num_steps)  # loads nothing: its checks come first
    cond = conditioning_from_comfy(conditioning)
    _, _, stages = plan_one_pass(dm, config, (h, w), points, user_mask, cond)
    with Progress(stages, model, (h, w)) as progress:
        result = run_one_pass(dm, img, points, cond, config, user_mask, progress)
    return result, img, user_mask, dm.network


class DragOnePassEdit(io.ComfyNode):
    @classmethod
    def define_schema(cls) -> io.Schema:
        return io.Schema(
            node_id="DragOnePassEdit",
            display_name=NODE_NAME,
            category=CATEGORY,
            description=("A training-free drag: inverts the image, moves its inverted latent (FastDrag's warp or "
                         "RegionDrag's region copy) and samples once while reading the inversion's self-attention. "
                         "No LoRA, no optimisation: seconds instead of a minute. Connect a MODEL from Drag Identity "
                         "LoRA to add one."),
            inputs=[
                io.Model.Input("model", tooltip="An SD 1.x/2.x or SDXL model, as loaded (or with an identity LoRA)."),
                io.Vae.Input("vae", tooltip="The checkpoint's VAE."),
                io.Image.Input("image", tooltip="The image to edit."),
                io.Conditioning.Input("conditioning", tooltip="A prompt describing the image (empty works)."),
                DRAG_POINTS.Input("points", tooltip="Handle/target pairs from Drag Point Picker."),
                io.Combo.Input("preset", options=list(ONE_PASS_PRESETS), default="FastDrag", tooltip=ONE_PASS_TOOLTIP),
                io.Mask.Input("mask", optional=True, tooltip=(
                    "FastDrag: the region that stretches; RegionDrag: the regions to move (each part under a "
                    "handle) and what may change. None: the whole image.")),
                overrides_input(),
            ],
            outputs=[
                io.Image.Output(display_name="image", tooltip="The edited image."),
                io.Latent.Output(display_name="latent", tooltip="The edited clean latent (e.g. for a KSampler refine)."),
                io.Image.Output(display_name="trajectory", tooltip="The input with each handle's move drawn."),
                io.String.Output(display_name="settings", tooltip="Every setting used, with its source."),
            ],
        )

    @classmethod
    def execute(cls, model, vae, image, conditioning, points, preset, mask=None, overrides="{}") -> io.NodeOutput:
        with located(NODE_NAME), stage_memory():
            config = configure_one_pass(preset, overrides)
            result, img, user_mask, network = run_one_pass_node(model, vae, image, conditioning, points, config, mask)
            preview = trajectory_image(img, result.drag.history, points.targets, user_mask)
        settings = identity_lora_text(model) + "\n" + families.describe_text(preset, config, network)
        return io.NodeOutput(image_to_comfy(result.image), latent_to_comfy(model, result.latent), preview, settings)

