"""Drag DDIM Inversion: the image's latent walked back along the DDIM path, kept whole."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from ..drag_ops import rules
from ..drag_ops.inversion import Trajectory, invert
from ..drag_ops.plan import plan
from ..drag_ops.presets import EditConfig
from .bridge import conditioning_from_comfy, diffusion_model_from_comfy
from .runtime import Progress, image_from_comfy, located, stage_memory

NODE_NAME = "Drag DDIM Inversion"


@dataclass
class Inversion:
    """What the drag and the sampler need from the original image (the DRAG_INVERSION type)."""

    trajectory: Trajectory
    num_steps: int
    image: torch.Tensor  # engine image [1, 3, H, W] in [-1, 1], for previews and metrics
    codec: object  # the VAE as the engine sees it, so later stages need no VAE input

    @property
    def image_hw(self) -> tuple[int, int]:
        return tuple(self.image.shape[-2:])


def latent_to_comfy(model_patcher, z: torch.Tensor) -> dict:
    """An engine latent (what the UNet sees) as a ComfyUI LATENT (the VAE's scale)."""
    return {"samples": model_patcher.get_model_object("latent_format").process_out(z.detach().float().cpu())}


class DragDDIMInversion:
    DESCRIPTION = ("DDIM-inverts the image (no CFG, VAE posterior mean) and keeps the whole original trajectory. "
                   "Invert once as far as the deepest preset you use: each drag preset picks its own strength "
                   "along the same path. Connect the MODEL with the identity LoRA.")
    CATEGORY = "drag editing"
    FUNCTION = "invert"
    RETURN_TYPES = ("DRAG_INVERSION", "LATENT")
    RETURN_NAMES = ("inversion", "latent")
    OUTPUT_TOOLTIPS = ("The original trajectory, for the drag optimizer and the reference sampler.",
                       "The inverted (noisy) latent at max_strength.")

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {
            "model": ("MODEL", {"tooltip": "The model to invert with, normally with the identity LoRA applied."}),
            "vae": ("VAE", {"tooltip": "The checkpoint's VAE."}),
            "image": ("IMAGE", {"tooltip": "The image to edit."}),
            "conditioning": ("CONDITIONING", {"tooltip": "The prompt (the same one the LoRA was trained with)."}),
            "max_strength": ("FLOAT", {"default": 0.8, "min": 0.02, "max": 1.0, "step": 0.01, "tooltip":
                                       "How far to invert, as a fraction of the DDIM steps. Presets use 0.7 "
                                       "(DragDiffusion, FreeDrag, StableDrag), 0.75 (GoodDrag), 0.8 (AdaptiveDrag)."}),
            "num_steps": ("INT", {"default": 50, "min": 2, "max": 1000,
                                  "tooltip": "DDIM steps of the whole schedule (all papers: 50)."}),
        }}

    def invert(self, model, vae, image, conditioning, max_strength, num_steps):
        with located(NODE_NAME), stage_memory():
            config = rules.build(EditConfig, {"inversion_strength": "max_strength"}, inversion_strength=max_strength)
            img = image_from_comfy(image)
            hw = tuple(img.shape[-2:])
            checked = plan(lambda: diffusion_model_from_comfy(model, vae, num_steps), config, ("invert",),
                           image_hw=hw, cond=lambda: conditioning_from_comfy(conditioning))
            cond = checked.cond
            dm = checked.model
            latent = dm.codec.encode(img)
            with Progress(checked.stages, model, hw) as progress:
                trajectory = invert(dm, latent, cond, max_strength, progress)
            trajectory = Trajectory(trajectory.latents.cpu())
        return Inversion(trajectory, num_steps, img.cpu(), dm.codec), latent_to_comfy(model, trajectory.start)


NODE_CLASS_MAPPINGS = {"DragDDIMInversion": DragDDIMInversion}
NODE_DISPLAY_NAME_MAPPINGS = {"DragDDIMInversion": NODE_NAME}
