"""AdaptiveDrag's semantic regions (Sec. 3.4.2, Fig. 5): motion supervision and point tracking over
the handle's superpixel instead of fixed squares.

The superpixels are those of the auto-mask (:mod:`.automask`), of the ORIGINAL image
(``session.labels`` at the image's resolution, ``session.regions`` at the features').

Which pixels (``region``):
- "under_handle" (the authors' code, utils/drag_utils_nocontrol_sam_area_dmask_noiseloss.py::
  extract_super_mask): the original image's superpixel under the handle's CURRENT position, taken to
  the feature resolution by area (a feature pixel belongs to it when at least half of its image
  pixels do: the code's bilinear cv2.resize of the 0/1 mask), intersected with the half-plane toward
  the target (angle to the handle-to-target direction at most 90 degrees) and with the square of
  radius r around the handle; when the superpixel part holds fewer than a quarter of a mean
  superpixel's feature pixels (and always when it holds none: ours), the half-disc of radius r
  instead. The same region (with its own r) masks the supervision patch and the tracking window.
- "travelling" (ours): the superpixel the handle STARTS in, carried along with the handle (offsets
  from the start), within a disc of radius r; the supervision keeps the half toward the target, the
  tracker all of it.

Radii (``radii``):
- "spacing" (the code: point_tracking, drag_diffusion_update): s = the distance in image pixels
  (truncated) from the superpixel's centroid to the nearest other superpixel centroid; r1 = s // 7,
  r2 = (2 s) // 5, used as feature pixels, recomputed at every step for the superpixel under the
  handle; each at least 1 (ours: at r1 = 0 nothing is supervised). The code looks s up at
  segments[x, y] (x, y the feature coordinates, so a transposed point at half the scale) and takes the
  centroid of the next label (regionprops of labels + 1 on labels from 1); that is broken and not
  reproduced: s is the handle's own superpixel's.
- "area" (ours): with r_eq = sqrt(area / pi) the superpixel's equivalent radius (feature pixels),
  r1 = clip(r_eq / 2, 1, 4) and r2 = clip(r_eq, 3, 12): DragDiffusion's fixed r1 = 1, r2 = 3 and
  GoodDrag's r1 = 4, r2 = 12 as bounds, fixed at the start.

The pipeline's drag stage passes the auto-mask's labels, or computes them with the preset's
``auto_mask`` settings. If a bare ``drag(..., regions=None)`` call gives none, the strategies compute
them once per session from the session's clean latent with their own (default) settings.
"""

from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F

from . import rules
from .protocols import Supervision, Tracker
from .automask import AutoMaskSettings, superpixels_of_latent
from .coords import MAX_RADIUS, sample_at
from .rules import Choice, Number, Part
from .supervision import unit_steps


def ensure_regions(s, settings: AutoMaskSettings) -> torch.Tensor:
    """The session's superpixel labels [hf, wf] (and ``s.labels`` [H, W]), computed once if none were given."""
    if s.regions is None:
        labels = superpixels_of_latent(s.model, s.trajectory.at(0), s.cond, settings)
        s.labels = labels.cpu()
        s.regions = s.geometry.labels_to_feature(labels).to(s.device)
    return s.regions


def adaptive_radii(area: int) -> tuple[float, float]:
    """(r1, r2) in feature pixels for a superpixel of `area` feature pixels ("area" radii)."""
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


