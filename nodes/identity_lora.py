"""Drag Identity LoRA: fine-tune a LoRA on the image so inversion and sampling keep its identity."""

from __future__ import annotations

from comfy_api.latest import io

from ..drag_ops import rules
from ..drag_ops.lora import LoraSettings, train_identity_lora
from ..drag_ops.plan import plan
from ..drag_ops.presets import EditConfig
from .bridge import apply_identity_lora, conditioning_from_comfy, diffusion_model_from_comfy
from .runtime import Progress, image_from_comfy, located, stage_memory
from .types import CATEGORY

NODE_NAME = "Drag Identity LoRA"


class DragIdentityLoRA(io.ComfyNode):
    @classmethod
    def define_schema(cls) -> io.Schema:
        d = LoraSettings()
        return io.Schema(
            node_id="DragIdentityLoRA",
            display_name=NODE_NAME,
            category=CATEGORY,
            description=("Trains a small LoRA on this one image (DragDiffusion's identity-preserving fine-tune) and "
                         "returns the MODEL with it applied, like LoraLoader would. Optionally saves it as a "
                         ".safetensors LoRA into models/loras for reuse with the stock LoraLoader."),
            inputs=[
                io.Model.Input("model", tooltip=(
                    "An SD 1.x/2.x or SDXL model, as loaded (LoRA stacks and merges are kept).")),
                io.Vae.Input("vae", tooltip="The checkpoint's VAE, to encode the image."),
                io.Image.Input("image", tooltip="The image to edit (one image; sides a multiple of 8 for SD)."),
                io.Conditioning.Input("conditioning",
                                      tooltip="The prompt describing the image (an empty prompt works)."),
                io.Int.Input("rank", default=d.rank, min=1, max=256, tooltip="LoRA rank (DragDiffusion: 16)."),
                io.Int.Input("steps", default=d.steps, min=1, max=10000,
                             tooltip="Training steps (DragDiffusion: 80; about 20 s on an A100)."),
                io.Float.Input("learning_rate", default=d.learning_rate, min=1e-6, max=1e-1, step=1e-5,
                               tooltip="AdamW learning rate (DragDiffusion: 5e-4)."),
                io.Int.Input("batch_size", default=d.batch_size, min=1, max=64,
                             tooltip="Random crops of the image per step (DragDiffusion: 4)."),
                io.Int.Input("seed", default=0, min=0, max=0xFFFFFFFFFFFFFFFF,
                             tooltip="Seed for crops, noise and timesteps: same seed, same LoRA."),
                io.String.Input("save_name", default="", tooltip=(
                    "When set, also save the LoRA to models/loras/<name>_00001.safetensors "
                    "(numbered; an existing file is never overwritten). Empty: don't save.")),
            ],
            outputs=[
                io.Model.Output(display_name="model",
                                tooltip="The input MODEL with the identity LoRA applied as an ordinary patch."),
                io.String.Output(display_name="lora_name",
                                 tooltip="File name of the saved LoRA in models/loras ('' when not saved)."),
            ],
        )

    @classmethod
    def execute(cls, model, vae, image, conditioning, rank, steps, learning_rate, batch_size, seed,
                save_name="") -> io.NodeOutput:
        with located(NODE_NAME), stage_memory():
            settings = rules.build(LoraSettings, rank=rank, steps=steps, learning_rate=learning_rate,
                                   batch_size=batch_size, seed=seed % 2 ** 63)
            img = image_from_comfy(image)
            hw = tuple(img.shape[-2:])
            checked = plan(lambda: diffusion_model_from_comfy(model, vae), EditConfig(lora=settings), ("lora",),
                           image_hw=hw, cond=lambda: conditioning_from_comfy(conditioning))
            dm = checked.model
            latent = dm.codec.encode(img)
            with Progress(checked.stages, model, hw) as progress:
                lora = train_identity_lora(dm, latent, checked.cond, settings, progress)
            patched, name = apply_identity_lora(model, lora, NODE_NAME, save_name)
        return io.NodeOutput(patched, name)
