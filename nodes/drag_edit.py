"""Drag Edit: the whole edit in one node (identity LoRA, inversion, drag, reference sampling)."""

from __future__ import annotations

from comfy_api.latest import io

from ..drag_ops import families, rules
from ..drag_ops.pipeline import run_edit
from ..drag_ops.plan import STAGES, plan
from .bridge import apply_identity_lora, conditioning_from_comfy, diffusion_model_from_comfy
from ..drag_ops.one_pass_presets import ONE_PASS_PRESETS
from .drag_optimize import overrides_input, preset_input, strategy_inputs
from .method import PRESET_DEFAULT, configure, configure_one_pass, overridden
from .one_pass import run_one_pass_node
from .runtime import (Progress, expect_drag_points, image_from_comfy, image_to_comfy, latent_to_comfy, located,
                      mask_from_comfy, stage_memory, trajectory_image)
from .types import CATEGORY, DRAG_POINTS

NODE_NAME = "Drag Edit"


class DragEdit(io.ComfyNode):
    @classmethod
    def define_schema(cls) -> io.Schema:
        return io.Schema(
            node_id="DragEdit",
            display_name=NODE_NAME,
            category=CATEGORY,
            description=("Drag editing in one box: trains the identity LoRA, inverts, drags with the chosen paper's "
                         "preset and samples under reference control. Use the separate nodes to re-drag cheaply "
                         "(ComfyUI then reuses the LoRA and the inversion)."),
            inputs=[
                io.Model.Input("model", tooltip="An SD 1.x/2.x or SDXL model, as loaded."),
                io.Vae.Input("vae", tooltip="The checkpoint's VAE."),
                io.Image.Input("image", tooltip="The image to edit."),
                io.Conditioning.Input("conditioning", tooltip="A prompt describing the image (empty works)."),
                DRAG_POINTS.Input("points", tooltip="Handle/target pairs from Drag Point Picker."),
                preset_input(one_pass=True),
                io.Boolean.Input("identity_lora", default=True, tooltip=(
                    "Fine-tune the identity LoRA first (all papers do; off is faster but changes the image "
                    "more).")),
                io.Int.Input("seed", default=0, min=0, max=0xFFFFFFFFFFFFFFFF, tooltip="Seed of the LoRA training."),
                io.Mask.Input("mask", optional=True,
                              tooltip="Region allowed to change (1 = editable). None: the whole image."),
                *strategy_inputs(optional=True),
                overrides_input(),
            ],
            outputs=[
                io.Image.Output(display_name="image", tooltip="The edited image."),
                io.Latent.Output(display_name="latent", tooltip="The edited clean latent."),
                io.Model.Output(display_name="model", tooltip=(
                    "The MODEL with the identity LoRA applied (the input MODEL when the LoRA is off).")),
                io.Image.Output(display_name="trajectory", tooltip="The input with each handle's tracked path."),
                io.String.Output(display_name="settings", tooltip="Every setting used, with its source."),
            ],
        )

    @classmethod
    def execute(cls, model, vae, image, conditioning, points, preset, identity_lora, seed, mask=None,
                tracker=PRESET_DEFAULT, supervision=PRESET_DEFAULT, schedule=PRESET_DEFAULT,
                overrides="{}") -> io.NodeOutput:
        if preset in ONE_PASS_PRESETS:
            return cls._one_pass(model, vae, image, conditioning, points, preset, mask, overrides,
                                 dict(tracker=tracker, supervision=supervision, schedule=schedule))
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
            config = checked.config  # with the model family's values (SDXL: drag_ops/families.py)
            with Progress(checked.stages, model, (h, w)) as progress:
                result = run_edit(checked.model, img, points, checked.cond, config, user_mask, progress,
                                  set_by=overridden(overrides))
            out_model = model
            if result.lora is not None:
                out_model, _ = apply_identity_lora(model, result.lora, NODE_NAME)
            preview = trajectory_image(img, result.drag.history, points.targets, user_mask)
        settings = families.describe_text(preset, config, checked.model.network)
        if not identity_lora:
            settings = "identity LoRA: off (the identity_lora input)\n" + settings
        return io.NodeOutput(image_to_comfy(result.image), latent_to_comfy(model, result.latent), out_model, preview,
                             settings)

    @classmethod
    def _one_pass(cls, model, vae, image, conditioning, points, preset, mask, overrides, strategies) -> io.NodeOutput:
        """FastDrag, RegionDrag: no LoRA and no drag loop (drag_ops/one_pass.py), as Drag One-Pass Edit."""
        with located(NODE_NAME), stage_memory():
            config = configure_one_pass(preset, overrides, strategies)
            result, img, user_mask, network = run_one_pass_node(model, vae, image, conditioning, points, config, mask)
            preview = trajectory_image(img, result.drag.history, points.targets, user_mask)
        settings = (f"identity LoRA: none ({preset} is training-free; the identity_lora input is not used)\n"
                    + families.describe_text(preset, config, network))
        return io.NodeOutput(image_to_comfy(result.image), latent_to_comfy(model, result.latent), model, preview,
                             settings)
