"""Point trackers: where has each handle's content gone after a latent update?

A tracker sees the session at the start of every timestep (``begin``) and the current
features after every forward pass (``track``); it updates ``session.handles`` in feature
coordinates and may set ``session.confidence``.
"""

from __future__ import annotations

import torch

from . import rules
from .protocols import Tracker
from .coords import MAX_RADIUS, sample_at
from .rules import Number


def window_search(feats: torch.Tensor, centre: torch.Tensor, radius: int, score) -> tuple[torch.Tensor, torch.Tensor]:
    """Best position of score(window [C, h, w]) -> [h, w] in a square window around centre.

    Returns (xy, best score). Lower score is better.
    """
    H, W = feats.shape[-2:]
    cx, cy = int(round(float(centre[0]))), int(round(float(centre[1])))
    x0, x1 = max(cx - radius, 0), min(cx + radius + 1, W)
    y0, y1 = max(cy - radius, 0), min(cy + radius + 1, H)
    s = score(feats[0, :, y0:y1, x0:x1])
    i = int(torch.argmin(s))
    y, x = divmod(i, s.shape[1])
    return torch.tensor([x0 + x, y0 + y], dtype=torch.float32), s.reshape(-1)[i]


class NearestNeighbourTracker(Tracker):
    """DragDiffusion (Sec. 3.3, eq. 4): the handle moves to the position within r2 whose feature is
    nearest (L1) to the ORIGINAL handle's feature in the un-edited latent."""

    name = "nearest"
    RULES = {"radius": Number(0, MAX_RADIUS, whole=True)}  # r2, feature pixels

    def __init__(self, radius: int = 3):
        self.radius = radius
        rules.check(self)

    def begin(self, s) -> None:
        self.reference = sample_at(s.orig_feats, s.starts)  # [N, C]

    def track(self, s, feats: torch.Tensor) -> None:
        for i in range(len(s.handles)):
            ref = self.reference[i][:, None, None]
            s.handles[i], _ = window_search(feats, s.handles[i], self.radius,
                                            lambda win: (win - ref).abs().sum(0))
