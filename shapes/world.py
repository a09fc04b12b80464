"""The shapes world as the engine sees it: the trained model, its prompt, scenes as images,
and the few settings a 64x64 model needs on top of a preset.

Coordinates: scenes (shapes/scenes.py) put pixel j's centre at j + 0.5; the engine's points are
pixel indices (pixel j's centre is j). ``to_engine_xy`` / ``to_scene_xy`` are the only places
that convert between the two.
"""

from __future__ import annotations

import copy
import math
from pathlib import Path

import numpy as np
import torch

from ..drag_ops.model import Conditioning, DiffusersVAECodec, DiffusionModel, FeatureSpec
from ..drag_ops.schedule import DDIMSchedule
from .model import WEIGHTS, empty_prompt, load_shapes_model
from .scenes import Scene, Shape, random_scene, render

DEMO_MOVE = 12.0  # pixels


# -- model ----------------------------------------------------------------------------------

def engine_model(folder: str | Path | None = None, device="cpu") -> DiffusionModel:
    """The shapes-world UNet and VAE with SD's 50-step DDIM schedule (the model was trained on it)."""
    unet, vae = load_shapes_model(device, folder or WEIGHTS)
    return DiffusionModel(unet, DiffusersVAECodec(vae), DDIMSchedule.stable_diffusion())


def conditioning() -> Conditioning:
    """The model's only "prompt": the constant zero token it was trained with."""
    return Conditioning(empty_prompt())


# -- images and coordinates --------------------------------------------------------------------

def to_engine_image(scene_or_image) -> torch.Tensor:
    """A scene (or its uint8 [H, W, 3] render) as the engine's image [1, 3, H, W] in [-1, 1]."""
    img = render(scene_or_image) if isinstance(scene_or_image, Scene) else np.asarray(scene_or_image)
    return torch.from_numpy(img).permute(2, 0, 1)[None].float() / 127.5 - 1.0


def to_uint8(image: torch.Tensor) -> np.ndarray:
    """The engine's image [1, 3, H, W] in [-1, 1] as uint8 [H, W, 3]."""
    return ((image[0].clamp(-1, 1) + 1) * 127.5).round().byte().permute(1, 2, 0).cpu().numpy()


def to_engine_xy(xy) -> tuple[float, float]:
    """Scene coordinates (pixel centres at j + 0.5) -> engine pixel coordinates (centres at j)."""
    return float(xy[0]) - 0.5, float(xy[1]) - 0.5


def to_scene_xy(xy) -> tuple[float, float]:
    return float(xy[0]) + 0.5, float(xy[1]) + 0.5


# -- scenes where a move is possible ---------------------------------------------------------

def fits(scene: Scene, index: int, shape: Shape, margin: float = 2.0, ignore=()) -> bool:
    """Would ``shape`` in place of shape ``index`` lie inside the image and clear of the others?"""
    e = shape.extent + margin
    if not (e <= shape.center[0] <= scene.size - e and e <= shape.center[1] <= scene.size - e):
        return False
    return all(math.dist(shape.center, other.center) > shape.extent + other.extent + margin
               for j, other in enumerate(scene.shapes) if j != index and j not in ignore)


def clean_moves(scene: Scene, index: int, distance: float, directions: int = 16):
    """Displacements (dx, dy) of the given length that move shape ``index`` somewhere it fits
    (at the start, half way and at the end), the one toward the image centre first."""
    shape, c = scene.shapes[index], scene.size / 2
    first = math.atan2(c - shape.center[1], c - shape.center[0])
    order = sorted(range(directions), key=lambda k: abs((k * 2 * math.pi / directions - first + math.pi)
                                                        % (2 * math.pi) - math.pi))
    for k in order:
        a = k * 2 * math.pi / directions
        d = (distance * math.cos(a), distance * math.sin(a))
        if all(fits(scene, index, shape.moved(f * d[0], f * d[1])) for f in (0.5, 1.0)):
            yield d


def demo_scene(seed: int = 0) -> Scene:
    """A seeded scene whose largest shape can move DEMO_MOVE pixels cleanly."""
    for attempt in range(1000):
        scene = random_scene(np.random.default_rng([seed, attempt]), max_shapes=2)
        if next(clean_moves(scene, _largest(scene), DEMO_MOVE), None) is not None:
            return scene
    raise RuntimeError(f"no demo scene for seed {seed}")


def demo_drag(scene: Scene) -> tuple[tuple[float, float], tuple[float, float]]:
    """(handle, target) in engine pixel coordinates: the largest shape's centre, moved DEMO_MOVE px."""
    index = _largest(scene)
    d = next(clean_moves(scene, index, DEMO_MOVE))
    c = scene.shapes[index].center
    return to_engine_xy(c), to_engine_xy((c[0] + d[0], c[1] + d[1]))


def _largest(scene: Scene) -> int:
    return max(range(len(scene.shapes)), key=lambda i: scene.shapes[i].size)


# -- what this model needs on top of a preset ---------------------------------------------------

FEATURE_BLOCKS = (1, 2)
LORA_RANK = 8
LORA_STEPS = 40
LORA_LEARNING_RATE = 3e-3
INVERSION_STRENGTH = 0.3
FREEDRAG_TARGET_DISTANCE = 0.1


def adapt(config):
    """A preset's EditConfig for the 64x64 shapes model (a copy; the preset's own values otherwise).

    - Features: SD's up_blocks[2] is the second-to-last of four decoder levels; this UNet has three,
      and its last one alone carries too little to move a shape (shapes-notes). Levels 1 and 2
      together play the role of SD's up_blocks[2] (both are 16x16 here, resized to 32x32).
    - Identity LoRA: SD's rank 16 / 80 steps is sized for a UNet with 320-1280 channels; this one
      has 64-128, so rank 8 and 40 steps; at SD's 5e-4 the LoRA barely fits the image in 40 steps and
      DDIM inversion + reconstruction at strength 0.7 lost 3-8 dB against the VAE's own
      reconstruction, at 3e-3 it reaches the VAE's (benchmark do-nothing rows).
    - Inversion strength at most 0.3: this small, briefly trained UNet predicts x0 poorly at high
      noise, so an edit made at t ~ 700 comes back as a different shape (or none); at t ~ 300 the
      features still describe the image and the drag moves it further (MD/initial 0.80 vs 1.00 on
      the move tasks at the step-420 weights).
    - FreeDrag's l (the template distance a drag aims at) is a feature distance, so its scale is the
      UNet's: at the paper's l = 1 every line-search candidate on this model's features is already
      within 0.5 l, so each handle hops to its target in 1-2 updates without optimising anything
      (MD/initial 1.00, the do-nothing row). On the 8 tuning tasks (move MD/initial, identity):
      l = 0.3 0.91 / 50%, l = 0.1 0.73 / 67%, l = 0.05 0.64 / 33%.
    """
    config = copy.deepcopy(config)
    config.inversion_strength = min(config.inversion_strength, INVERSION_STRENGTH)
    config.drag.features = FeatureSpec(blocks=FEATURE_BLOCKS, size=config.drag.features.size)
    if hasattr(config.supervision, "target_distance"):
        config.supervision.target_distance = FREEDRAG_TARGET_DISTANCE
    if config.lora is not None:
        config.lora.rank = LORA_RANK
        config.lora.steps = LORA_STEPS
        config.lora.learning_rate = LORA_LEARNING_RATE
    return config
