"""What the drag loop (drag.DragSession, pipeline, plan) asks of its three strategies, as Protocols.

Every strategy subclasses its Protocol explicitly and so inherits the defaults written here: the
loop calls each method and reads each attribute directly, and a strategy states what it needs or
offers by overriding one. tests/test_variants.py checks that every registered strategy does.
"""

from __future__ import annotations

from typing import Protocol, runtime_checkable

import torch


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
