"""How good is a drag edit: image metrics that need no knowledge of the scene.

Images here are numpy float arrays [H, W, 3] in [0, 1] (``as_float01`` converts uint8 images and
the engine's [1, 3, H, W] tensors in [-1, 1]); points are image pixels (x, y), pixel j at j.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from comfyui_drag.drag_ops.images import engine_to_unit

DAI_RADII = (1, 5, 10, 20)  # GoodDrag eq. 10: gamma


def as_float01(image) -> np.ndarray:
    """uint8 [H, W, 3], float [H, W, 3] in [0, 1] or a tensor [1, 3, H, W] in [-1, 1] -> float [H, W, 3];
    a batch [N, 3, H, W] (N > 1) -> [N, H, W, 3]."""
    if torch.is_tensor(image):
        a = engine_to_unit(image).cpu().numpy().astype(np.float64)
        return a[0] if a.shape[0] == 1 else a
    a = np.asarray(image)
    return a.astype(np.float64) / 255.0 if a.dtype == np.uint8 else a.astype(np.float64)


def psnr(a, b, where: np.ndarray | None = None) -> float:
    """PSNR in dB over all pixels or those where ``where`` [H, W] is true (inf if identical)."""
    a, b = as_float01(a), as_float01(b)
    err = (a - b) ** 2
    if where is not None:
        if not where.any():
            return float("nan")
        err = err[where]
    mse = float(err.mean())
    return float("inf") if mse == 0 else 10 * math.log10(1.0 / mse)


def ssim(a, b) -> float:
    from skimage.metrics import structural_similarity
    return float(structural_similarity(as_float01(a), as_float01(b), channel_axis=-1, data_range=1.0))


def iou(a: np.ndarray, b: np.ndarray) -> float:
    union = np.logical_or(a, b).sum()
    return float(np.logical_and(a, b).sum() / union) if union else 1.0


def outside_change(source, edited, mask: np.ndarray | None) -> dict:
    """How much the region the user did not allow to change changed: PSNR and mean absolute error
    (in [0, 1] units) over the pixels outside ``mask`` (all pixels when there is no mask)."""
    a, b = as_float01(source), as_float01(edited)
    keep = np.ones(a.shape[:2], bool) if mask is None else ~np.asarray(mask, bool)
    if not keep.any():
        return {"psnr_outside": float("nan"), "mae_outside": float("nan")}
    return {"psnr_outside": psnr(a, b, keep), "mae_outside": float(np.abs(a - b)[keep].mean())}


def dai(source, edited, handles, targets, radii=DAI_RADII) -> dict:
    """GoodDrag's Drag Accuracy Index (eq. 10): mean squared error between the source patch of
    radius gamma around each handle p_i and the edited patch around its target q_i, averaged over
    the points (once). Patches are cut to the offsets that stay inside the image at both ends."""
    a, b = as_float01(source), as_float01(edited)
    h, w = a.shape[:2]
    out = {}
    for g in radii:
        errs = []
        for p, q in zip(handles, targets):
            (px, py), (qx, qy) = (int(round(v)) for v in p), (int(round(v)) for v in q)
            x0, x1 = max(-g, -px, -qx), min(g, w - 1 - px, w - 1 - qx)
            y0, y1 = max(-g, -py, -qy), min(g, h - 1 - py, h - 1 - qy)
            pa = a[py + y0:py + y1 + 1, px + x0:px + x1 + 1]
            pb = b[qy + y0:qy + y1 + 1, qx + x0:qx + x1 + 1]
            errs.append(float(((pa - pb) ** 2).mean()))
        out[f"dai_{g}"] = float(np.mean(errs))
    return out


# -- correspondence (MD on images whose content is unknown) ------------------------------------------

@torch.no_grad()
def diffusion_features(model, cond, image: torch.Tensor, timestep: int = 261, blocks=None, seed: int = 0):
    """DIFT-style features: the image's latent noised to ``timestep`` (fixed noise) through the UNet,
    decoder blocks ``blocks`` at the latent resolution, unit length over channels [1, C, h, w]. blocks
    None: DIFT's level, 1280 channels at 1/16 of the image (SD's up_blocks[1], SDXL's up_blocks[0])."""
    from comfyui_drag.drag_ops import families
    from comfyui_drag.drag_ops.model import FeatureSpec
    blocks = (families.of(model.network).md_level,) if blocks is None else blocks
    latent = model.codec.encode(image.to(model.device))
    noise = torch.randn(latent.shape, generator=torch.Generator().manual_seed(seed)).to(latent)
    a = float(model.schedule.alphas_cumprod[timestep])
    zt = a ** 0.5 * latent + (1 - a) ** 0.5 * noise
    _, feats = model.forward(zt, timestep, cond, FeatureSpec(tuple(blocks)), tuple(latent.shape[-2:]))
    return F.normalize(feats, dim=1)


