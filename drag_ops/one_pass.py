"""Training-free drags in one pass: invert, move the inverted latent itself, sample back once.

FastDrag (Zhao et al., NeurIPS 2024) warps the inverted latent (:mod:`.latent_warp`); RegionDrag (Lu
et al., ECCV 2024) copies the inverted latent of handle regions onto target regions at every sampling
step (:mod:`.region_copy`). Neither trains a LoRA or optimises anything: an edit costs the inversion's
UNet passes and the sampling's, a few seconds on SD 1.5.

Both keep the image by reading the inversion's self-attention keys and values while sampling
(FastDrag's consistency-preserving strategy, RegionDrag's attention swap). Here the inversion's
latent at a step is run beside the edited one, as a batch [inversion's, edited] under mutual
self-attention, at the same timestep the inversion ran it at: its keys and values are the ones the
inversion computed, without a store of them per layer and step (the authors' codes keep that store).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch

from . import rules
from .drag import DraggedLatent, check_mask
from .errors import DragInputError
from .inversion import Trajectory, invert
from .latent_warp import LatentWarp
from .model import Conditioning, DiffusionModel
from .network import Stage
from .points import DragPoints
from .progress import Callback, report
from .protocols import LatentEdit, Moves
from .rules import Choice, Number, Part
from .ddim import DDIMSchedule
from .sde_inversion import invert_sde, sde_step

STAGES = ("invert", "sample")


@dataclass
class AttentionReplay:
    """layers: "decoder" (the self-attention of the decoder's transformer blocks: FastDrag's code, the
    'up' blocks) or "all" (every transformer block: RegionDrag's code). fraction: the share of the
    schedule, from the clean end, whose sampling steps read the inversion's keys and values (1: all)."""

    layers: str = "decoder"
    fraction: float = 1.0

    RULES = {"layers": Choice(("decoder", "all")), "fraction": Number(0, 1)}

    def __post_init__(self):
        rules.check(self)

    def indices(self, network) -> tuple[int, ...]:
        layers = network.attention_layers()
        chosen = tuple(i for i, layer in enumerate(layers) if self.layers == "all" or layer.level >= 0)
        if not chosen:
            raise DragInputError("this UNet has no self-attention for the inversion's keys and values to replace")
        return chosen

    def active(self, k: int, num_steps: int) -> bool:
        return k <= self.fraction * num_steps


@dataclass
class OnePassConfig:
    """A one-pass edit: its DDIM step count (the schedule's, not the model's 50), how deep it inverts,
    how ("ddim": deterministic; "sde": DDPM with recorded noise), the edit of the inverted latent
    (a LatentWarp or a RegionCopy), the attention replay while sampling, and the seed of its noise."""

    num_steps: int = 10
    inversion_strength: float = 0.7
    inversion: str = "ddim"
    edit: LatentEdit = field(default_factory=LatentWarp)
    attention: AttentionReplay | None = field(default_factory=AttentionReplay)
    seed: int = 42

    RULES = {"num_steps": Number(2, 1000, whole=True), "inversion_strength": Number(0, 1, above=True),
             "inversion": Choice(("ddim", "sde")), "edit": Part(), "attention": Part(AttentionReplay, optional=True),
             "seed": Number(0, 2 ** 63 - 1, whole=True)}

    def __post_init__(self):
        rules.check(self)
        if not isinstance(self.edit, LatentEdit):
            raise rules.SettingError("edit", f"must be a LatentEdit (LatentWarp, RegionCopy), got {type(self.edit).__name__}")


def is_one_pass(config) -> bool:
    return isinstance(config, OnePassConfig)


def with_steps(model: DiffusionModel, num_steps: int) -> DiffusionModel:
    """The model on a DDIM schedule of num_steps (same noise levels and prediction type)."""
    s = model.schedule
    if s.num_steps == num_steps:
        return model
    if num_steps > len(s.alphas_cumprod):
        raise DragInputError(f"num_steps {num_steps} exceeds the model's {len(s.alphas_cumprod)} timesteps",
                             input="overrides")
    return DiffusionModel(model.network, model.codec, DDIMSchedule(s.alphas_cumprod, num_steps, s.prediction_type),
                          model.lora)


# -- where things move, checked before any stage runs ------------------------------------------------

def moves_of(config: OnePassConfig, points: DragPoints, image_hw: tuple[int, int], latent_hw: tuple[int, int],
             mask: torch.Tensor | None) -> Moves:
    """Every check of the points and the mask against the edit (DragInputError naming the input), and
    the geometry the stages use. mask [H, W] (1 = editable) or None (all editable)."""
    if len(points) == 0:
        raise DragInputError("no points given", input="points")
    points.validate_in(image_hw[1], image_hw[0])
    return config.edit.moves(points, image_hw, latent_hw, check_mask(mask, image_hw))


def plan_one_pass(model: DiffusionModel, config: OnePassConfig, image_hw, points, mask, cond: Conditioning | None):
    """The checks run_one_pass makes before its first stage; returns (model on the preset's schedule, Moves,
    {stage: steps})."""
    from .plan import check_conditioning, check_image_size
    check_image_size(image_hw, model)
    latent_hw = (image_hw[0] // model.codec.downscale, image_hw[1] // model.codec.downscale)
    moves = moves_of(config, points, image_hw, latent_hw, mask)
    if cond is not None:
        check_conditioning(cond, model)
    stepped = with_steps(model, config.num_steps)
    if config.attention is not None:
        try:
            config.attention.indices(model.network)
        except DragInputError as e:
            raise e.at(input="model") from None
    n = stepped.schedule.steps_for_strength(config.inversion_strength)
    return stepped, moves, {"invert": n, "sample": n}


# -- the edit --------------------------------------------------------------------------------------

def run_one_pass(model: DiffusionModel, image: torch.Tensor, points: DragPoints, cond: Conditioning,
                 config: OnePassConfig, mask: torch.Tensor | None = None, callback: Callback | None = None):
    """A one-pass drag of image [1, 3, H, W] in [-1, 1] (points in image pixels, mask [H, W] or None).
    Returns a pipeline.EditResult; its reconstruction is the codec's (no original is sampled) and its
    drag has no tracking: the handles are where the edit put them, the targets."""
    from .pipeline import EditResult, check_image
    image_hw = check_image(image, model)
    model, moves, _ = plan_one_pass(model, config, image_hw, points, mask, cond)
    latent = model.codec.encode(image.to(model.device))
    generator = torch.Generator("cpu").manual_seed(config.seed)  # as the code: one seeded stream for all noise
    if config.inversion == "sde":
        trajectory = invert_sde(model, latent, cond, config.inversion_strength, generator, callback)
    else:
        trajectory = invert(model, latent, cond, config.inversion_strength, callback)
    start = config.edit.begin(trajectory.start, moves, generator)
    edited = sample_one_pass(model, trajectory, start, cond, config, moves, callback)
    decoded = model.codec.decode(torch.cat([edited, latent.to(edited)]))
    out = finish_edit(config, decoded[:1], image.to(decoded), moves)
    targets = [list(t) for t in points.targets]
    result = DraggedLatent(start, trajectory.steps, targets, [[list(h) for h in points.handles], targets], 0, targets)
    return EditResult(out, edited, decoded[1:], result, trajectory, None)


def finish_edit(config: OnePassConfig, out: torch.Tensor, image: torch.Tensor, moves: Moves) -> torch.Tensor:
    if config.edit.paste_outside and moves.pixels is not None:
        return torch.where(moves.pixels.to(out.device), out, image)
    return out


def sample_one_pass(model: DiffusionModel, trajectory: Trajectory, z: torch.Tensor, cond: Conditioning,
                    config: OnePassConfig, moves: Moves, callback: Callback | None = None) -> torch.Tensor:
    """Denoise the edited latent from the trajectory's depth to 0; the steps with attention replay run
    beside the inversion's own UNet input of that timestep (see the module's docstring)."""
    n, num = trajectory.steps, model.schedule.num_steps
    replay = config.attention
    reference = replay.indices(model.network) if replay is not None else ()
    plain = [k for k in range(n, 0, -1) if not (replay is not None and replay.active(k, num))]
    replayed = [k for k in range(n, 0, -1) if k not in plain]
    z = z.to(model.device, torch.float32)
    # the replayed steps are the ones nearest the clean end, so the plain ones come first; each part runs
    # in its own frame (the host loads for batch 1 or 2 and installs the mutual attention for the second)
    for ks, stage in ((plain, Stage("sample")), (replayed, Stage("sample", batch=2, reference=reference))):
        if ks:
            done = n - ks[0]
            z = model.run(stage, cond, z.shape[-2:], lambda: _sample(model, trajectory, z, ks, done, cond, config,
                                                                      moves, bool(stage.reference), callback))
    return z


@torch.no_grad()
def _sample(model, trajectory, z, ks, done, cond, config, moves, replay, callback):
    schedule, dev = model.schedule, model.device
    sde = config.inversion == "sde"
    for k in ks:
        t = schedule.timestep(k)
        level = trajectory.at(k).to(dev)
        z = config.edit.at_step(z, level, t, len(schedule.alphas_cumprod), moves)
        if moves.editable is not None:
            z = torch.where(moves.editable.to(dev), z, level)  # as RegionDrag's code: drag.py::backward
        if replay:
            # what the inversion fed the UNet at this timestep: DDIM z_{k-1}, the SDE's noised z_k
            ref = level if sde else trajectory.at(k - 1).to(dev)
            out = model.forward(torch.cat([ref, z]), t, cond)[0][1:]
        else:
            out = model.forward(z, t, cond)[0]
        x0 = schedule.eps_and_x0(out, t, z)[1]  # the preview
        z = sde_step(schedule, out, k, z, trajectory.noises[k - 1].to(dev)) if sde else schedule.step(out, k, z)
        done += 1
        report(callback, "sample", done, trajectory.steps, {"x0": x0})
    return z

