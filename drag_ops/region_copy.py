"""RegionDrag's region copy (Lu et al., ECCV 2024): the inverted latent under each handle region is
copied onto its target region, at every sampling step, from the inversion's latent at that step.

Regions come from point pairs as RegionDrag's own point mode derives them (region_utils/ui_utils.py::
region_to_points): each connected part of the mask that holds handles moves by the inverse-distance
weighted mean of those handles' drags (the 4 nearest), which maps its outline to the target region;
every target pixel then takes its source from the same interpolation run backwards over (at most 100
of) the moved pixels. The copy is dense (one source latent pixel per target latent pixel), so a
region can also be stretched or squeezed by its points.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from scipy import ndimage
from skimage import draw, measure

from . import rules
from .errors import DragInputError
from .protocols import LatentEdit, Moves
from .rules import Flag, Number

NEIGHBOURS = 4  # code: interpolate_points, the 4 nearest reference points
MAX_REFERENCES = 100  # code: interpolate_points(max_num=100), reference points spread by linspace


@dataclass
class RegionCopy(LatentEdit):
    """noise_scale: how much fresh noise replaces the handle region's latent before sampling (RegionDrag's
    alpha: 1 = all noise); copy_until: the copy runs at the sampling steps whose timestep is at least
    copy_until x 1000 (0: every step); paste_outside: the output outside the editable mask is the input
    image's own pixels."""

    noise_scale: float = 1.0
    copy_until: float = 0.0
    paste_outside: bool = True

    RULES = {"noise_scale": Number(0, 1.6), "copy_until": Number(0, 1), "paste_outside": Flag()}

    def __post_init__(self):
        rules.check(self)

    def copies_at(self, timestep: int, num_train: int) -> bool:
        return timestep >= self.copy_until * num_train

    def moves(self, points, image_hw, latent_hw, mask) -> Moves:
        source, target = region_pairs(mask, points.handles, points.targets, image_hw, latent_hw)
        # the latent is held to the inversion's outside the mask at each step (code: drag.py::backward)
        editable = (torch.ones(latent_hw, dtype=torch.bool) if mask is None else
                    torch.nn.functional.interpolate(mask[None, None], size=latent_hw, mode="nearest")[0, 0] > 0.5)
        editable[target[:, 1], target[:, 0]] = True  # ours: a copied pixel is never blended away
        return Moves(source=source, target=target).kept_outside(editable, mask, image_hw)

    def begin(self, z, moves, generator):
        """The handle region's latent mixed with fresh noise (code: drag.py::blur_source)."""
        source = moves.source.to(z.device)
        keep = (1 - self.noise_scale ** 2) ** 0.5 if self.noise_scale < 1 else 0.0
        z = z.clone()
        noise = torch.randn((z.shape[1], len(source)), generator=generator).to(z)
        z[0][:, source[:, 1], source[:, 0]] = z[0][:, source[:, 1], source[:, 0]] * keep + noise * self.noise_scale
        return z

    def at_step(self, z, level, timestep, num_train, moves):
        if not self.copies_at(timestep, num_train):
            return z
        return paste(z, level, moves.source.to(z.device), moves.target.to(z.device))


