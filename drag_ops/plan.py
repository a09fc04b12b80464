"""The plan of an edit: every check that needs no stage to run, made before the first one.

A drag edit's first stage (the identity LoRA) takes minutes on a real model, so whatever can be
known from the inputs is checked first, in one place: the inputs against each other (points and
mask against the image), the conditioning and the config against the model's layout (the network's
layout: the nodes check before anything loads), and how many steps each
stage will take (the progress bar's layout). The nodes and :func:`~.pipeline.run_edit` call
:func:`plan`; the stages keep their own checks for callers of the engine's parts.

An error names the input at fault. Where the model lacks what a setting asks for (feature blocks,
self-attention layers, LoRA target modules), the setting's path decides: the input that set it
(``set_by``, e.g. {"drag.features.blocks": "overrides"}), else the model: the preset's value is
what SD 1.x/2.x have, and this MODEL is laid out otherwise.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Union

import torch

from . import families
from .automask import feature_blocks
from .drag import check_mask
from .errors import DragInputError
from .lora import check_targets
from .model import Conditioning, DiffusionModel
from .points import DragPoints

STAGES = ("lora", "invert", "drag", "sample")  # in the order an edit runs them; each reports progress
MASK = "mask"  # the auto-mask alone (Drag Auto Mask): checked like the drag's, reports no progress


@dataclass(frozen=True)
class Plan:
    model: DiffusionModel  # the model checked, for the stages to run on
    stages: dict  # {stage: steps} of the stages that will run, in order: a progress bar's layout
    mask: torch.Tensor | None  # the checked mask [H, W], 0/1 (None: all editable)
    cond: Conditioning | None  # the conditioning, checked against the model
    config: object = None  # the config with the model family's values (drag_ops/families.py), for the stages


def check_image_size(image_hw: tuple[int, int], model: DiffusionModel) -> None:
    h, w = image_hw
    m = model.size_multiple
    if h % m or w % m or h < m or w < m:
        raise DragInputError(f"image size {w}x{h}: both sides must be a non-zero multiple of {m} (VAE "
                             "downscale x UNet downsampling); resize or crop it", input="image")


def check_conditioning(cond: Conditioning, model: DiffusionModel, input: str = "conditioning") -> None:
    width = model.network.context_width
    if cond.context.dim() != 3 or cond.context.shape[-1] != width:
        raise DragInputError(f"conditioning width {cond.context.shape[-1]} does not fit the model's {width}: "
                             "encode the prompt with the CLIP of the same checkpoint", input=input)
    model.network.check_conditioning(cond, input)  # what else the family needs (SDXL's pooled prompt)


def check_depth(model: DiffusionModel, strength: float, available: int) -> int:
    """The inversion steps a strength needs, if an inversion of `available` steps has them."""
    k = model.schedule.steps_for_strength(strength)
    if k > available:
        raise DragInputError(f"inversion strength {strength} needs {k} inversion steps but only "
                             f"{available} were done; invert with a larger strength", input="inversion")
    return k


def plan(model: Union[DiffusionModel, Callable[[], DiffusionModel]], config, stages=STAGES, *,
         image_hw: tuple[int, int] | None = None, points: DragPoints | None = None,
         mask: torch.Tensor | None = None, cond: Union[Conditioning, Callable[[], Conditioning], None] = None,
         inverted: int | None = None,
         sample_from: int | None = None, set_by: dict | None = None) -> Plan:
    """Check everything an edit of `stages` (of STAGES, or MASK) can check before it runs; return
    each stage's step count.

    model: the DiffusionModel (only its layout is read), or a function making it, called once the
      points and the mask have passed (so they are reported as such, whatever else is wrong);
      the plan holds it for the stages.
    image_hw, points, mask [H, W] (1 = editable) or None.
    cond: the Conditioning, or a function converting it (called after the model), checked against
      the model's context width.
    inverted: inversion steps an existing inversion holds; sample_from: the step index sampling
      starts from, when known (else: the inversion's, less the denoising steps a schedule takes).
    set_by: {setting path: the input that set it}; a setting the model cannot take blames that input,
      and the model family's values (:func:`.families.adapt`) leave it as it was set. The stages run
      with the plan's config, which holds the family's values.
    """
    if points is not None:
        if len(points) == 0:
            raise DragInputError("no points given", input="points")
        if image_hw is not None:
            points.validate_in(image_hw[1], image_hw[0])
    mask = check_mask(mask, image_hw) if image_hw is not None else None
    model = model() if callable(model) else model
    config = families.adapt(config, model.network, keep=set_by or {})
    if image_hw is not None:
        check_image_size(image_hw, model)
    cond = cond() if callable(cond) else cond
    if cond is not None:
        check_conditioning(cond, model)
    _check_fit(model, config, stages, set_by or {})
    if inverted is not None and "drag" in stages:
        check_depth(model, config.inversion_strength, inverted)
    return Plan(model, _steps(model, config, stages, sample_from), mask, cond, config)


def _check_fit(model: DiffusionModel, config, stages, set_by: dict) -> None:
    """What the config asks of the model's layout, for the parts these stages use."""
    def fits(path: str, value, check: Callable[[], object]) -> None:
        try:
            check()
        except DragInputError as e:
            shown = list(value) if isinstance(value, tuple) else value
            if path in set_by:
                raise DragInputError(f"{e.detail} ({path} = {shown!r}, from {set_by[path]})",
                                     input=set_by[path]) from None
            raise DragInputError(f"{e.detail} ({path} = {shown!r} is the preset's value, for the "
                                 f"{families.of(model.network).name} layout, which this MODEL does not have; "
                                 f"override {path} to use it anyway)",
                                 input="model") from None

    if "lora" in stages and config.lora is not None:
        fits("lora.targets", config.lora.targets, lambda: check_targets(model.network, config.lora.targets))
    if "drag" in stages:
        spec = config.drag.features
        fits("drag.features.blocks", spec.blocks, lambda: model.check_features(spec))
    auto = config.auto_mask
    if auto is not None and ("drag" in stages or MASK in stages):
        fits("auto_mask.blocks", auto.blocks, lambda: feature_blocks(model, auto))
        n_train = len(model.schedule.alphas_cumprod)
        fits("auto_mask.timestep", auto.timestep, lambda: auto.timestep < n_train or _raise(
            f"timestep {auto.timestep} does not exist: this model has timesteps 0..{n_train - 1}"))
    if "sample" in stages and config.reference is not None:
        fits("reference.start_block", config.reference.start_block, lambda: config.reference.indices(model.network))


def _raise(detail: str):
    raise DragInputError(detail)


def _steps(model: DiffusionModel, config, stages, sample_from: int | None) -> dict:
    steps = {}
    invert = model.schedule.steps_for_strength(config.inversion_strength)
    for stage in stages:
        if stage == "lora":
            steps[stage] = config.lora.steps if config.lora is not None else 0
        elif stage == "invert":
            steps[stage] = invert
        elif stage == "drag":
            steps[stage] = config.schedule.total()
        elif stage == "sample":
            if sample_from is None:  # a drag that denoises on the way (GoodDrag) leaves fewer to sample
                denoised = config.schedule.denoise_steps()
                sample_from = invert - min(denoised, invert - 1)
            steps[stage] = sample_from
    return {stage: n for stage, n in steps.items() if n > 0}
