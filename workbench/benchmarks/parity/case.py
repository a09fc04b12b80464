"""What both sides of a parity run share (the model, the inputs, each method's budget) and the
engine's side of a run. No authors' code here: the engine's tests import this module.

A case is a random UNet with SD 1.5's layout (four levels, two layers per block: 16 transformer
blocks, decoder features from ``up_blocks[2]`` at half the image size) at a small width, an input
latent, a prompt embedding, an RGB picture for AdaptiveDrag's superpixels, two point pairs (image
pixels, with half feature pixels so that rounding matters) and a rectangular mask. ``REPORT`` is
the harness's table; ``SMALL`` is the one the tests run (a 16x16 latent, short budgets).

Budgets are the authors' own arguments (their names), so both sides stop where the authors' code
would with those values; everything else is each preset's default, except FreeDrag's l
(l_expected): 1 is for SD's features, and a random UNet's are smaller (its loss starts near 0.3,
below 0.5 l, so with l = 1 every drag would end after one update).
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field

import numpy as np
import torch

from comfyui_drag.drag_ops import presets
from comfyui_drag.drag_ops.coords import Geometry
from comfyui_drag.drag_ops.inversion import Trajectory
from comfyui_drag.drag_ops.model import Conditioning, DiffusionModel
from comfyui_drag.drag_ops.network import DiffusersUNet
from comfyui_drag.drag_ops.overrides import apply_overrides
from comfyui_drag.drag_ops.pipeline import drag_stage
from comfyui_drag.drag_ops.points import DragPoints
from comfyui_drag.drag_ops.ddim import DDIMSchedule
from comfyui_drag.drag_ops.strategies import with_strategies

METHODS = ("DragDiffusion", "FreeDrag", "GoodDrag", "AdaptiveDrag")


@dataclass(frozen=True)
class Case:
    name: str
    latent: int  # latent side; the image is 8x, the features 4x
    channels: tuple  # block_out_channels (SD 1.5: 320, 640, 1280, 1280)
    groups: int  # norm_num_groups
    context: int  # cross-attention width (SD 1.5: 768)
    pairs: tuple  # ((hx, hy), (tx, ty)) per pair, image pixels
    mask: tuple  # (x0, y0, x1, y1): the editable rectangle, image pixels
    budgets: dict = field(default_factory=dict)  # method -> the authors' arguments that bound it
    seed: int = 0

    @property
    def image(self) -> int:
        return 8 * self.latent


REPORT = Case(
    "report", latent=32, channels=(64, 128, 128, 128), groups=32, context=64,
    pairs=(((101, 121), (133, 129)), ((171, 81), (149, 109))), mask=(64, 24, 216, 184),
    budgets={"DragDiffusion": {"n_pix_step": 80}, "FreeDrag": {"max_step": 300, "l_expected": 0.1},
             "GoodDrag": {"drag_end_step": 7, "track_per_denoise": 10}, "AdaptiveDrag": {"n_pix_step": 160}})

SMALL = Case(
    "small", latent=16, channels=(32, 32, 64, 64), groups=16, context=32,
    pairs=(((51, 61), (69, 63)), ((89, 41), (75, 55))), mask=(32, 16, 112, 96),
    budgets={"DragDiffusion": {"n_pix_step": 12}, "FreeDrag": {"max_step": 16, "l_expected": 0.1},
             "GoodDrag": {"drag_end_step": 2, "track_per_denoise": 2},
             # 9, not 10: the 10th update's handle is half a feature pixel from its target on a
             # diagonal, so pixels lie at exactly 90 degrees to it, and the code's float32 arctan2
             # puts them on either side depending on the CPU (numpy's AVX-512 kernels or not)
             "AdaptiveDrag": {"n_pix_step": 9}})

CASES = {c.name: c for c in (REPORT, SMALL)}


def build_unet(case: Case):
    """The random SD1.5-layout UNet (eval mode, fp32). Its output is scaled down as the tests'
    tiny models are (a random UNet's noise prediction is not consistent along a DDIM path)."""
    from diffusers import UNet2DConditionModel

    torch.manual_seed(case.seed)
    unet = UNet2DConditionModel(
        sample_size=case.latent, in_channels=4, out_channels=4, layers_per_block=2,
        block_out_channels=case.channels, norm_num_groups=case.groups, cross_attention_dim=case.context,
        attention_head_dim=8,
        down_block_types=("CrossAttnDownBlock2D",) * 3 + ("DownBlock2D",),
        up_block_types=("UpBlock2D",) + ("CrossAttnUpBlock2D",) * 3,
    ).eval()
    with torch.no_grad():
        unet.conv_out.weight.mul_(0.1)
        unet.conv_out.bias.mul_(0.1)
    return unet


@dataclass
class Inputs:
    latent: torch.Tensor  # [1, 4, h, w]: the "encoded image" (no VAE: both sides start here)
    context: torch.Tensor  # [1, 8, context]: the prompt embedding
    picture: np.ndarray  # [H, W, 3] uint8: what AdaptiveDrag's superpixels segment
    mask: np.ndarray  # [H, W] uint8 0/255, 255 = editable (the authors' UI format)


def build_inputs(case: Case) -> Inputs:
    g = torch.Generator().manual_seed(case.seed + 1)
    n = case.latent
    coarse = torch.randn(1, 4, n // 4, n // 4, generator=g)
    latent = torch.nn.functional.interpolate(coarse, size=(n, n), mode="bilinear", align_corners=False)
    latent = latent + 0.3 * torch.randn(1, 4, n, n, generator=g)
    context = torch.randn(1, 8, case.context, generator=g)
    H = case.image
    y, x = np.mgrid[0:H, 0:H].astype(np.float64)
    picture = np.stack([60 + 100 * x / H, 80 + 60 * y / H, 120 + 0 * x], -1)
    rng = np.random.default_rng(case.seed)
    for _ in range(6):  # flat discs, so that superpixels follow shapes
        cx, cy = rng.uniform(0.15, 0.85, 2) * H
        r = rng.uniform(0.08, 0.2) * H
        colour = rng.uniform(0, 255, 3)
        picture[(x - cx) ** 2 + (y - cy) ** 2 <= r ** 2] = colour
    mask = np.zeros((H, H), dtype=np.uint8)
    x0, y0, x1, y1 = case.mask
    mask[y0:y1, x0:x1] = 255
    return Inputs(latent, context, picture.clip(0, 255).astype(np.uint8), mask)


def segments(case: Case, inputs: Inputs) -> np.ndarray:
    """AdaptiveDrag's superpixels of the picture [H, W] (int): SLIC with the authors' n_segments = 200,
    compactness = 10 (utils/ui_utils_*.py::run_drag), scikit-image's default labels (from 1)."""
    from skimage.segmentation import slic
    return slic(inputs.picture, n_segments=200, compactness=10)


class _NoCodec:
    downscale, latent_channels = 8, 4

    def encode(self, images):  # the cases start from a latent
        raise NotImplementedError

    decode = encode


def engine_model(unet) -> DiffusionModel:
    return DiffusionModel(DiffusersUNet(unet), _NoCodec(), DDIMSchedule.stable_diffusion(50))


def engine_config(method: str, case: Case):
    """The preset with the case's budget, translated from the authors' argument names."""
    config = presets.preset(method)
    budget = case.budgets[method]
    if method == "DragDiffusion":
        return apply_overrides(config, {"schedule.max_steps": budget["n_pix_step"]})
    if method == "FreeDrag":
        return apply_overrides(config, {"schedule.max_steps": budget["max_step"],
                                        "supervision.target_distance": budget["l_expected"]})
    if method == "GoodDrag":
        per = budget["track_per_denoise"]
        return apply_overrides(config, {"schedule.rounds_per_denoise": per,
                                        "schedule.drag_rounds": per * budget["drag_end_step"]})
    if method == "AdaptiveDrag":
        # the code's loop: a fixed count (its adaptive count never takes effect); the preset's own
        # schedule is the paper's position-supervised backtracking
        config = with_strategies(config, schedule="single")
        return apply_overrides(config, {"schedule.max_steps": budget["n_pix_step"]})
    raise KeyError(method)


@dataclass
class Record:
    """One side of a run."""

    losses: list  # the loss of every update, in order (the first is the loss at step 0)
    paths: list  # per tracking (FreeDrag: per line search): [[x, y] per handle], feature pixels
    steps: int  # updates done when the loop stopped
    latent: torch.Tensor  # the latent the drag hands to sampling
    start: torch.Tensor  # z_T, where the drag started
    radii: list | None = None  # AdaptiveDrag: (r_m, r_p) per handle at its start

    def summary(self) -> dict:
        return {"loss0": self.losses[0] if self.losses else None, "updates": self.steps,
                "trackings": len(self.paths)}


def run_engine(method: str, case: Case, unet, inputs: Inputs, trajectory: torch.Tensor,
               labels: np.ndarray | None = None, config=None) -> Record:
    """The preset (``config``: the case's by default) on the same UNet, from the authors' inverted
    trajectory ([k + 1, 4, h, w], k the preset's inversion steps)."""
    from diffusers.models.attention_processor import AttnProcessor2_0

    unet.set_attn_processor(AttnProcessor2_0())  # diffusers' default (SDPA): the engine's kernel
    config = copy.deepcopy(config or engine_config(method, case))
    model = engine_model(unet)
    H = case.image
    points = DragPoints(tuple(tuple(map(float, h)) for h, _ in case.pairs),
                        tuple(tuple(map(float, t)) for _, t in case.pairs))
    mask = torch.from_numpy(inputs.mask.astype(np.float32) / 255.0)
    losses = []

    def callback(stage, i, n, payload=None):
        if stage == "drag" and payload:
            losses.append(payload["loss"])

    regions = None if labels is None else torch.from_numpy(labels.astype(np.int64))
    result = drag_stage(model, Trajectory(trajectory.clone()), Conditioning(inputs.context), points, (H, H), mask,
                        config, callback, regions)
    geometry = Geometry((H, H), (case.latent, case.latent), config.drag.features.resolve((H, H)))
    plans = getattr(config.tracker, "plans", None)
    if method == "FreeDrag":  # no tracking: the intermediate targets of each drag
        paths = [p for p in plans]
    else:
        paths = [geometry.image_to_feature(torch.tensor(h)).tolist() for h in result.history[1:]]
    radii = getattr(config.supervision, "radii_used", None)
    return Record(losses, [[[float(v) for v in xy] for xy in p] for p in paths], result.steps,
                  result.latent.detach().clone(), trajectory[-1:].clone(), radii)


def difference(a: torch.Tensor, b: torch.Tensor, start: torch.Tensor) -> dict:
    """max |a - b| and ||a - b|| / ||a - start|| (relative to how far the drag moved the latent)."""
    moved = float((a - start).norm())
    return {"max_abs": float((a - b).abs().max()), "rel": float((a - b).norm()) / max(moved, 1e-12)}