def paste(into: torch.Tensor, source_latent: torch.Tensor, source: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """into[target] = source_latent[source] (latents [1, C, h, w], pixels [M, 2] as (x, y)); a copy."""
    out = into.clone()
    out[0][:, target[:, 1], target[:, 0]] = source_latent[0][:, source[:, 1], source[:, 0]].to(out)
    return out


def latent_points(xy, image_hw: tuple[int, int], latent_hw: tuple[int, int]) -> np.ndarray:
    """Image pixels (x, y) -> latent pixels, truncated as the code's astype(int32) of point * 1/8."""
    scale = np.array([latent_hw[1] / image_hw[1], latent_hw[0] / image_hw[0]])
    return (np.asarray(xy, dtype=np.float64) * scale).astype(np.int64)


def region_pairs(mask: torch.Tensor | None, handles, targets, image_hw: tuple[int, int],
                 latent_hw: tuple[int, int]) -> tuple[torch.Tensor, torch.Tensor]:
    """(source, target) latent pixels [M, 2] (x, y), one pair per target pixel, from the mask's parts
    under the handles and the point pairs (image pixels). mask [H, W] (1 = region) or None: the whole
    image is one region. Raises DragInputError (input 'points' or 'mask') for regions that cannot work."""
    h, w = latent_hw
    if mask is None:
        region = np.ones((h, w), dtype=bool)
    else:
        # the code resizes the painted region to the latent (cv2 bilinear), keeping what is not zero
        m = torch.nn.functional.interpolate(mask[None, None].float(), size=latent_hw, mode="bilinear",
                                            align_corners=False)[0, 0]
        region = (m > 0).cpu().numpy()
    if not region.any():
        raise DragInputError("the mask holds no region at the latent's resolution (8 image pixels a latent "
                             "pixel); paint a larger region", input="mask")
    src_pts, trg_pts = latent_points(handles, image_hw, latent_hw), latent_points(targets, image_hw, latent_hw)
    labels, count = measure.label(region, connectivity=2, return_num=True)
    used = np.zeros(len(src_pts), dtype=bool)
    sources, target_pixels = [], []
    for part in range(1, count + 1):
        filled = ndimage.binary_fill_holes(labels == part)  # the code fills each outer contour
        inside = filled[src_pts[:, 1], src_pts[:, 0]]
        if not inside.any():
            continue
        used |= inside
        handles_here = src_pts[inside].astype(np.float64)
        drags = (trg_pts[inside] - src_pts[inside]).astype(np.float64)
        pixels = np.argwhere(filled)[:, ::-1].astype(np.float64)  # (x, y)
        outline = _outline(filled)
        moved_outline = outline + _idw(outline, handles_here, drags)
        moved = np.rint(pixels + _idw(pixels, handles_here, drags))
        target = _fill_polygon(moved_outline, (h, w))
        if len(target) == 0:
            raise DragInputError(f"the region under handle(s) {_numbers(inside)} would move entirely outside "
                                 "the image; shorten the drag", input="points")
        back = np.rint(target + _idw(target, moved, pixels - moved, spread=True))
        ok = (back[:, 0] >= 0) & (back[:, 0] < w) & (back[:, 1] >= 0) & (back[:, 1] < h)
        sources.append(back[ok])
        target_pixels.append(target[ok])
    if not used.all():
        missing = _numbers(~used)
        raise DragInputError(f"handle(s) {missing} lie outside the mask: RegionDrag moves the masked region "
                             "under each handle, so paint the part to move around its handle", input="points")
    source = torch.from_numpy(np.concatenate(sources)).long()
    target = torch.from_numpy(np.concatenate(target_pixels)).long()
    if len(target) == 0:
        raise DragInputError("the target regions lie outside the image; shorten the drags", input="points")
    return source, target


def _numbers(which: np.ndarray) -> str:
    return ", ".join(str(i + 1) for i in np.flatnonzero(which))


def _idw(at: np.ndarray, reference: np.ndarray, vectors: np.ndarray, spread: bool = False) -> np.ndarray:
    """Inverse-distance weighted mean of the vectors of the NEIGHBOURS nearest reference points
    (code: interpolate_points; with spread, at most MAX_REFERENCES references taken evenly)."""
    if spread and len(reference) > MAX_REFERENCES:
        pick = np.linspace(0, len(reference) - 1, MAX_REFERENCES).astype(np.int64)
        reference, vectors = reference[pick], vectors[pick]
    if len(reference) < 2:
        return np.broadcast_to(vectors[0], at.shape).copy()
    d = np.linalg.norm(at[:, None] - reference[None], axis=-1)
    nearest = np.argsort(d, axis=1, kind="stable")[:, :min(NEIGHBOURS, len(reference))]
    inv = 1 / (np.take_along_axis(d, nearest, 1) + 1e-4)
    weight = inv / inv.sum(1, keepdims=True)
    return (weight[..., None] * vectors[nearest]).sum(1)


def _outline(filled: np.ndarray) -> np.ndarray:
    """The outer outline of a filled region as polygon vertices (x, y) around its pixel centres."""
    padded = np.pad(filled, 1).astype(float)
    contours = measure.find_contours(padded, 0.5)
    outline = max(contours, key=len) - 1  # undo the padding; (row, col)
    return outline[:, ::-1]


def _fill_polygon(vertices: np.ndarray, hw: tuple[int, int]) -> np.ndarray:
    """Pixels (x, y) inside a polygon (x, y vertices), clipped to the image."""
    rr, cc = draw.polygon(vertices[:, 1], vertices[:, 0], shape=hw)
    return np.stack([cc, rr], -1).astype(np.float64)
