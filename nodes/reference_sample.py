"""Drag Reference Sampler: denoise the dragged latent beside the original, sharing its attention."""

from __future__ import annotations


import torch

from ..drag_ops import rules
from ..drag_ops.errors import DragInputError
from ..drag_ops.pipeline import sample_stage
from ..drag_ops.plan import plan
from ..drag_ops.reference import ReferenceControl
from .bridge import conditioning_from_comfy, diffusion_model_with_codec
from .drag_optimize import DragOutcome, check_inversion
from .invert import latent_to_comfy
from .runtime import Progress, image_to_comfy, located, stage_memory

NODE_NAME = "Drag Reference Sampler"


def check_drag_of(inversion, drag) -> None:
    """The drag must come from this inversion: same schedule, same original image, deep enough."""
    if not isinstance(drag, DragOutcome):
        raise DragInputError(f"expected DRAG_RESULT from Drag Latent Optimizer, got {type(drag).__name__}",
                             input="drag")
    origin = inversion.trajectory.at(0)
    same = (inversion.num_steps == drag.num_steps and drag.result.step_index <= inversion.trajectory.steps
            and drag.origin is not None and drag.origin.shape == origin.shape
            and torch.equal(drag.origin, origin.to(drag.origin.device)))
    if not same:
        raise DragInputError("this drag was made from another inversion (a different image, step count or "
                             "strength); connect the inversion the drag was made from", input="drag")


class DragReferenceSampler:
    DESCRIPTION = ("Denoises the dragged latent together with the original one. In the decoder's self-attention "
                   "the edited image reads the original's keys and values (mutual self-attention), so it keeps "
                   "the original's look; cross-attention is untouched.")
    CATEGORY = "drag editing"
    FUNCTION = "sample"
    RETURN_TYPES = ("LATENT", "IMAGE", "IMAGE")
    RETURN_NAMES = ("latent", "image", "reconstruction")
    OUTPUT_TOOLTIPS = ("The edited clean latent (e.g. for a KSampler refine pass).",
                       "The edited image.",
                       "The original branch decoded: what the model makes of the unedited image.")

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {
            "model": ("MODEL", {"tooltip": "The same MODEL the drag used (with the identity LoRA)."}),
            "inversion": ("DRAG_INVERSION", {"tooltip": "From Drag DDIM Inversion."}),
            "drag": ("DRAG_RESULT", {"tooltip": "From Drag Latent Optimizer."}),
            "conditioning": ("CONDITIONING", {"tooltip": "The prompt used for inversion and drag."}),
            "reference_attention": ("BOOLEAN", {"default": True, "tooltip":
                                                "Share the original's keys/values in decoder self-attention. "
                                                "Off: plain DDIM sampling of the edited latent."}),
            "start_block": ("INT", {"default": -1, "min": -1, "max": 64, "tooltip":
                                    "First transformer block (counted down, mid, up) under reference control. "
                                    "-1: the blocks of the last two decoder levels (10..15 on SD 1.5)."}),
        }}

    def sample(self, model, inversion, drag, conditioning, reference_attention, start_block):
        with located(NODE_NAME), stage_memory():
            check_drag_of(check_inversion(inversion), drag)
            control = None
            if reference_attention:
                control = rules.build(ReferenceControl, start_block=None if start_block < 0 else start_block)
            config = rules.replace(drag.config, reference=control)
            chosen = {"reference.start_block": "start_block"} if control and control.start_block is not None else {}
            checked = plan(lambda: diffusion_model_with_codec(model, inversion.codec, inversion.num_steps), config, ("sample",),
                           cond=lambda: conditioning_from_comfy(conditioning), sample_from=drag.result.step_index,
                           set_by=chosen)
            dm = checked.model
            with Progress(checked.stages, model, inversion.image_hw) as progress:
                original, edited = sample_stage(dm, inversion.trajectory, drag.result, checked.cond, config,
                                                progress)
            images = dm.codec.decode(torch.cat([edited, original]))
        return latent_to_comfy(model, edited), image_to_comfy(images[:1]), image_to_comfy(images[1:])


NODE_CLASS_MAPPINGS = {"DragReferenceSampler": DragReferenceSampler}
NODE_DISPLAY_NAME_MAPPINGS = {"DragReferenceSampler": NODE_NAME}
