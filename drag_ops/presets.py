"""Each paper as a named combination of the engine's parts, with that paper's defaults."""

from __future__ import annotations

from dataclasses import dataclass, field

from .drag import DragSettings
from .lora import LoraSettings
from .reference import ReferenceControl
from .schedules import SingleTimestep
from .supervision import PointDragSupervision
from .tracking import NearestNeighbourTracker


@dataclass
class EditConfig:
    """Everything one drag edit needs besides the model, the image and the points."""

    inversion_strength: float = 0.7
    lora: LoraSettings | None = field(default_factory=LoraSettings)
    drag: DragSettings = field(default_factory=DragSettings)
    tracker: object = field(default_factory=NearestNeighbourTracker)
    supervision: object = field(default_factory=PointDragSupervision)
    schedule: object = field(default_factory=SingleTimestep)
    reference: ReferenceControl | None = field(default_factory=ReferenceControl)


def dragdiffusion() -> EditConfig:
    """DragDiffusion (Shi et al. 2024): strength 0.7, r1 = 1, r2 = 3, Adam 0.01, 80 steps, lambda 0.1."""
    return EditConfig(
        inversion_strength=0.7,
        drag=DragSettings(learning_rate=0.01, mask_weight=0.1),
        tracker=NearestNeighbourTracker(radius=3),
        supervision=PointDragSupervision(radius=1),
        schedule=SingleTimestep(max_steps=80),
    )


PRESETS = {"DragDiffusion": dragdiffusion}


def preset(name: str) -> EditConfig:
    try:
        return PRESETS[name]()
    except KeyError:
        from .errors import DragInputError
        raise DragInputError(f"unknown preset {name!r}; available: {', '.join(PRESETS)}", input="preset") from None
