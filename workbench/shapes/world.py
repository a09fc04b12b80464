"""The shapes world as the engine sees it: the trained model, its prompt, scenes as images,
and the few settings a 64x64 model needs on top of a preset.

Coordinates: scenes (workbench/shapes/scenes.py) put pixel j's centre at j + 0.5; the engine's points are
pixel indices (pixel j's centre is j). ``to_engine_xy`` / ``to_scene_xy`` are the only places
that convert between the two.
"""

from __future__ import annotations

import copy
import math
from pathlib import Path

import numpy as np
import torch

from comfyui_drag.drag_ops.model import Conditioning, DiffusersVAECodec, DiffusionModel, FeatureSpec
from comfyui_drag.drag_ops.network import DiffusersUNet
from comfyui_drag.drag_ops.ddim import DDIMSchedule
from comfyui_drag.drag_ops.images import engine_to_uint8, uint8_to_engine
from comfyui_drag.drag_ops.one_pass import is_one_pass
from .model import WEIGHTS, empty_prompt, load_shapes_model
from .scenes import Scene, Shape, random_scene, render

DEMO_MOVE = 12.0  # pixels


# -- model ----------------------------------------------------------------------------------

def engine_model(folder: str | Path | None = None, device="cpu") -> DiffusionModel:
    """The shapes-world UNet and VAE with SD's 50-step DDIM schedule (the model was trained on it)."""
    unet, vae = load_shapes_model(device, folder or WEIGHTS)
    return DiffusionModel(DiffusersUNet(unet), DiffusersVAECodec(vae), DDIMSchedule.stable_diffusion())


def conditioning() -> Conditioning:
    """The model's only "prompt": the constant zero token it was trained with."""
    return Conditioning(empty_prompt())


# -- images and coordinates --------------------------------------------------------------------

def to_engine_image(scene_or_image) -> torch.Tensor:
    """A scene (or its uint8 [H, W, 3] render) as the engine's image [1, 3, H, W] in [-1, 1]."""
    img = render(scene_or_image) if isinstance(scene_or_image, Scene) else np.asarray(scene_or_image)
    return uint8_to_engine(img)


def to_uint8(image: torch.Tensor) -> np.ndarray:
    """The engine's image [1, 3, H, W] in [-1, 1] as uint8 [H, W, 3]."""
    return engine_to_uint8(image)[0]


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


def demo_move(scene: Scene) -> tuple[int, tuple[float, float]]:
    """(index, (dx, dy)): the largest shape, moved DEMO_MOVE px toward the image centre where it fits."""
    index = _largest(scene)
    return index, next(clean_moves(scene, index, DEMO_MOVE))


def _largest(scene: Scene) -> int:
    return max(range(len(scene.shapes)), key=lambda i: scene.shapes[i].size)


# -- what this model needs on top of a preset ---------------------------------------------------

FEATURE_BLOCKS = (1, 2)
LORA_RANK = 8
LORA_STEPS = 300
LORA_LEARNING_RATE = 3e-3
LORA_EXTRA_TARGETS = ("conv1", "conv2")  # every ResNet block's two convolutions
INVERSION_STRENGTH = 0.5
MIN_LEARNING_RATE = 0.02
MAX_TRACKING_RADIUS = 3  # r2, feature pixels: DragDiffusion's
MAX_REACH_DISTANCE = 1.0  # feature pixels: a handle counts as arrived only on its target's feature pixel
FREEDRAG_TARGET_DISTANCE = 0.1


def adapt(config):
    """A preset's EditConfig for the 64x64 shapes model (a copy; the preset's own values otherwise).
    Chosen on the tuning moves (`python -m workbench bench --task-seed 0 --only move`); the benchmark's
    task seeds are never used to choose.

    - Features: SD's up_blocks[2] is the second-to-last of four decoder levels; this UNet has three,
      and its last one alone carries too little to move a shape. Levels 1 and 2 together play the
      role of SD's up_blocks[2] (both are 16x16 here, resized to 32x32).
    - Identity LoRA on the ResNet convolutions too, rank 8, 300 steps at 3e-3. SD's recipe (attention
      projections, rank 16, 80 steps at 5e-4) is sized for a UNet with attention at every level and a
      text prompt; this one has attention only at 8x8 and 4x4 and its cross-attention reads a zero
      token, so attention adapters barely fit the image (`python -m workbench.benchmarks.lora_fit`
      compares both). A tighter fit (more steps) keeps more shapes and moves them less.
    - Inversion strength at most 0.5, the papers' 0.7 capped: deeper, the dragged shape changes kind
      or vanishes more often; shallower, it moves less.
    - Latent learning rate at least 0.02: a 12-px move is 3 latent pixels of a 16x16 latent, and at
      the papers' 0.01 the handle covers about 1.5 px in DragDiffusion's 80 updates.
    - Tracking radius r2 at most 3 (DragDiffusion's): GoodDrag's r2 = 12 is sized for SD's 256-px-wide
      feature maps; on these 32-px ones its window spans 25 of 32 feature pixels and jumps to the
      look-alike shape.
    - Reach distance at most 1 feature pixel (the papers' 2): their 2 feature pixels are 0.8% of SD's
      256-px-wide feature maps, here 6% of the 32-px ones, and the drag would stop with a quarter to a
      half of an 8-16 px move still to go, often on a tracker that slides along a flat interior.
    - The update budgets stay the papers'. More of them is not what a drag lacks: with a perfect target
      (the ground-truth edit's features, `python -m workbench.benchmarks.drag_oracle`) 200 updates
      carry a shape across cleanly, while DragDiffusion at 200 updates moves further but breaks more
      shapes as its patch reference drifts.
    - FreeDrag's l (the template distance a drag aims at) is a feature distance, so its scale is the
      UNet's: at the paper's l = 1 every line-search candidate on this model's features is already
      within 0.5 l and each handle hops to its target without optimising anything; l = 0.1 moves it.
    - FastDrag and RegionDrag (training-free, one pass) take the strength cap alone: nothing else of
      theirs is sized to SD. On the 12 tuning moves (seed 0) FastDrag at its 0.7: 0.45 / 75%, outside
      the mask 31.5 dB; capped at 0.5: 0.44 / 75%, 32.7 dB. RegionDrag inverts to 0.5 itself (0.22 / 100%).
    """
    config = copy.deepcopy(config)
    config.inversion_strength = min(config.inversion_strength, INVERSION_STRENGTH)
    if is_one_pass(config):
        return config
    config.drag.learning_rate = max(config.drag.learning_rate, MIN_LEARNING_RATE)
    config.drag.features = FeatureSpec(blocks=FEATURE_BLOCKS, size=config.drag.features.size)
    if hasattr(config.supervision, "target_distance"):
        config.supervision.target_distance = FREEDRAG_TARGET_DISTANCE
    if hasattr(config.tracker, "radius"):  # FreeDrag's and AdaptiveDrag's trackers size their own
        config.tracker.radius = min(config.tracker.radius, MAX_TRACKING_RADIUS)
    config.drag.reach_distance = min(config.drag.reach_distance, MAX_REACH_DISTANCE)
    if config.lora is not None:
        config.lora.rank = LORA_RANK
        config.lora.steps = LORA_STEPS
        # dict.fromkeys: each target once, so adapting an adapted config changes nothing
        config.lora.targets = tuple(dict.fromkeys((*config.lora.targets, *LORA_EXTRA_TARGETS)))
        config.lora.learning_rate = LORA_LEARNING_RATE
    return config
