"""AdaptiveDrag's semantic regions (Sec. 3.4.2, Fig. 5): motion supervision and point tracking over
the handle's superpixel instead of fixed squares.

The superpixels are those of the auto-mask (:mod:`.automask`), of the ORIGINAL image, in feature
coordinates (``session.regions``). Each handle's region is the set of offsets from its start point
to the pixels of the superpixel it starts in; the region travels with the handle.

- Supervision: the region intersected with the half-plane toward the target (the part of the
  superpixel that leads the motion) and with a disc of radius r1.
- Tracking: the whole region within radius r2 is the search window, scored as DragDiffusion's
  tracker (L1 to the original handle feature).
- Radii adapt to the superpixel: with r_eq = sqrt(area / pi) its equivalent radius (feature pixels),
  r1 = clip(r_eq / 2, 1, 4) and r2 = clip(r_eq, 3, 12). The paper gives no numbers; the bounds are
  DragDiffusion's fixed r1 = 1, r2 = 3 and GoodDrag's r1 = 4, r2 = 12, so a small superpixel behaves
  like DragDiffusion and a large one like GoodDrag.

The pipeline's drag stage passes the auto-mask's labels, or computes them with the preset's
``auto_mask`` settings. If a bare ``drag(..., regions=None)`` call gives none, the strategies compute
them once per session from the session's clean latent with their own (default) settings.
"""

from __future__ import annotations

import math

import torch

from . import rules
from .automask import AutoMaskSettings, superpixels_of_latent
from .coords import sample_at
from .rules import Part
from .supervision import unit_steps


def ensure_regions(s, settings: AutoMaskSettings) -> torch.Tensor:
    """The session's superpixel labels [hf, wf], computed (once) if none were given."""
    if getattr(s, "regions", None) is None:
        labels = superpixels_of_latent(s.model, s.trajectory.at(0), s.cond, settings)
        s.regions = s.geometry.labels_to_feature(labels).to(s.device)
    return s.regions


def adaptive_radii(area: int) -> tuple[float, float]:
    """(r1, r2) in feature pixels for a superpixel of `area` feature pixels (see module doc)."""
    r_eq = math.sqrt(max(area, 1) / math.pi)
    return min(max(r_eq / 2, 1.0), 4.0), min(max(r_eq, 3.0), 12.0)


def region_offsets(regions: torch.Tensor, start: torch.Tensor, target: torch.Tensor | None,
                   radius: float) -> torch.Tensor:
    """Offsets [P, 2] (dx, dy) from `start` to the pixels of its superpixel within `radius`, and, if
    `target` is given, in the closed half-plane toward it. Always holds (0, 0)."""
    regions = regions.cpu()
    h, w = regions.shape
    cx = min(max(int(round(float(start[0]))), 0), w - 1)
    cy = min(max(int(round(float(start[1]))), 0), h - 1)
    ys, xs = torch.nonzero(regions == regions[cy, cx], as_tuple=True)
    off = torch.stack([xs, ys], -1).float() - start.float().cpu()[None]
    keep = off.norm(dim=-1) <= radius
    if target is not None:
        u = (target - start).float().cpu()
        keep &= off @ (u / u.norm().clamp_min(1e-6)) >= 0
    off = off[keep]
    if not (off.abs().sum(-1) < 1e-6).any():
        off = torch.cat([off, torch.zeros(1, 2)])
    return off


class _Regions:
    uses_regions = True  # the pipeline hands these strategies superpixel labels
    # no settings of their own (the radii follow the superpixel, adaptive_radii); superpixels: how a
    # bare drag() without labels makes them (None: AutoMaskSettings' defaults)
    RULES = {"superpixels": Part(AutoMaskSettings, optional=True)}

    def __init__(self, superpixels: AutoMaskSettings | None = None):
        self.superpixels = superpixels
        rules.check(self)

    def areas(self, s) -> list[int]:
        regions = ensure_regions(s, self.superpixels or AutoMaskSettings())
        h, w = regions.shape
        out = []
        for x, y in s.starts.tolist():
            cx, cy = min(max(int(round(x)), 0), w - 1), min(max(int(round(y)), 0), h - 1)
            out.append(int((regions == regions[cy, cx]).sum()))
        return out


class SemanticRegionTracker(_Regions):
    """AdaptiveDrag (Sec. 3.4.2): nearest-neighbour tracking whose search window is the handle's
    superpixel (moving with the handle) within the adaptive radius r2."""

    name = "semantic_region"

    def begin(self, s) -> None:
        regions = ensure_regions(s, self.superpixels or AutoMaskSettings())
        self.reference = sample_at(s.orig_feats, s.starts)  # [N, C]
        self.radii = [adaptive_radii(a)[1] for a in self.areas(s)]
        self.offsets = [region_offsets(regions, s.starts[i], None, self.radii[i]) for i in range(len(s.starts))]

    def track(self, s, feats: torch.Tensor) -> None:
        H, W = feats.shape[-2:]
        for i in range(len(s.handles)):
            cand = torch.round(s.handles[i].cpu()[None] + self.offsets[i])
            inside = (cand[:, 0] >= 0) & (cand[:, 0] < W) & (cand[:, 1] >= 0) & (cand[:, 1] < H)
            cand = cand[inside] if inside.any() else torch.round(s.handles[i].cpu()[None]).clamp_min(0)
            xs, ys = cand[:, 0].long().to(feats.device), cand[:, 1].long().to(feats.device)
            score = (feats[0, :, ys, xs] - self.reference[i][:, None]).abs().sum(0)  # [P]
            s.handles[i] = cand[int(torch.argmin(score))].to(s.handles)


class SemanticRegionSupervision(_Regions):
    """AdaptiveDrag (Sec. 3.4.2): DragDiffusion's motion supervision (eq. 3 there) with the square
    patch replaced by the handle's superpixel, on the target side of the handle, within radius r1:
    sum over q in the region of |F(h + q + d) - sg(F(h + q))|_1 (mean over channels)."""

    name = "semantic_region"

    def begin(self, s) -> None:
        regions = ensure_regions(s, self.superpixels or AutoMaskSettings())
        self.radii = [adaptive_radii(a)[0] for a in self.areas(s)]
        self.offsets = [region_offsets(regions, s.starts[i], s.targets[i], self.radii[i])
                        for i in range(len(s.starts))]

    def loss(self, s, feats: torch.Tensor) -> torch.Tensor:
        d = unit_steps(s, None)
        total = feats.new_zeros(())
        for i in range(len(s.handles)):
            patch = s.handles[i][None] + self.offsets[i].to(s.handles)  # [P, 2]
            moved = sample_at(feats, patch + d[i])
            ref = sample_at(feats, patch).detach()
            total = total + (moved - ref).abs().mean(-1).sum() * s.active[i]
        return total
