"""What travels on the pack's own sockets (nodes/types.py declares them for ComfyUI), and the checks
a node makes on what it received. DRAG_POINTS carries drag_ops.points.DragPoints. No ComfyUI import.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch

from ..drag_ops import presets
from ..drag_ops.drag import DraggedLatent
from ..drag_ops.errors import DragInputError
from ..drag_ops.inversion import Trajectory


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


@dataclass
class DragResult:
    """The DRAG_RESULT type: the dragged latent and how it was made (the sampler follows the preset)."""

    result: DraggedLatent
    config: presets.EditConfig
    num_steps: int
    mask: torch.Tensor | None
    origin: torch.Tensor | None = None  # the inversion's encoded image: the sampler checks it gets the same
    set_by: dict = field(default_factory=dict)  # {setting path: input} the user set (the family leaves them)


def check_inversion(inversion) -> Inversion:
    if not isinstance(inversion, Inversion):
        raise DragInputError(f"expected DRAG_INVERSION from Drag DDIM Inversion, got {type(inversion).__name__}",
                             input="inversion")
    return inversion


def check_drag_of(inversion: Inversion, drag) -> None:
    """The drag must come from this inversion: same schedule, same original image, deep enough."""
    if not isinstance(drag, DragResult):
        raise DragInputError(f"expected DRAG_RESULT from Drag Latent Optimizer, got {type(drag).__name__}",
                             input="drag")
    origin = inversion.trajectory.at(0)
    same = (inversion.num_steps == drag.num_steps and drag.result.step_index <= inversion.trajectory.steps
            and drag.origin is not None and drag.origin.shape == origin.shape
            and torch.equal(drag.origin, origin.to(drag.origin.device)))
    if not same:
        raise DragInputError("this drag was made from another inversion (a different image, step count or "
                             "strength); connect the inversion the drag was made from", input="drag")