class Superpixels:
    """The image-resolution labels of a session with what the "under_handle" regions and the
    "spacing" radii read: each label's centroid spacing, and the feature-resolution masks."""

    def __init__(self, labels: torch.Tensor, feature_hw: tuple[int, int], n_segments: int):
        self.labels = labels.cpu().long()
        self.feature_hw = feature_hw
        H, W = self.labels.shape
        self.scale = (H / feature_hw[0], W / feature_hw[1])  # image pixels per feature pixel (y, x)
        flat = self.labels.flatten().numpy()
        ids, inverse = np.unique(flat, return_inverse=True)
        count = np.bincount(inverse).astype(np.float64)
        rows, cols = np.divmod(np.arange(flat.size), W)
        centroids = np.stack([np.bincount(inverse, rows) / count, np.bincount(inverse, cols) / count], -1)
        gaps = np.sqrt(((centroids[:, None] - centroids[None]) ** 2).sum(-1))
        np.fill_diagonal(gaps, np.inf)
        self.spacing = {int(i): int(g) if np.isfinite(g) else 0 for i, g in zip(ids, gaps.min(-1))}
        # at least 1 (ours): with superpixels under 4 feature pixels the code's 0 keeps an empty region
        self.min_area = max(1, int(feature_hw[0] * feature_hw[1] / (n_segments * 4)))
        self._masks: dict[int, torch.Tensor] = {}
        hf, wf = feature_hw
        self._y, self._x = np.mgrid[0:hf, 0:wf].astype(np.float64)

    def label_at(self, xy: torch.Tensor) -> int:
        """The label under feature coordinates xy (as the code: int() of the scaled position)."""
        x, y = float(xy[0]), float(xy[1])
        H, W = self.labels.shape
        row = min(max(int(y * self.scale[0]), 0), H - 1)
        col = min(max(int(x * self.scale[1]), 0), W - 1)
        return int(self.labels[row, col])

    def radii(self, xy: torch.Tensor) -> tuple[int, int]:
        """("spacing" radii) r1 = s // 7, r2 = (2 s) // 5 for the superpixel under xy, at least 1: the code's
        r1 is 0 for superpixels under 7 px apart (small images), which leaves the handle's half-square
        without a pixel, the loss 0 and the drag a silent no-op."""
        spacing = self.spacing[self.label_at(xy)]
        return max(1, spacing // 7), max(1, (2 * spacing) // 5)

    def mask(self, label: int) -> torch.Tensor:
        """The superpixel at the feature resolution [hf, wf] bool: feature pixels at least half inside."""
        if label not in self._masks:
            inside = (self.labels == label).float()[None, None]
            area = F.interpolate(inside, size=self.feature_hw, mode="bilinear", align_corners=False)[0, 0]
            self._masks[label] = area >= 0.5
        return self._masks[label]

    def region(self, handle: torch.Tensor, target: torch.Tensor, radius: int) -> torch.Tensor:
        """The "under_handle" region [hf, wf] bool for a handle at feature coordinates (see the module doc)."""
        px, py = float(handle[0]), float(handle[1])
        tx, ty = float(target[0]), float(target[1])
        angle = np.arctan2(self._y - py, self._x - px)
        # the handle-to-target angle in single precision, as the code computes it (its points are
        # float32 tensors): pixels at exactly 90 degrees fall on the side that rounding puts them
        toward = np.arctan2(np.float32(ty - py), np.float32(tx - px))
        half = np.abs(np.angle(np.exp(1j * (angle - toward)))) <= np.pi / 2
        half = torch.from_numpy(half)
        region = self.mask(self.label_at(handle)) & half
        if int(region.sum()) < self.min_area:
            near = torch.from_numpy(np.sqrt((self._x - px) ** 2 + (self._y - py) ** 2) <= radius)
            region = near & half
        return region


def square(centre: torch.Tensor, radius: int, hw: tuple[int, int]) -> tuple[int, int, int, int]:
    """(y0, y1, x0, x1): the square of `radius` around int() of the centre, cut at the map's edges."""
    cx, cy = int(float(centre[0])), int(float(centre[1]))
    return (max(0, cy - radius), min(hw[0], cy + radius + 1), max(0, cx - radius), min(hw[1], cx + radius + 1))


class _Regions:
    uses_regions = True  # the pipeline hands these strategies superpixel labels
    # superpixels: how a bare drag() without labels makes them (None: AutoMaskSettings' defaults); their
    # n_segments also sizes the "under_handle" fallback
    RULES = {"superpixels": Part(AutoMaskSettings, optional=True),
             "region": Choice(("under_handle", "travelling")), "radii": Choice(("spacing", "area"))}

    def __init__(self, superpixels: AutoMaskSettings | None = None, region: str = "under_handle",
                 radii: str = "spacing"):
        self.superpixels, self.region, self.radii = superpixels, region, radii
        rules.check(self)

    def _settings(self) -> AutoMaskSettings:
        return self.superpixels or AutoMaskSettings()

    def areas(self, s) -> list[int]:
        regions = ensure_regions(s, self._settings())
        h, w = regions.shape
        out = []
        for x, y in s.starts.tolist():
            cx, cy = min(max(int(round(x)), 0), w - 1), min(max(int(round(y)), 0), h - 1)
            out.append(int((regions == regions[cy, cx]).sum()))
        return out

    def _superpixels(self, s) -> Superpixels | None:
        """The image-resolution view, when the region or the radii need it."""
        if self.region != "under_handle" and self.radii != "spacing":
            return None
        ensure_regions(s, self._settings())
        labels = s.labels
        if labels is None:
            raise ValueError("the 'under_handle' regions and 'spacing' radii need the superpixel labels at "
                             "the image's resolution")
        cached = s.superpixels
        if cached is None or cached.labels.shape != labels.shape or cached.feature_hw != tuple(s.geometry.feature_hw):
            cached = Superpixels(labels, tuple(s.geometry.feature_hw), self._settings().n_segments)
            s.superpixels = cached
        return cached

    def radius_for(self, s, i: int, which: int) -> int | float:
        """r1 (which = 0) or r2 (which = 1) for handle i now."""
        if self.radii == "spacing":
            return self.sp.radii(s.handles[i])[which]
        return self.fixed_radii[i][which]

    def begin_regions(self, s) -> None:
        self.sp = self._superpixels(s)
        if self.radii == "area":
            self.fixed_radii = [adaptive_radii(a) for a in self.areas(s)]
        self.radii_used = [tuple(self.sp.radii(xy)) if self.radii == "spacing" else self.fixed_radii[i]
                           for i, xy in enumerate(s.starts)]


class SemanticRegionTracker(_Regions, Tracker):
    """AdaptiveDrag (Sec. 3.4.2): nearest-neighbour tracking (L1 to the original handle feature) whose
    search window is the handle's region within r2 (see the module doc)."""

    name = "semantic_region"

    def begin(self, s) -> None:
        regions = ensure_regions(s, self._settings())
        self.begin_regions(s)
        self.reference = sample_at(s.orig_feats, s.starts)  # [N, C]
        if self.region == "travelling":
            self.offsets = [region_offsets(regions, s.starts[i], None, self.radius_for(s, i, 1))
                            for i in range(len(s.starts))]

    def track(self, s, feats: torch.Tensor) -> None:
        H, W = feats.shape[-2:]
        for i in range(len(s.handles)):
            if self.region == "under_handle":
                r = int(self.radius_for(s, i, 1))
                y0, y1, x0, x1 = square(s.handles[i], r, (H, W))
                inside = self.sp.region(s.handles[i], s.targets[i], r)[y0:y1, x0:x1].to(feats.device)
                score = (feats[0, :, y0:y1, x0:x1] - self.reference[i][:, None, None]).abs().sum(0)
                score = torch.where(inside, score, torch.full_like(score, float("inf")))
                row, col = divmod(int(torch.argmin(score)), score.shape[1])
                s.handles[i] = torch.tensor([x0 + col, y0 + row], dtype=s.handles.dtype)
                continue
            cand = torch.round(s.handles[i].cpu()[None] + self.offsets[i])
            inside = (cand[:, 0] >= 0) & (cand[:, 0] < W) & (cand[:, 1] >= 0) & (cand[:, 1] < H)
            cand = cand[inside] if inside.any() else torch.round(s.handles[i].cpu()[None]).clamp_min(0)
            xs, ys = cand[:, 0].long().to(feats.device), cand[:, 1].long().to(feats.device)
            score = (feats[0, :, ys, xs] - self.reference[i][:, None]).abs().sum(0)  # [P]
            s.handles[i] = cand[int(torch.argmin(score))].to(s.handles)


class SemanticRegionSupervision(_Regions, Supervision):
    """AdaptiveDrag (Sec. 3.4.2): DragDiffusion's motion supervision (eq. 3 there) over the handle's
    region instead of a full square: sum over q in the region of |F(h + q + d) - sg(F(h + q))|_1 (mean
    over channels). With "under_handle" regions the mean runs over the whole square of radius r1 (the
    region's pixels, zero elsewhere) times its (2 r1 + 1)^2 pixels, as the code's masked l1_loss.

    ``stop_distance``: a handle this close to its target (feature pixels) drops out of the loss (the
    code: 1, while the drag stops at 2); None: the drag's reach distance."""

    name = "semantic_region"
    RULES = {**_Regions.RULES, "stop_distance": Number(0, MAX_RADIUS, optional=True)}

    def __init__(self, superpixels: AutoMaskSettings | None = None, region: str = "under_handle",
                 radii: str = "spacing", stop_distance: float | None = 1.0):
        self.stop_distance = stop_distance
        super().__init__(superpixels, region, radii)

    def begin(self, s) -> None:
        regions = ensure_regions(s, self._settings())
        self.begin_regions(s)
        if self.region == "travelling":
            self.offsets = [region_offsets(regions, s.starts[i], s.targets[i], self.radius_for(s, i, 0))
                            for i in range(len(s.starts))]

    def _supervised(self, s) -> torch.Tensor:
        if self.stop_distance is None:
            return s.active
        return ((s.targets - s.handles).norm(dim=-1) >= self.stop_distance).float().to(s.active)

    def loss(self, s, feats: torch.Tensor) -> torch.Tensor:
        d = unit_steps(s, None)
        H, W = feats.shape[-2:]
        total = feats.new_zeros(())
        supervised = self._supervised(s)
        for i in range(len(s.handles)):
            if not float(supervised[i]):
                continue
            if self.region == "under_handle":
                r = int(self.radius_for(s, i, 0))
                y0, y1, x0, x1 = square(s.handles[i], r, (H, W))
                inside = self.sp.region(s.handles[i], s.targets[i], r)[y0:y1, x0:x1].to(feats.device)
                ys, xs = torch.meshgrid(torch.arange(y0, y1), torch.arange(x0, x1), indexing="ij")
                patch = torch.stack([xs.flatten(), ys.flatten()], -1).to(s.handles)  # [P, 2], row-major
                moved = sample_at(feats, patch + d[i])
                ref = feats[0, :, y0:y1, x0:x1].flatten(1).T.detach()
                diff = (moved - ref).abs() * inside.flatten()[:, None].to(moved)
                total = total + (2 * r + 1) ** 2 * diff.sum() / diff.numel()
                continue
            patch = s.handles[i][None] + self.offsets[i].to(s.handles)  # [P, 2]
            moved = sample_at(feats, patch + d[i])
            ref = sample_at(feats, patch).detach()
            total = total + (moved - ref).abs().mean(-1).sum()
        return total
