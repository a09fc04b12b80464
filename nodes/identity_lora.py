"""Drag Identity LoRA: fine-tune a LoRA on the image so inversion and sampling keep its identity."""

from __future__ import annotations

from ..drag_ops import rules
from ..drag_ops.lora import LoraSettings, train_identity_lora
from ..drag_ops.plan import plan
from ..drag_ops.presets import EditConfig
from .bridge import apply_identity_lora, conditioning_from_comfy, diffusion_model_from_comfy
from .runtime import Progress, image_from_comfy, located, stage_memory

NODE_NAME = "Drag Identity LoRA"


class DragIdentityLoRA:
    DESCRIPTION = ("Trains a small LoRA on this one image (DragDiffusion's identity-preserving fine-tune) and "
                   "returns the MODEL with it applied, like LoraLoader would. Optionally saves it as a "
                   ".safetensors LoRA into models/loras for reuse with the stock LoraLoader.")
    CATEGORY = "drag editing"
    FUNCTION = "train"
    RETURN_TYPES = ("MODEL", "STRING")
    RETURN_NAMES = ("model", "lora_name")
    OUTPUT_TOOLTIPS = ("The input MODEL with the identity LoRA applied as an ordinary patch.",
                       "File name of the saved LoRA in models/loras ('' when not saved).")

    @classmethod
    def INPUT_TYPES(cls):
        d = LoraSettings()
        return {"required": {
            "model": ("MODEL", {"tooltip": "An SD 1.x/2.x model, as loaded (LoRA stacks and merges are kept)."}),
            "vae": ("VAE", {"tooltip": "The checkpoint's VAE, to encode the image."}),
            "image": ("IMAGE", {"tooltip": "The image to edit (one image; sides a multiple of 8 for SD)."}),
            "conditioning": ("CONDITIONING", {"tooltip": "The prompt describing the image (an empty prompt works)."}),
            "rank": ("INT", {"default": d.rank, "min": 1, "max": 256, "tooltip": "LoRA rank (DragDiffusion: 16)."}),
            "steps": ("INT", {"default": d.steps, "min": 1, "max": 10000,
                              "tooltip": "Training steps (DragDiffusion: 80; about 20 s on an A100)."}),
            "learning_rate": ("FLOAT", {"default": d.learning_rate, "min": 1e-6, "max": 1e-1, "step": 1e-5,
                                        "tooltip": "AdamW learning rate (DragDiffusion: 5e-4)."}),
            "batch_size": ("INT", {"default": d.batch_size, "min": 1, "max": 64,
                                   "tooltip": "Random crops of the image per step (DragDiffusion: 4)."}),
            "seed": ("INT", {"default": 0, "min": 0, "max": 0xFFFFFFFFFFFFFFFF,
                             "tooltip": "Seed for crops, noise and timesteps: same seed, same LoRA."}),
            "save_name": ("STRING", {"default": "", "tooltip":
                                     "When set, also save the LoRA to models/loras/<name>_00001.safetensors "
                                     "(numbered; an existing file is never overwritten). Empty: don't save."}),
        }}

    def train(self, model, vae, image, conditioning, rank, steps, learning_rate, batch_size, seed, save_name=""):
        with located(NODE_NAME), stage_memory():
            settings = rules.build(LoraSettings, rank=rank, steps=steps, learning_rate=learning_rate,
                                   batch_size=batch_size, seed=seed % 2 ** 63)
            img = image_from_comfy(image)
            hw = tuple(img.shape[-2:])
            checked = plan(lambda: diffusion_model_from_comfy(model, vae), EditConfig(lora=settings), ("lora",),
                           image_hw=hw, cond=lambda: conditioning_from_comfy(conditioning))
            cond = checked.cond
            dm = checked.model
            latent = dm.codec.encode(img)
            with Progress(checked.stages, model, hw) as progress:
                lora = train_identity_lora(dm, latent, cond, settings, progress)
            patched, name = apply_identity_lora(model, lora, NODE_NAME, save_name)
        return patched, name


NODE_CLASS_MAPPINGS = {"DragIdentityLoRA": DragIdentityLoRA}
NODE_DISPLAY_NAME_MAPPINGS = {"DragIdentityLoRA": NODE_NAME}
