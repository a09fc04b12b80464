"""FastDrag's one-step latent warpage (Zhao et al., NeurIPS 2024): the inverted latent is stretched
like an elastic sheet so each handle's content lands on its target, in one step, without gradients.

The warped region is the mask (FastDrag's "region to drag"). Its pixels move by the drag vector
scaled down linearly to zero at the circle around the mask's bounding box (the latent warpage
function, paper Sec. 3.2, Fig. 3); with several handles each pixel takes the inverse-distance
weighted mean of their vectors. Pixels left empty are filled from their nearest valid neighbours
to the left, right, above and below, weighted by inverse distance (bilateral nearest-neighbour
interpolation, BNNI, Sec. 3.3). As the authors' code (utils/continuous_drag.py::
drag_stretch_multipoint_ratio_interp) runs it by default, several pixels landing on one place keep
the first in row-major order and the fill scans in row-major order, so a filled pixel serves the
holes after it.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from . import rules
from .errors import DragInputError
from .protocols import LatentEdit, Moves
from .rules import Choice, Flag

EPS = 1e-4  # the code's guard in 1 / (|C - A| + eps)


@dataclass
class LatentWarp(LatentEdit):
    """fill: "sequential" (the code: holes filled in row-major order, each seeing the holes filled
    before it) or "simultaneous" (the paper's BNNI: every hole reads only pixels that were never
    holes). collisions: "first" (the code's "not recover": the first pixel in row-major order to
    land on a place keeps it) or "mean" (the code's alternative "mean when recover"). paste_outside:
    off, sampling regenerates the whole image as the code does; on, the latent outside the mask and
    the places the warp writes is held to the inversion's at each step and the output outside them is
    the input's own pixels (as RegionDrag's code keeps the rest of the image)."""

    fill: str = "sequential"
    collisions: str = "first"
    paste_outside: bool = False

    RULES = {"fill": Choice(("sequential", "simultaneous")), "collisions": Choice(("first", "mean")),
             "paste_outside": Flag()}

    def __post_init__(self):
        rules.check(self)

    def moves(self, points, image_hw, latent_hw, mask) -> Moves:
        # the code works at half the image size (sup_res): points rounded there, the mask downsampled there
        # (nearest) and then to the latent (bilinear, antialiased: torchvision's resize), any coverage counting
        half = (image_hw[0] // 2, image_hw[1] // 2)
        if mask is None:
            region = torch.ones(latent_hw, dtype=torch.bool)
        else:
            m = F.interpolate(mask[None, None], size=half, mode="nearest")
            region = F.interpolate(m, size=latent_hw, mode="bilinear", antialias=True, align_corners=False)[0, 0] > 0
        if not bool(region.any()):
            raise DragInputError("the mask holds no region at the latent's resolution; paint a larger region",
                                 input="mask")
        to_half = torch.tensor([half[1] / image_hw[1], half[0] / image_hw[0]])
        to_latent = torch.tensor([latent_hw[1] / half[1], latent_hw[0] / half[0]])
        handles = torch.round(torch.tensor(points.handles) * to_half) * to_latent
        targets = torch.round(torch.tensor(points.targets) * to_half) * to_latent
        h, w = latent_hw
        for i, (x, y) in enumerate(handles.tolist(), 1):
            if not region[min(round(y), h - 1), min(round(x), w - 1)]:
                raise DragInputError(f"pair {i}: the handle lies outside the mask; FastDrag stretches the masked "
                                     "region from each handle, so paint the part to move around its handle",
                                     input="points")
        moves = Moves(handles=handles, targets=targets, region=region)
        if not self.paste_outside:
            return moves
        reach = region.clone()  # the region and every place the warp writes to
        dest = displacements(handles, targets, region)[1]
        reach[dest[:, 1], dest[:, 0]] = True
        return moves.kept_outside(reach, mask, image_hw)

    def begin(self, z, moves, generator):
        return self.warp(z, moves.handles.to(z.device), moves.targets.to(z.device), moves.region.to(z.device))[0]

    def warp(self, latent: torch.Tensor, handles: torch.Tensor, targets: torch.Tensor,
             region: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Warp latent [1, C, h, w]; handles, targets [n, 2] in latent (x, y); region [h, w] bool.
        Returns (warped latent, moved [h, w] bool: where a pixel was written or filled)."""
        src, dest = displacements(handles, targets, region)
        out = latent.clone()
        out[..., region] = 0
        h, w = region.shape
        flat = dest[:, 1] * w + dest[:, 0]
        values = latent[0][:, src[:, 1], src[:, 0]]  # [C, N]
        written = torch.zeros(h * w, dtype=torch.bool, device=latent.device)
        if self.collisions == "first":
            # the first source (row-major) for each destination
            order = torch.arange(len(flat), device=flat.device)
            first = torch.full((h * w,), len(flat), dtype=torch.long, device=flat.device)
            first.scatter_reduce_(0, flat, order, reduce="amin")
            keep = first[flat] == order
            out[0].view(out.shape[1], -1)[:, flat[keep]] = values[:, keep]
        else:
            sums = torch.zeros(out.shape[1], h * w, dtype=latent.dtype, device=latent.device)
            sums.index_add_(1, flat, values)
            count = torch.zeros(h * w, dtype=latent.dtype, device=latent.device).index_add_(
                0, flat, torch.ones_like(flat, dtype=latent.dtype))
            hit = count > 0
            out[0].view(out.shape[1], -1)[:, hit] = sums[:, hit] / count[hit]
        written[flat] = True
        written = written.view(h, w)
        holes = region & ~written
        out = fill_holes(out, holes, sequential=self.fill == "sequential")
        return out, written | holes


