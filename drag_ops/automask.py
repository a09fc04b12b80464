"""Auto-mask (AdaptiveDrag, Sec. 3.3): superpixels over a semantic space, kept along each drag.

The paper runs SLIC on the feature space of SAM 2. No SAM weights are available to this pack (and
none may be downloaded at run time), so the semantic space here is built from the diffusion
model's OWN decoder features of the image instead: the image is encoded, noised to a moderate
timestep and passed through the UNet once; the chosen up-block outputs are reduced by PCA to a few
channels, upsampled to the image size and (optionally) concatenated with scaled CIELAB colour.
SLIC (scikit-image) segments that space into about ``n_segments`` superpixels.

The mask keeps the superpixels that contain a handle or are crossed by a handle-to-target
segment, closed and hole-filled (so it is one clean region, not a union of jagged cells) and
dilated (see :class:`AutoMaskSettings`); it can be intersected with a user mask, e.g. from a
segmentation node.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from . import rules
from .images import engine_to_unit
from .errors import DragInputError
from .model import Conditioning, DiffusionModel, FeatureSpec
from .network import Stage
from .points import DragPoints
from .rules import Flag, Items, Number


@dataclass
class AutoMaskSettings:
    """Superpixels and mask shaping. Defaults: ~200 segments as the paper; the rest are ours.

    timestep: 261, the noise level at which SD's decoder features are most semantic (DIFT, Tang et
      al. 2023, use t = 261 for correspondence); ``ensemble`` noise draws are averaged as DIFT does.
    blocks: decoder blocks whose outputs make the space; None: the two before the last, which on SD
      1.5 are up_blocks 1 and 2, the 32x32 (semantic) and 64x64 (detail) levels.
    channels: principal components kept (the space SLIC clusters in).
    colour_weight: weight of the CIELAB colour channels (Lab / 25, so 25 Lab units weigh as much as
      one standard deviation of the first feature component); 0 is the features alone.
    compactness: SLIC's trade-off between the space's distances and the image distance, in units
      of that standard deviation per grid step; lower follows object boundaries more closely.
    dilation: image pixels the kept region grows by. None: two latent pixels (16 px on SD). The
      mask reaches the latent by nearest-neighbour downsampling (8x8 pixel cells on SD) and the
      mask term then freezes every latent pixel outside it; an object moved to the target carries
      its edge (blurred over a latent pixel or two by the VAE) past the superpixels the path
      crosses, and a tight mask leaves a ghost of the old edge. Two latent pixels cover both.
    smooth: close gaps between kept superpixels (a disc of a quarter of the superpixel spacing) and
      fill holes, so the mask is one region.
    """

    n_segments: int = 200
    compactness: float = 0.3
    timestep: int = 261
    ensemble: int = 4
    blocks: tuple[int, ...] | None = None
    channels: int = 4
    colour_weight: float = 0.5
    dilation: int | None = None
    smooth: bool = True
    seed: int = 0

    # bounds keep a shared workflow from asking for hours of uncancellable work; which blocks exist
    # depends on the model (checked before the edit, with the model)
    RULES = {"n_segments": Number(1, 10_000, whole=True), "compactness": Number(0, 10_000, above=True),
             "timestep": Number(0, 999, whole=True), "ensemble": Number(1, 64, whole=True),
             "blocks": Items(Number(-64, 63, whole=True), 1, 16, optional=True),
             "channels": Number(1, 64, whole=True), "colour_weight": Number(0, 100),
             "dilation": Number(0, 4096, whole=True, optional=True), "smooth": Flag(),
             "seed": Number(0, 2 ** 63 - 1, whole=True)}

    def __post_init__(self):
        rules.check(self)


# -- the semantic space ------------------------------------------------------------------------

def feature_blocks(model: DiffusionModel, settings: AutoMaskSettings) -> tuple[int, ...]:
    if settings.blocks is None:
        n = model.network.decoder_levels
        return tuple(sorted({max(n - 3, 0), max(n - 2, 0)}))
    model.check_features(FeatureSpec(blocks=tuple(settings.blocks)))
    return tuple(settings.blocks)


def feature_space(model: DiffusionModel, latent: torch.Tensor, cond: Conditioning,
                  settings: AutoMaskSettings) -> torch.Tensor:
    """Decoder features of a clean latent [1, C, h, w], PCA-reduced: [channels, h, w] (latent size).

    Each block's features are L2-normalised per pixel (as in feature matching, so no block
    dominates by its scale) and concatenated; the principal components are scaled so the first
    has unit standard deviation.
    """
    blocks = feature_blocks(model, settings)
    stage = Stage("features", batch=max(1, int(settings.ensemble)))
    return model.run(stage, cond, latent.shape[-2:], lambda: _feature_space(model, latent, cond, settings, blocks))


@torch.no_grad()
def _feature_space(model, latent, cond, settings, blocks) -> torch.Tensor:
    dev = model.device
    z0 = latent.to(dev, torch.float32)
    n = max(1, int(settings.ensemble))
    g = torch.Generator(device="cpu").manual_seed(settings.seed)
    noise = torch.randn((n, *z0.shape[1:]), generator=g).to(dev)
    t = int(settings.timestep)
    a = float(model.schedule.alphas_cumprod[t])
    zt = a ** 0.5 * z0 + (1 - a) ** 0.5 * noise
    hw = tuple(z0.shape[-2:])
    _, f = model.forward(zt, t, cond, FeatureSpec(blocks=blocks), hw)
    widths = [model.network.level_channels(b) for b in blocks]
    parts = [F.normalize(part.mean(0), dim=0) for part in f.split(widths, dim=1)]  # [C_b, h, w] each
    feats = torch.cat(parts).flatten(1).T.double()  # [P, C]
    feats = feats - feats.mean(0)
    k = max(1, min(int(settings.channels), *feats.shape))
    _, vecs = torch.linalg.eigh(feats.T @ feats / feats.shape[0])
    proj = feats @ vecs[:, -k:].flip(-1)  # strongest component first
    proj = proj / proj[:, 0].std().clamp_min(1e-12)
    return proj.T.reshape(k, *hw).float().cpu()


def semantic_space(model: DiffusionModel, image: torch.Tensor, cond: Conditioning,
                   settings: AutoMaskSettings = AutoMaskSettings(),
                   latent: torch.Tensor | None = None) -> np.ndarray:
    """The space SLIC segments: [H, W, channels (+3 colour)] float64, for image [1, 3, H, W] in [-1, 1]."""
    H, W = image.shape[-2:]
    if latent is None:
        latent = model.codec.encode(image.to(model.device))
    feats = feature_space(model, latent, cond, settings)
    feats = F.interpolate(feats[None], size=(H, W), mode="bilinear", align_corners=False)[0]
    space = [feats.permute(1, 2, 0).double().numpy()]
    if settings.colour_weight:
        from skimage.color import rgb2lab
        rgb = engine_to_unit(image)[0].cpu().numpy()
        space.append(rgb2lab(rgb) / 25.0 * settings.colour_weight)
    return np.concatenate(space, axis=-1)


def superpixels(model: DiffusionModel, image: torch.Tensor, cond: Conditioning,
                settings: AutoMaskSettings = AutoMaskSettings(), latent: torch.Tensor | None = None) -> torch.Tensor:
    """SLIC superpixel labels [H, W] (int64, from 0) of image [1, 3, H, W] in the semantic space."""
    from skimage.segmentation import slic

    space = semantic_space(model, image, cond, settings, latent)
    labels = slic(space, n_segments=int(settings.n_segments), compactness=float(settings.compactness),
                  channel_axis=-1, convert2lab=False, enforce_connectivity=True, start_label=0)
    return torch.from_numpy(np.ascontiguousarray(labels)).long()


def superpixels_of_latent(model: DiffusionModel, latent: torch.Tensor, cond: Conditioning,
                          settings: AutoMaskSettings = AutoMaskSettings()) -> torch.Tensor:
    """Superpixel labels [H, W] of the image behind a clean latent (decoded for the colour channel)."""
    latent = latent.to(model.device)
    return superpixels(model, model.codec.decode(latent), cond, settings, latent)


# -- the mask ----------------------------------------------------------------------------------

def path_pixels(points: DragPoints, image_hw: tuple[int, int]) -> list[np.ndarray]:
    """Per pair, the integer (y, x) pixels crossed by the handle-to-target segment (half-pixel steps)."""
    H, W = image_hw
    out = []
    for (hx, hy), (tx, ty) in zip(points.handles, points.targets):
        n = int(np.ceil(2 * max(abs(tx - hx), abs(ty - hy)))) + 1
        s = np.linspace(0.0, 1.0, n + 1)
        x = np.clip(np.floor(hx + s * (tx - hx)).astype(int), 0, W - 1)
        y = np.clip(np.floor(hy + s * (ty - hy)).astype(int), 0, H - 1)
        out.append(np.stack([y, x], -1))
    return out


def kept_labels(labels: torch.Tensor, points: DragPoints) -> list[int]:
    """Labels of the superpixels under each handle and crossed by each handle-to-target segment."""
    lab = labels.numpy() if torch.is_tensor(labels) else np.asarray(labels)
    keep = set()
    for yx in path_pixels(points, lab.shape):
        keep.update(int(v) for v in np.unique(lab[yx[:, 0], yx[:, 1]]))
    return sorted(keep)


def default_dilation(latent_downscale: int) -> int:
    return 2 * int(latent_downscale)


def auto_mask(labels: torch.Tensor, points: DragPoints, user_mask: torch.Tensor | None = None,
              dilation: int = 16, smooth: bool = True) -> torch.Tensor:
    """The editable region [H, W] float (1 = editable) for superpixel labels [H, W] and the drag points.

    user_mask [H, W] (1 = editable), if given, is intersected with the result.
    """
    from scipy import ndimage
    from skimage.morphology import disk

    lab = labels.numpy() if torch.is_tensor(labels) else np.asarray(labels)
    H, W = lab.shape
    points.validate_in(W, H)
    region = np.isin(lab, kept_labels(lab, points))
    if smooth:
        spacing = (H * W / max(1, len(np.unique(lab)))) ** 0.5  # superpixel grid step
        r = max(1, int(round(spacing / 4)))
        padded = np.pad(region, r)  # closing must not erode at the image border
        region = ndimage.binary_closing(padded, structure=disk(r))[r:-r, r:-r]
        region = ndimage.binary_fill_holes(region)
    if dilation and dilation > 0:
        region = ndimage.binary_dilation(region, structure=disk(int(dilation)))
    mask = torch.from_numpy(region.astype(np.float32))
    if user_mask is not None:
        um = user_mask.reshape(user_mask.shape[-2:]).float().cpu()
        if tuple(um.shape) != (H, W):
            raise DragInputError(f"mask is {um.shape[1]}x{um.shape[0]} but the image is {W}x{H}", input="mask")
        mask = mask * (um > 0.5).float()
        if float(mask.max()) <= 0:
            raise DragInputError("the auto-mask and the given mask do not overlap: the given mask leaves no "
                                 "part of the dragged region editable", input="mask")
    return mask


def make_auto_mask(model: DiffusionModel, image: torch.Tensor, cond: Conditioning, points: DragPoints,
                   user_mask: torch.Tensor | None = None, settings: AutoMaskSettings = AutoMaskSettings(),
                   latent: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Superpixels of image [1, 3, H, W] and the auto-mask for the points: (mask [H, W], labels [H, W])."""
    H, W = image.shape[-2:]
    points.validate_in(W, H)
    labels = superpixels(model, image, cond, settings, latent)
    dilation = settings.dilation if settings.dilation is not None else default_dilation(model.codec.downscale)
    return auto_mask(labels, points, user_mask, dilation, settings.smooth), labels


def boundaries_preview(image: torch.Tensor, labels: torch.Tensor, mask: torch.Tensor,
                       tint=(1.0, 0.85, 0.2), alpha: float = 0.35) -> torch.Tensor:
    """Image [1, 3, H, W] in [-1, 1] with superpixel boundaries drawn and the kept region tinted:
    [H, W, 3] in [0, 1]."""
    from skimage.segmentation import find_boundaries

    rgb = engine_to_unit(image)[0].cpu()
    m = mask.float().cpu()[..., None]
    out = rgb * (1 - alpha * m) + torch.tensor(tint) * alpha * m
    edges = torch.from_numpy(find_boundaries(labels.numpy(), mode="inner"))
    out[edges] = out[edges] * 0.4 + 0.6 * torch.tensor([0.1, 0.9, 1.0])
    return out.clamp(0, 1)
