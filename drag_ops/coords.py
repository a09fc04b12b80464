"""The one place where image pixels become feature-map and latent coordinates.

Points are (x, y) with x along width. A map of size (h, w) over an image of size (H, W) has
coordinate x * w / W, y * h / H (DragDiffusion's convention: plain scaling of indices).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from .errors import DragInputError


@dataclass(frozen=True)
class Geometry:
    image_hw: tuple[int, int]
    latent_hw: tuple[int, int]
    feature_hw: tuple[int, int]

    def _scale(self, hw) -> torch.Tensor:
        return torch.tensor([hw[1] / self.image_hw[1], hw[0] / self.image_hw[0]])

    def image_to_feature(self, xy: torch.Tensor) -> torch.Tensor:
        return xy * self._scale(self.feature_hw).to(xy)

    def feature_to_image(self, xy: torch.Tensor) -> torch.Tensor:
        return xy / self._scale(self.feature_hw).to(xy)

    def image_to_latent(self, xy: torch.Tensor) -> torch.Tensor:
        return xy * self._scale(self.latent_hw).to(xy)

    def mask_to_latent(self, mask: torch.Tensor) -> torch.Tensor:
        """Image mask [H, W] (1 = editable) -> [1, 1, h, w], nearest-neighbour as in the papers."""
        return F.interpolate(mask[None, None].float(), size=self.latent_hw, mode="nearest")

    def mask_to_feature(self, mask: torch.Tensor) -> torch.Tensor:
        return F.interpolate(mask[None, None].float(), size=self.feature_hw, mode="nearest")[0, 0]

    def labels_to_feature(self, labels: torch.Tensor) -> torch.Tensor:
        """Integer label map [H, W] (e.g. superpixels) -> [hf, wf] int64, nearest-neighbour."""
        if tuple(labels.shape) != tuple(self.image_hw):
            raise ValueError(f"label map is {tuple(labels.shape)}, the image {self.image_hw}")
        return F.interpolate(labels[None, None].double(), size=self.feature_hw, mode="nearest")[0, 0].long()


def sample_at(feats: torch.Tensor, xy: torch.Tensor) -> torch.Tensor:
    """Bilinear samples of feats [1, C, h, w] at map coordinates xy [..., 2] -> [..., C]."""
    h, w = feats.shape[-2:]
    grid = torch.stack([2 * xy[..., 0] / max(w - 1, 1) - 1, 2 * xy[..., 1] / max(h - 1, 1) - 1], -1)
    flat = grid.reshape(1, 1, -1, 2).to(feats)
    out = F.grid_sample(feats, flat, mode="bilinear", padding_mode="border", align_corners=True)
    return out[0, :, 0].T.reshape(*xy.shape[:-1], feats.shape[1])


MAX_RADIUS = 64  # feature pixels; the papers use at most 12, and a larger patch only costs memory


def square_offsets(radius: int, device=None) -> torch.Tensor:
    """Integer (dx, dy) offsets of a (2r+1)^2 square patch, [P, 2]."""
    if not 0 <= radius <= MAX_RADIUS:  # e.g. an override "tracker.radius": 1e9 would exhaust memory
        raise DragInputError(f"a patch radius of {radius:g} feature pixels is out of range (0 to {MAX_RADIUS})",
                             input="overrides")
    r = torch.arange(-radius, radius + 1, device=device, dtype=torch.float32)
    dy, dx = torch.meshgrid(r, r, indexing="ij")
    return torch.stack([dx.reshape(-1), dy.reshape(-1)], -1)
