"""The whole edit as one call: LoRA, inversion, drag, reference-controlled sampling, decode."""

from __future__ import annotations

from contextlib import nullcontext
from dataclasses import dataclass

import torch

from .drag import DragResult, drag
from .errors import DragInputError
from .inversion import Trajectory, invert
from .lora import LoraWeights, train_identity_lora
from .model import Conditioning, DiffusionModel
from .points import DragPoints
from .presets import EditConfig
from .progress import Callback
from .reference import sample


@dataclass
class EditResult:
    image: torch.Tensor  # [1, 3, H, W] in [-1, 1]
    latent: torch.Tensor  # [1, C, h, w] clean edited latent
    reconstruction: torch.Tensor  # [1, 3, H, W]: the original branch, for comparison
    drag: DragResult
    trajectory: Trajectory
    lora: LoraWeights | None


def check_image(image: torch.Tensor, model: DiffusionModel) -> tuple[int, int]:
    if not torch.is_tensor(image) or image.dim() != 4 or image.shape[:2] != (1, 3):
        raise DragInputError(f"image must be [1, 3, H, W], got {tuple(getattr(image, 'shape', ()))}", input="image")
    h, w = image.shape[-2:]
    m = model.size_multiple
    if h % m or w % m:
        raise DragInputError(f"image size {w}x{h} is not a multiple of {m} (VAE downscale x UNet "
                             "downsampling); resize or crop it", input="image")
    return h, w


def run_edit(model: DiffusionModel, image: torch.Tensor, points: DragPoints, cond: Conditioning,
             config: EditConfig = EditConfig(), mask: torch.Tensor | None = None,
             callback: Callback | None = None) -> EditResult:
    """Drag-edit one image [1, 3, H, W] in [-1, 1] (points in image pixels, mask [H, W] or None)."""
    image_hw = check_image(image, model)
    points.validate_in(image_hw[1], image_hw[0])
    latent = model.codec.encode(image.to(model.device))
    lora = train_identity_lora(model, latent, cond, config.lora, callback) if config.lora else None
    with lora.applied(model.unet) if lora else nullcontext():
        trajectory = invert(model, latent, cond, config.inversion_strength, callback)
        result = drag(model, trajectory, cond, points, image_hw, mask, config.drag,
                      config.tracker, config.supervision, config.schedule, callback)
        original, edited = sample(model, trajectory, result.latent, result.step_index, cond,
                                  config.reference, callback)
    decoded = model.codec.decode(torch.cat([edited, original]))
    return EditResult(decoded[:1], edited, decoded[1:], result, trajectory, lora)
