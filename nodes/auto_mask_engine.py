"""The Drag Auto Mask node's engine side: AdaptiveDrag's superpixel mask on an engine model, with
the preview the node shows (drag_ops/automask.py holds the method). No ComfyUI import.
"""

from __future__ import annotations

import torch
from PIL import Image

from ..drag_ops.images import uint8_to_unit, unit_to_uint8
from ..drag_ops.automask import AutoMaskSettings, boundaries_preview, make_auto_mask
from ..drag_ops.model import Conditioning, DiffusionModel
from ..drag_ops.pipeline import check_image
from ..drag_ops.points import DragPoints, parse_points
from .runtime import draw_points

EMPTY_TOKENS = 77


def empty_conditioning(model: DiffusionModel) -> Conditioning:
    """A zero text context (and on SDXL a zero pooled prompt): the features only need to see the image."""
    context = torch.zeros(1, EMPTY_TOKENS, model.network.context_width)
    options = getattr(model.network, "empty_options", dict)()
    return Conditioning(context.to(model.device), native=[[context, options]])


def compute_auto_mask(model: DiffusionModel, image: torch.Tensor, points: DragPoints, cond: Conditioning | None = None,
                      user_mask: torch.Tensor | None = None, settings: AutoMaskSettings = AutoMaskSettings()):
    """Image [1, 3, H, W] in [-1, 1], points in image pixels, user_mask [H, W] or None.
    Returns (mask [1, H, W] float, preview [1, H, W, 3] in [0, 1], labels [H, W])."""
    hw = check_image(image, model)
    points = parse_points(points, hw[1], hw[0])
    cond = cond if cond is not None else empty_conditioning(model)
    mask, labels = make_auto_mask(model, image, cond, points, user_mask, settings)
    preview = boundaries_preview(image, labels, mask)
    pil = Image.fromarray(unit_to_uint8(preview))
    pil = draw_points(pil, points.handles, points.targets)
    preview = torch.from_numpy(uint8_to_unit(pil))
    return mask[None], preview[None], labels
