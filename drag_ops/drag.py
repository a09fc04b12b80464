"""Latent optimisation: the drag loop shared by every method.

A DragSession holds the state (the latent being optimised, handles, the original's features at
the current timestep) and the primitives a schedule composes: forward, update, track, denoise.
What differs between methods is in the tracker, the supervision and the schedule strategies.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch

from . import rules
from .coords import MAX_RADIUS, Geometry
from .errors import DragInputError
from .inversion import Trajectory
from .model import Conditioning, DiffusionModel, FeatureSpec
from .network import Stage
from .points import DragPoints
from .progress import Callback, report
from .rules import Choice, Flag, Number, Part
from .schedules import SingleTimestep
from .supervision import PointDragSupervision
from .tracking import NearestNeighbourTracker


@dataclass
class DragSettings:
    """Method-independent settings of the latent optimisation (DragDiffusion's defaults)."""

    learning_rate: float = 0.01
    mask_weight: float = 0.1  # lambda
    mask_reduction: str = "sum"  # "mean" in FreeDrag
    mask_reference: str = "step"  # "step": DDIM step of the original z_t; "trajectory": inverted z_{t-1}
    reach_distance: float = 2.0  # feature pixels
    features: FeatureSpec = field(default_factory=FeatureSpec)
    # points rounded to whole feature pixels (half to even, torch.round) before anything else, as every
    # published drag code does (DragDiffusion's run_drag: torch.round(point / image_size * sup_res));
    # False keeps sub-pixel positions
    round_points: bool = True
    # the original image's latent at the timesteps after a denoising step (GoodDrag's alternation), whose
    # features and DDIM step the drag compares against: "inversion" the inverted trajectory's z_k,
    # "denoised" DDIM denoising of the inverted z_T (GoodDrag's code: get_original_features)
    original_path: str = "inversion"

    RULES = {"learning_rate": Number(0, 1, above=True), "mask_weight": Number(0, 1e6),
             "mask_reduction": Choice(("sum", "mean")), "mask_reference": Choice(("step", "trajectory")),
             "reach_distance": Number(0, MAX_RADIUS), "features": Part(FeatureSpec), "round_points": Flag(),
             "original_path": Choice(("inversion", "denoised"))}

    def __post_init__(self):
        rules.check(self)


@dataclass
class DragResult:
    latent: torch.Tensor  # [1, C, h, w] at step index k
    step_index: int
    handles: list  # final handle positions, image pixels
    history: list  # handles after every tracking, image pixels
    steps: int  # motion-supervision updates done
    targets: list | None = None  # image pixels (for guidance during sampling)
    geometry: Geometry | None = None
    # the original's latent at step_index when it is not the inverted trajectory's (original_path
    # "denoised"): where reference sampling starts the original branch
    original: torch.Tensor | None = None


class DragSession:
    def __init__(self, model: DiffusionModel, trajectory: Trajectory, cond: Conditioning, geometry: Geometry,
                 points: DragPoints, mask: torch.Tensor | None, settings: DragSettings, tracker, supervision,
                 callback: Callback | None = None, total: int = 0, regions: torch.Tensor | None = None):
        self.model, self.trajectory, self.cond, self.geometry = model, trajectory, cond, geometry
        # optional superpixel labels of the original image (AdaptiveDrag's semantic regions): [hf, wf] at
        # the features' resolution, and ``labels`` [H, W] at the image's
        self.regions = None if regions is None else geometry.labels_to_feature(regions).to(model.device)
        self.labels = None if regions is None else regions.cpu().long()
        self.settings, self.tracker, self.supervision = settings, tracker, supervision
        self.callback, self.total = callback, total
        self.device = model.device
        dev = self.device
        self.starts = self._feature_points(points.handles)
        self.targets = self._feature_points(points.targets)
        self.handles = self.starts.clone()
        self.confidence = None
        self.keep = None if mask is None else (1 - geometry.mask_to_latent(mask)).to(dev)
        self.k = trajectory.steps
        self.steps = 0
        self.history = [self._image(self.handles)]
        self.original = trajectory.start.to(self.device)  # the original's latent at step index k
        self._set_latent(trajectory.start)

    # -- primitives for schedules ----------------------------------------------------------
    def forward(self):
        return self.model.forward(self.latent, self.model.schedule.timestep(self.k), self.cond,
                                  self.settings.features, self.geometry.feature_hw)

    def update(self, out: torch.Tensor, feats: torch.Tensor) -> float:
        """One motion-supervision step (loss, backward, Adam) on the latent."""
        loss = self.supervision.loss(self, feats)
        if self.keep is not None and self.settings.mask_weight:
            z_prev = self.model.schedule.step(out, self.k, self.latent)
            diff = (z_prev - self.z_prev_ref).abs() * self.keep
            reduce = diff.mean() if self.settings.mask_reduction == "mean" else diff.sum()
            loss = loss + self.settings.mask_weight * reduce
        # the preview's x0 is the one ``out`` predicts: from the latent before Adam changes it in place
        x0 = self.model.schedule.eps_and_x0(out.detach(), self.model.schedule.timestep(self.k), self.latent.detach())[1]
        self.opt.zero_grad(set_to_none=True)
        if loss.requires_grad:
            loss.backward()
            self.opt.step()
        self.steps += 1
        value = float(loss.detach())
        report(self.callback, "drag", self.steps, self.total,
               {"x0": x0, "handles": self.history[-1], "targets": self._image(self.targets),
                "loss": value, "latent": self.latent.detach()})  # shared with the optimiser: clone to keep
        return value

    def track(self, feats: torch.Tensor) -> None:
        self.tracker.track(self, feats.detach())
        self.history.append(self._image(self.handles))

    @property
    def distances(self) -> torch.Tensor:
        return (self.targets - self.handles).norm(dim=-1)

    def _arrived(self) -> torch.Tensor:
        """Handles within reach of their target; a tracker with ``settled(session)`` (FreeDrag's line
        search, whose handles are intermediate targets) can hold some back."""
        near = self.distances < self.settings.reach_distance
        settled = getattr(self.tracker, "settled", None)
        return near if settled is None else near & settled(self).to(near.device)

    @property
    def active(self) -> torch.Tensor:
        """1 for handles still to move, 0 for those already within reach of their target."""
        return (~self._arrived()).float().to(self.device)

    def reached(self) -> bool:
        return bool(self._arrived().all())

    @torch.no_grad()
    def denoise(self, out: torch.Tensor | None = None) -> None:
        """One DDIM step of the edited latent (GoodDrag's alternation); re-anchors the original.
        out: the model output for the current latent at the current step, if a forward already made it."""
        if self.k <= 1:
            return
        if out is None:
            out, _ = self.model.forward(self.latent, self.model.schedule.timestep(self.k), self.cond)
        z = self.model.schedule.step(out, self.k, self.latent.detach())
        self.k -= 1
        if self.settings.original_path == "denoised":
            self.original = self.orig_next
        self._set_latent(z)

    # -- internals -------------------------------------------------------------------------
    def _feature_points(self, xy) -> torch.Tensor:
        points = self.geometry.image_to_feature(torch.tensor(xy, dtype=torch.float32))
        return torch.round(points) if self.settings.round_points else points

    def _set_latent(self, z: torch.Tensor) -> None:
        schedule, dev = self.model.schedule, self.device
        if self.settings.original_path == "inversion":
            self.original = self.trajectory.at(self.k).to(dev)
        z_orig = self.original
        with torch.no_grad():
            out0, self.orig_feats = self.model.forward(z_orig, schedule.timestep(self.k), self.cond,
                                                       self.settings.features, self.geometry.feature_hw)
            self.orig_next = schedule.step(out0, self.k, z_orig)  # one DDIM step of the original
        if self.settings.mask_reference == "trajectory":
            self.z_prev_ref = self.trajectory.at(self.k - 1).to(dev)
        else:
            self.z_prev_ref = self.orig_next
        self.latent = torch.nn.Parameter(z.detach().clone().to(dev, torch.float32))
        self.opt = torch.optim.Adam([self.latent], lr=self.settings.learning_rate)
        self.tracker.begin(self)
        self.supervision.begin(self)

    def _image(self, xy: torch.Tensor) -> list:
        return self.geometry.feature_to_image(xy.detach().cpu()).tolist()


def check_mask(mask: torch.Tensor | None, image_hw: tuple[int, int]) -> torch.Tensor | None:
    if mask is None:
        return None
    if not torch.is_tensor(mask) or mask.dim() != 2:
        raise DragInputError(f"mask must be a 2-D [H, W] tensor, got {getattr(mask, 'shape', type(mask))}",
                             input="mask")
    if tuple(mask.shape) != tuple(image_hw):
        raise DragInputError(f"mask is {mask.shape[1]}x{mask.shape[0]} but the image is "
                             f"{image_hw[1]}x{image_hw[0]}; they must match", input="mask")
    if not torch.isfinite(mask.float()).all():
        raise DragInputError("mask holds non-finite values", input="mask")
    if float(mask.max()) <= 0:
        raise DragInputError("mask is empty: nothing would be allowed to move (paint the region to edit, "
                             "or give no mask to allow the whole image)", input="mask")
    return (mask.float() > 0.5).float()


def drag(model: DiffusionModel, trajectory: Trajectory, cond: Conditioning, points: DragPoints,
         image_hw: tuple[int, int], mask: torch.Tensor | None = None, settings: DragSettings = DragSettings(),
         tracker=None, supervision=None, schedule=None, callback: Callback | None = None,
         regions: torch.Tensor | None = None) -> DragResult:
    """Optimise the inverted latent so each handle's content moves to its target.

    points are image pixels; mask [H, W] marks the editable region (None: all editable);
    regions [H, W] are optional superpixel labels (e.g. from the auto-mask) for strategies that use them.
    """
    tracker = tracker or NearestNeighbourTracker()
    supervision = supervision or PointDragSupervision()
    schedule = schedule or SingleTimestep()
    from .strategies import check_compatible  # the registry imports every strategy module
    check_compatible(tracker, supervision, schedule)
    if len(points) == 0:
        raise DragInputError("no points given", input="points")
    points.validate_in(image_hw[1], image_hw[0])
    mask = check_mask(mask, image_hw)
    model.check_features(settings.features)
    latent_hw = tuple(trajectory.latents.shape[-2:])
    geometry = Geometry(tuple(image_hw), latent_hw, settings.features.resolve(tuple(image_hw)))
    return model.run(Stage("drag", grad=True), cond, latent_hw, lambda: _optimise(
        model, trajectory, cond, geometry, points, mask, settings, tracker, supervision, schedule, callback, regions))


def _optimise(model, trajectory, cond, geometry, points, mask, settings, tracker, supervision, schedule, callback,
              regions) -> DragResult:
    with torch.inference_mode(False), torch.enable_grad():
        # ComfyUI hands over inference tensors, which autograd may not save: work on copies
        trajectory, cond = Trajectory(trajectory.latents.clone()), cond.detached()
        mask = None if mask is None else mask.clone()
        regions = None if regions is None else regions.clone()
        session = DragSession(model, trajectory, cond, geometry, points, mask, settings, tracker, supervision,
                              callback, schedule.total(), regions)
        schedule.run(session)
        original = session.original.detach().clone() if settings.original_path == "denoised" else None
        return DragResult(session.latent.detach().clone(), session.k, session.history[-1],
                          session.history, session.steps, [list(t) for t in points.targets], geometry, original)
