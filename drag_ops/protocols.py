"""What the drag loop (drag.DragSession, pipeline, plan) asks of its three strategies, and what a one-pass
edit (one_pass.run_one_pass) asks of the edit of its inverted latent, as Protocols.

Every strategy subclasses its Protocol explicitly and so inherits the defaults written here: the
loop calls each method and reads each attribute directly, and a strategy states what it needs or
offers by overriding one. tests/test_variants.py checks that every registered strategy does.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol, runtime_checkable

import torch
import torch.nn.functional as F


@runtime_checkable
class Strategy(Protocol):
    name: str  # the user-facing name (strategies.REGISTRIES)
    # needs the original image's superpixel labels (session.labels / session.regions): AdaptiveDrag's
    # semantic regions; the pipeline computes them only when some strategy asks
    uses_regions: bool = False

    def conflicts(self, tracker: Tracker, supervision: Supervision, schedule: Schedule) -> str | None:
        """Why this strategy cannot work with these partners, or None."""
        return None


@runtime_checkable
class Tracker(Strategy, Protocol):
    # sets session.confidence at each tracking (what StableDrag's confident supervision switches on)
    reports_confidence: bool = False

    def begin(self, session) -> None:
        """A new timestep's original features are in the session."""

    def track(self, session, feats: torch.Tensor) -> None:
        """Move session.handles after an update, from the current features."""

    def settled(self, session) -> torch.Tensor | None:
        """[N] bool of handles the tracker lets count as arrived when they are within reach, or None
        for all of them (FreeDrag's line search holds back intermediate targets)."""
        return None


@runtime_checkable
class Supervision(Strategy, Protocol):
    def begin(self, session) -> None:
        """A new timestep's original features are in the session."""

    def loss(self, session, feats: torch.Tensor) -> torch.Tensor:
        """The motion-supervision loss of the current features."""


@runtime_checkable
class Schedule(Strategy, Protocol):
    def total(self) -> int:
        """Updates to report progress against."""

    def run(self, session) -> None:
        """The whole latent optimisation on the session."""

    def denoise_steps(self) -> int:
        """DDIM steps the drag itself denoises on the way (GoodDrag's alternation), so sampling does fewer."""
        return 0


@dataclass
class Moves:
    """A one-pass edit's geometry at the latent's resolution, as its LatentEdit computes it. FastDrag:
    handles, targets [n, 2] latent (x, y) and the warped region [h, w]; RegionDrag: source and target
    pixels [M, 2] (x, y). editable: [h, w] where sampling may change the latent (None: everywhere);
    pixels: [H, W] where the output may differ from the input image (None: everywhere)."""

    handles: torch.Tensor | None = None
    targets: torch.Tensor | None = None
    region: torch.Tensor | None = None
    source: torch.Tensor | None = None
    target: torch.Tensor | None = None
    editable: torch.Tensor | None = None
    pixels: torch.Tensor | None = None

    def kept_outside(self, editable: torch.Tensor, mask: torch.Tensor | None, image_hw) -> Moves:
        """These moves with the latent held outside ``editable`` [h, w] and the output kept outside it and
        the user's mask [H, W] (or None)."""
        up = F.interpolate(editable[None, None].float(), size=image_hw, mode="nearest")[0, 0] > 0.5
        self.editable, self.pixels = editable, up if mask is None else (mask > 0.5) | up
        return self


@runtime_checkable
class LatentEdit(Protocol):
    """The edit of the inverted latent in a one-pass drag (FastDrag's warp, RegionDrag's region copy).
    paste_outside: the output outside Moves.pixels is the input image's own pixels."""

    paste_outside: bool = False

    def moves(self, points, image_hw: tuple[int, int], latent_hw: tuple[int, int],
              mask: torch.Tensor | None) -> Moves:
        """The geometry, with every check of the points and the (checked) mask against this edit
        (DragInputError naming the input): called before any stage runs."""

    def begin(self, z: torch.Tensor, moves: Moves, generator: torch.Generator) -> torch.Tensor:
        """The inverted latent as sampling starts from it."""
        return z

    def at_step(self, z: torch.Tensor, level: torch.Tensor, timestep: int, num_train: int,
                moves: Moves) -> torch.Tensor:
        """The latent before a sampling step at ``timestep``, given the inversion's latent there."""
        return z
