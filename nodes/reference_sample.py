"""Drag Reference Sampler: denoise the dragged latent beside the original, sharing its attention."""

from __future__ import annotations

import torch
from comfy_api.latest import io

from ..drag_ops import rules
from ..drag_ops.pipeline import sample_stage
from ..drag_ops.plan import plan
from ..drag_ops.reference import ReferenceControl
from .bridge import conditioning_from_comfy, diffusion_model_with_codec
from .runtime import Progress, image_to_comfy, latent_to_comfy, located, stage_memory
from .types import CATEGORY, DRAG_INVERSION, DRAG_RESULT
from .values import check_drag_of, check_inversion

NODE_NAME = "Drag Reference Sampler"


class DragReferenceSampler(io.ComfyNode):
    @classmethod
    def define_schema(cls) -> io.Schema:
        return io.Schema(
            node_id="DragReferenceSampler",
            display_name=NODE_NAME,
            category=CATEGORY,
            description=("Denoises the dragged latent together with the original one. In the decoder's "
                         "self-attention the edited image reads the original's keys and values (mutual "
                         "self-attention), so it keeps the original's look; cross-attention is untouched."),
            inputs=[
                io.Model.Input("model", tooltip="The same MODEL the drag used (with the identity LoRA)."),
                DRAG_INVERSION.Input("inversion", tooltip="From Drag DDIM Inversion."),
                DRAG_RESULT.Input("drag", tooltip="From Drag Latent Optimizer."),
                io.Conditioning.Input("conditioning", tooltip="The prompt used for inversion and drag."),
                io.Boolean.Input("reference_attention", default=True, tooltip=(
                    "Share the original's keys/values in decoder self-attention. Off: plain DDIM sampling of the "
                    "edited latent.")),
                io.Int.Input("start_block", default=-1, min=-1, max=69, tooltip=(
                    "First transformer block (counted down, mid, up) under reference control. -1: the blocks of "
                    "the last two decoder levels (10..15 on SD 1.5), on SDXL those of up_blocks[1] (64..69). "
                    "A block the model does not have is refused before anything runs.")),
            ],
            outputs=[
                io.Latent.Output(display_name="latent",
                                 tooltip="The edited clean latent (e.g. for a KSampler refine pass)."),
                io.Image.Output(display_name="image", tooltip="The edited image."),
                io.Image.Output(display_name="reconstruction", tooltip=(
                    "The original branch decoded: what the model makes of the unedited image.")),
            ],
        )

    @classmethod
    def execute(cls, model, inversion, drag, conditioning, reference_attention, start_block) -> io.NodeOutput:
        with located(NODE_NAME), stage_memory():
            check_drag_of(check_inversion(inversion), drag)
            control = None
            if reference_attention:
                control = rules.build(ReferenceControl, start_block=None if start_block < 0 else start_block)
            config = rules.replace(drag.config, reference=control)
            chosen = {"reference.start_block": "start_block"} if control and control.start_block is not None else {}
            # what the user set at the optimizer stays; the reference control is this node's own
            kept = {path: by for path, by in drag.set_by.items() if not path.startswith("reference.")}
            checked = plan(lambda: diffusion_model_with_codec(model, inversion.codec, inversion.num_steps), config,
                           ("sample",), cond=lambda: conditioning_from_comfy(conditioning),
                           sample_from=drag.result.step_index, set_by={**kept, **chosen})
            dm = checked.model
            with Progress(checked.stages, model, inversion.image_hw) as progress:
                original, edited = sample_stage(dm, inversion.trajectory, drag.result, checked.cond, checked.config,
                                                progress)
            images = dm.codec.decode(torch.cat([edited, original]))
        return io.NodeOutput(latent_to_comfy(model, edited), image_to_comfy(images[:1]), image_to_comfy(images[1:]))