def displacements(handles: torch.Tensor, targets: torch.Tensor, region: torch.Tensor):
    """(source pixels [N, 2], destination pixels [N, 2]) as integer latent (x, y), sources in
    row-major order: the latent warpage function (paper eq. 2-4; code get_scale_factor)."""
    ys, xs = torch.nonzero(region, as_tuple=True)
    if len(ys) == 0:
        raise DragInputError("the region to warp is empty at the latent's resolution", input="mask")
    c = torch.stack([ys, xs], -1).double()  # (y, x) as the code counts
    o = (c.min(0).values + c.max(0).values) / 2  # the circle around the bounding box
    radius = (o - c.min(0).values).norm()
    a = handles.double().flip(-1)  # (x, y) -> (y, x)
    shift = (targets.double() - handles.double()).flip(-1)
    ac = c[:, None] - a[None]  # [N, n, 2]
    d_ac = ac.norm(dim=-1)
    oa = (a - o)[None]
    unit = ac / d_ac.clamp(min=1e-12)[..., None]
    l0 = (unit * oa).sum(-1)
    # the distance from A to the circle along the ray through C (|AP| in the paper's Fig. 3)
    ap = (radius ** 2 - (oa ** 2).sum(-1) + l0 ** 2).clamp(min=0).sqrt() - l0
    # |PC| / |AP|: the drag vector's share, 1 at the handle, 0 on the circle; the code divides by zero at
    # C = A and leaves that pixel to the fill; the limit is 1
    factor = torch.where(d_ac > 0, (ap - d_ac).abs() / ap.clamp(min=1e-12), torch.ones_like(d_ac))
    weight = 1 / (d_ac + EPS)
    weight = weight / weight.sum(-1, keepdim=True)
    move = (weight[..., None] * factor[..., None] * shift[None]).sum(1)
    h, w = region.shape
    dest = torch.round(c + move)  # half to even, as torch.round in the code
    dest[:, 0].clamp_(0, h - 1)
    dest[:, 1].clamp_(0, w - 1)
    return c.flip(-1).long(), dest.flip(-1).long()


def fill_holes(latent: torch.Tensor, holes: torch.Tensor, sequential: bool = True) -> torch.Tensor:
    """Bilateral nearest-neighbour interpolation (paper Sec. 3.3; code continuous_drag.py::interpolation):
    each hole becomes the mean of the nearest valid pixel to its left, right, top and bottom, weighted by
    1 / distance. sequential: holes are visited in row-major order and a filled one counts as valid for
    those after it (the code); else only pixels that were never holes count (the paper)."""
    if not bool(holes.any()):
        return latent
    x = latent[0].detach().cpu().double().numpy().copy()  # [C, h, w]
    valid = ~holes.cpu().numpy()
    fixed = valid.copy()
    h, w = valid.shape
    for i, j in zip(*np.nonzero(~valid)):
        source = valid if sequential else fixed
        picks = []
        for line, at in ((source[i, :j][::-1], lambda k: (i, j - k)), (source[i, j + 1:], lambda k: (i, j + k)),
                         (source[:i, j][::-1], lambda k: (i - k, j)), (source[i + 1:, j], lambda k: (i + k, j))):
            hit = np.flatnonzero(line)
            if len(hit):
                k = int(hit[0]) + 1
                picks.append((1.0 / k, at(k)))
        if picks:
            total = sum(wt for wt, _ in picks)
            x[:, i, j] = sum(wt * x[:, p[0], p[1]] for wt, p in picks) / total
            valid[i, j] = True
    return torch.from_numpy(x)[None].to(latent)
