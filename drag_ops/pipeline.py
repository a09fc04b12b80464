"""The whole edit as one call: LoRA, inversion, drag, reference-controlled sampling, decode."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from .automask import AutoMaskSettings, make_auto_mask, superpixels_of_latent
from .drag import DraggedLatent, drag
from .errors import DragInputError
from .inversion import Trajectory, invert
from .lora import LoraWeights, train_identity_lora
from .model import Conditioning, DiffusionModel
from .one_pass import is_one_pass, run_one_pass
from .plan import STAGES, check_depth, check_image_size, plan
from .points import DragPoints
from .presets import EditConfig
from .progress import Callback
from .reference import sample


@dataclass
class EditResult:
    image: torch.Tensor  # [1, 3, H, W] in [-1, 1]
    latent: torch.Tensor  # [1, C, h, w] clean edited latent
    reconstruction: torch.Tensor  # [1, 3, H, W]: the original branch, for comparison
    drag: DraggedLatent
    trajectory: Trajectory
    lora: LoraWeights | None


def check_image(image: torch.Tensor, model: DiffusionModel) -> tuple[int, int]:
    if not torch.is_tensor(image) or image.dim() != 4 or image.shape[:2] != (1, 3):
        raise DragInputError(f"image must be [1, 3, H, W], got {tuple(getattr(image, 'shape', ()))}", input="image")
    hw = tuple(image.shape[-2:])
    check_image_size(hw, model)
    return hw


def truncate(trajectory: Trajectory, model: DiffusionModel, strength: float) -> Trajectory:
    """The trajectory up to a preset's inversion strength (an inversion to a larger strength
    passes through the same latents, so one inversion serves every preset)."""
    k = check_depth(model, strength, trajectory.steps)
    return Trajectory(trajectory.latents[:k + 1])


def editable_region(model: DiffusionModel, image: torch.Tensor, latent: torch.Tensor, cond: Conditioning,
                    points: DragPoints, mask: torch.Tensor | None, config: EditConfig):
    """(mask, superpixel labels or None): the preset's auto-mask (AdaptiveDrag) within the user's mask."""
    if config.auto_mask is None:
        return mask, None
    return make_auto_mask(model, image, cond, points, mask, config.auto_mask, latent)


def drag_stage(model: DiffusionModel, trajectory: Trajectory, cond: Conditioning, points: DragPoints,
               image_hw: tuple[int, int], mask: torch.Tensor | None, config: EditConfig,
               callback: Callback | None = None, regions: torch.Tensor | None = None) -> DraggedLatent:
    """The drag as a preset defines it, from a trajectory at least as deep as its strength.
    regions: superpixel labels [H, W] (the auto-mask's) for strategies that use them; if none are
    given they are computed with the preset's auto_mask settings."""
    parts = (config.tracker, config.supervision, config.schedule)
    if regions is None and any(p.uses_regions for p in parts):
        regions = superpixels_of_latent(model, trajectory.at(0), cond, config.auto_mask or AutoMaskSettings())
    return drag(model, truncate(trajectory, model, config.inversion_strength), cond, points, image_hw, mask,
                config.drag, config.tracker, config.supervision, config.schedule, callback, regions)


def sample_stage(model: DiffusionModel, trajectory: Trajectory, result: DraggedLatent, cond: Conditioning,
                 config: EditConfig, callback: Callback | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Reference-controlled sampling of the dragged latent; returns (original, edited) clean latents.
    With config.guidance (AdaptiveDrag's CLoss) the edited branch is guided toward the input."""
    guidance = config.guidance
    bound = guidance.bind(model, cond, trajectory, result) if guidance is not None else None
    return sample(model, trajectory, result.latent, result.step_index, cond, config.reference, callback, bound,
                  result.original)


def run_edit(model: DiffusionModel, image: torch.Tensor, points: DragPoints, cond: Conditioning,
             config: EditConfig = EditConfig(), mask: torch.Tensor | None = None,
             callback: Callback | None = None, set_by: dict | None = None,
             lora: LoraWeights | None = None) -> EditResult:
    """Drag-edit one image [1, 3, H, W] in [-1, 1] (points in image pixels, mask [H, W] or None).
    With config.auto_mask the mask is the superpixel auto-mask (intersected with `mask` if given).
    On a model family made for other images than the papers' (SDXL) the config's papers' values take
    the family's (drag_ops/families.py), except the settings ``set_by`` names ({path: who set it}).
    Everything the stages would find wrong with the inputs is found before the first (:func:`.plan.plan`).
    lora: an identity LoRA trained already on this image with config.lora's settings (EditResult.lora
    of an earlier edit, or :func:`.lora.train_identity_lora`), used instead of training it again:
    another drag of the same image skips the LoRA stage. One trained with other settings is refused.
    A one-pass preset (FastDrag, RegionDrag: a OnePassConfig) runs :func:`.one_pass.run_one_pass` instead."""
    if is_one_pass(config):
        if lora is not None:
            raise DragInputError("a training-free preset (FastDrag, RegionDrag) takes no identity LoRA", input="lora")
        return run_one_pass(model, image, points, cond, config, mask, callback)
    image_hw = check_image(image, model)
    trains = config.lora is not None and lora is None
    config = plan(model, config, STAGES if trains else STAGES[1:], image_hw=image_hw, points=points,
                  mask=mask, cond=cond, set_by=set_by).config  # with the model family's values
    if lora is not None and (config.lora is None or lora.settings != config.lora):
        raise DragInputError(f"this LoRA was trained with {lora.settings}, the preset asks for {config.lora}: "
                             "pass a LoRA trained with the preset's lora settings, or none", input="lora")
    latent = model.codec.encode(image.to(model.device))
    if trains:
        lora = train_identity_lora(model, latent, cond, config.lora, callback)
    if lora is not None:
        model = model.with_lora(lora)
    mask, regions = editable_region(model, image, latent, cond, points, mask, config)
    trajectory = invert(model, latent, cond, config.inversion_strength, callback)
    result = drag_stage(model, trajectory, cond, points, image_hw, mask, config, callback, regions)
    original, edited = sample_stage(model, trajectory, result, cond, config, callback)
    decoded = model.codec.decode(torch.cat([edited, original]))
    return EditResult(decoded[:1], edited, decoded[1:], result, trajectory, lora)