@torch.no_grad()
def correspondences(model, cond, source: torch.Tensor, edited: torch.Tensor, points, **feature_args) -> list:
    """For each point of ``source`` [1, 3, H, W], the best-matching point of ``edited`` (image pixels):
    cosine similarity of diffusion features, the similarity map upsampled to the image, its argmax."""
    from comfyui_drag.drag_ops.coords import sample_at
    H, W = source.shape[-2:]
    fs = diffusion_features(model, cond, source, **feature_args)
    fe = diffusion_features(model, cond, edited, **feature_args)
    h, w = fs.shape[-2:]
    xy = torch.tensor(points, dtype=torch.float32).reshape(-1, 2)
    ref = F.normalize(sample_at(fs, xy * torch.tensor([w / W, h / H])), dim=-1)  # [N, C]
    sim = torch.einsum("nc,chw->nhw", ref.to(fe), fe[0])
    sim = F.interpolate(sim[None], size=(H, W), mode="bilinear", align_corners=False)[0]
    best = sim.flatten(1).argmax(1)
    return [(float(i % W), float(i // W)) for i in best.tolist()]


def correspondence_md(model, cond, source: torch.Tensor, edited: torch.Tensor, handles, targets,
                      **feature_args) -> dict:
    """Mean Distance as DragBench measures it: where each handle's content is found in the edited
    image (feature matching) versus its target, image pixels; and as a fraction of the initial distance."""
    found = correspondences(model, cond, source, edited, handles, **feature_args)
    d = [math.dist(f, t) for f, t in zip(found, targets)]
    d0 = [math.dist(h, t) for h, t in zip(handles, targets)]
    return {"md": float(np.mean(d)), "md_ratio": float(sum(d) / max(sum(d0), 1e-9)), "found": found}


# -- LPIPS (optional, never downloads) -------------------------------------------------------------

_ALEXNET = "alexnet-owt-7be5be79.pth"  # the torchvision backbone lpips builds on


def lpips_status() -> tuple[bool, str]:
    """(usable, why not): LPIPS needs the ``lpips`` package and its backbone's weights already on disk."""
    try:
        import lpips
    except ImportError:
        return False, "the lpips package is not installed"
    linear = Path(lpips.__file__).parent / "weights" / "v0.1" / "alex.pth"
    backbone = Path(torch.hub.get_dir()) / "checkpoints" / _ALEXNET
    missing = [str(p) for p in (linear, backbone) if not p.exists()]
    if missing:
        return False, f"LPIPS weights are not on this machine ({', '.join(missing)}); nothing is downloaded"
    return True, ""


class Fidelity:
    """1 - LPIPS(source, edited) (AlexNet, as DragBench), if :func:`lpips_status` allows."""

    def __init__(self, device="cpu"):
        self.usable, self.reason = lpips_status()
        self.net = None
        if self.usable:
            import lpips
            self.net = lpips.LPIPS(net="alex", verbose=False).to(device).eval()
            self.device = device

    @torch.no_grad()
    def __call__(self, source: torch.Tensor, edited: torch.Tensor) -> float | None:
        if self.net is None:
            return None
        return 1.0 - float(self.net(source.to(self.device), edited.to(self.device)).mean())
