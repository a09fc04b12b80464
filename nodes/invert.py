"""Drag DDIM Inversion: the image's latent walked back along the DDIM path, kept whole."""

from __future__ import annotations

from comfy_api.latest import io

from ..drag_ops import rules
from ..drag_ops.inversion import Trajectory, invert
from ..drag_ops.plan import plan
from ..drag_ops.presets import EditConfig
from .bridge import conditioning_from_comfy, diffusion_model_from_comfy
from .runtime import Progress, image_from_comfy, latent_to_comfy, located, stage_memory
from .types import CATEGORY, DRAG_INVERSION
from .values import Inversion

NODE_NAME = "Drag DDIM Inversion"


class DragDDIMInversion(io.ComfyNode):
    @classmethod
    def define_schema(cls) -> io.Schema:
        return io.Schema(
            node_id="DragDDIMInversion",
            display_name=NODE_NAME,
            category=CATEGORY,
            description=("DDIM-inverts the image (no CFG, VAE posterior mean) and keeps the whole original "
                         "trajectory. Invert once as far as the deepest preset you use: each drag preset picks its "
                         "own strength along the same path. Connect the MODEL with the identity LoRA."),
            inputs=[
                io.Model.Input("model", tooltip="The model to invert with, normally with the identity LoRA applied."),
                io.Vae.Input("vae", tooltip="The checkpoint's VAE."),
                io.Image.Input("image", tooltip="The image to edit."),
                io.Conditioning.Input("conditioning", tooltip="The prompt (the same one the LoRA was trained with)."),
                io.Float.Input("max_strength", default=0.8, min=0.02, max=1.0, step=0.01, tooltip=(
                    "How far to invert, as a fraction of the DDIM steps. Presets use 0.7 (DragDiffusion, "
                    "FreeDrag, StableDrag), 0.75 (GoodDrag), 0.8 (AdaptiveDrag).")),
                io.Int.Input("num_steps", default=50, min=2, max=1000,
                             tooltip="DDIM steps of the whole schedule (all papers: 50)."),
            ],
            outputs=[
                DRAG_INVERSION.Output(display_name="inversion", tooltip=(
                    "The original trajectory, for the drag optimizer and the reference sampler.")),
                io.Latent.Output(display_name="latent", tooltip="The inverted (noisy) latent at max_strength."),
            ],
        )

    @classmethod
    def execute(cls, model, vae, image, conditioning, max_strength, num_steps) -> io.NodeOutput:
        with located(NODE_NAME), stage_memory():
            config = rules.build(EditConfig, {"inversion_strength": "max_strength"}, inversion_strength=max_strength)
            img = image_from_comfy(image)
            hw = tuple(img.shape[-2:])
            checked = plan(lambda: diffusion_model_from_comfy(model, vae, num_steps), config, ("invert",),
                           image_hw=hw, cond=lambda: conditioning_from_comfy(conditioning))
            dm = checked.model
            latent = dm.codec.encode(img)
            with Progress(checked.stages, model, hw) as progress:
                trajectory = invert(dm, latent, checked.cond, max_strength, progress)
            trajectory = Trajectory(trajectory.latents.cpu())
        return io.NodeOutput(Inversion(trajectory, num_steps, img.cpu(), dm.codec),
                             latent_to_comfy(model, trajectory.start))
