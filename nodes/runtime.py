"""What every node needs from ComfyUI's runtime: type conversion, progress + cancel, memory.

ComfyUI modules are imported inside functions so the pack imports without ComfyUI.
"""

from __future__ import annotations

import sys
from contextlib import contextmanager

import numpy as np
import torch
from PIL import Image, ImageDraw

from ..drag_ops.errors import DragInputError
from ..drag_ops.points import DragPoints

HANDLE_RGB, TARGET_RGB = (230, 60, 50), (50, 110, 240)


@contextmanager
def located(node: str):
    """Re-raise engine input errors with the node's name, so the user knows where to look."""
    try:
        yield
    except DragInputError as e:
        raise e.at(node=node) from None


def expect_drag_points(points, input: str = "points"):
    """The DRAG_POINTS a node received (any other value: the user wired something else)."""
    if not isinstance(points, DragPoints):
        raise DragInputError(f"expected DRAG_POINTS from Drag Point Picker, got {type(points).__name__}", input=input)
    return points


def image_from_comfy(image, input: str = "image") -> torch.Tensor:
    """ComfyUI IMAGE [1, H, W, 3] in [0, 1] -> engine image [1, 3, H, W] in [-1, 1] (a copy)."""
    if not torch.is_tensor(image) or image.dim() != 4:
        raise DragInputError(f"expected an IMAGE [batch, height, width, channels], got "
                             f"{tuple(getattr(image, 'shape', ())) or type(image).__name__}", input=input)
    if image.shape[0] != 1:
        raise DragInputError(f"a batch of {image.shape[0]} images was given; drag editing works on one image "
                             "at a time (pick one with an image-batch node)", input=input)
    if image.shape[-1] not in (3, 4):
        raise DragInputError(f"expected 3 (RGB) or 4 (RGBA) channels, got {image.shape[-1]}", input=input)
    if not image.is_floating_point() or not torch.isfinite(image).all():
        raise DragInputError(f"expected finite floating-point pixels in [0, 1], got {image.dtype}", input=input)
    return image[..., :3].permute(0, 3, 1, 2).float().clamp(0, 1).mul(2).sub(1).contiguous()


def image_to_comfy(x: torch.Tensor) -> torch.Tensor:
    return x.detach().float().cpu().add(1).div(2).clamp(0, 1).permute(0, 2, 3, 1).contiguous()


def mask_from_comfy(mask, image_hw: tuple[int, int], input: str = "mask") -> torch.Tensor | None:
    """ComfyUI MASK [1, H, W] or [H, W] (1 = editable) -> [H, W] float, or None for no mask."""
    if mask is None:
        return None
    if not torch.is_tensor(mask) or mask.dim() not in (2, 3) or (mask.dim() == 3 and mask.shape[0] != 1):
        raise DragInputError(f"expected a single MASK [1, height, width], got "
                             f"{tuple(getattr(mask, 'shape', ())) or type(mask).__name__}", input=input)
    m = mask.reshape(mask.shape[-2:])
    if tuple(m.shape) != tuple(image_hw):
        raise DragInputError(f"mask is {m.shape[1]}x{m.shape[0]} but the image is {image_hw[1]}x{image_hw[0]}",
                             input=input)
    if not m.is_floating_point() or not torch.isfinite(m).all():
        raise DragInputError(f"expected finite float mask values in [0, 1], got {m.dtype}", input=input)
    return m.float().clone()


def latent_to_comfy(model_patcher, z: torch.Tensor) -> dict:
    """An engine latent (what the UNet sees) as a ComfyUI LATENT (the VAE's scale)."""
    return {"samples": model_patcher.get_model_object("latent_format").process_out(z.detach().float().cpu())}


def draw_points(img: Image.Image, handles, targets, scale: float = 1.0) -> Image.Image:
    """Numbered handle (red) -> target (blue) arrows, coordinates in image pixels times scale."""
    img = img.convert("RGB")
    d = ImageDraw.Draw(img)
    r = max(2, round(min(img.size) / 80))
    for i, (h, t) in enumerate(zip(handles, targets), 1):
        (hx, hy), (tx, ty) = [(p[0] * scale, p[1] * scale) for p in (h, t)]
        d.line([(hx, hy), (tx, ty)], fill=(255, 255, 255), width=max(1, r // 2))
        d.ellipse([hx - r, hy - r, hx + r, hy + r], fill=HANDLE_RGB)
        d.ellipse([tx - r, ty - r, tx + r, ty + r], fill=TARGET_RGB)
        d.text((hx + r, hy + r), str(i), fill=(255, 255, 255))
    return img


def trajectory_image(image: torch.Tensor, history: list, targets, mask: torch.Tensor | None) -> torch.Tensor:
    """The input with each handle's tracked path, its start and target: IMAGE [1, H, W, 3]."""
    arr = ((image[0].permute(1, 2, 0).float().cpu() + 1) * 127.5).clamp(0, 255).byte().numpy()
    if mask is not None:  # dim what may not change
        keep = mask.cpu().numpy()[..., None] > 0.5
        arr = np.where(keep, arr, (arr * 0.55).astype(np.uint8))
    img = Image.fromarray(arr)
    h, w = arr.shape[:2]
    zoom = max(1, 512 // max(h, w))
    img = img.resize((w * zoom, h * zoom), Image.NEAREST)
    draw = ImageDraw.Draw(img)
    for i in range(len(targets)):
        path = [(p[i][0] * zoom, p[i][1] * zoom) for p in history]
        if len(path) > 1:
            draw.line(path, fill=(255, 220, 0), width=max(1, zoom))
    img = draw_points(img, history[0], targets, zoom)
    out = torch.from_numpy(np.array(img.resize((w, h), Image.LANCZOS) if zoom > 1 else img)).float() / 255
    return out[None]


class Progress:
    """Engine callback -> one ComfyUI progress bar over all stages, the cancel button, previews.

    stages: {stage name: planned steps}, in order (a plan's stages). Each stage fills its share of
    the bar in proportion to its own step / total, so a stage that runs fewer steps than planned
    (GoodDrag's sampling after a drag that denoised) still ends where the next begins; a stage that
    ends early (the handles arrived) leaves a gap that the next stage's first step jumps over; used
    as a context manager, the bar is filled when the node's work ends without an error. Previews of
    the drag show the predicted image (ComfyUI's latent previewer) with the current handles and
    targets drawn on it.
    """

    PREVIEW_SIZE = 512

    def __init__(self, stages: dict[str, int], model_patcher=None, image_hw: tuple[int, int] | None = None):
        import comfy.utils
        self.offsets, self.sizes, total = {}, dict(stages), 0
        for name, n in stages.items():
            self.offsets[name], total = total, total + n
        self.bar = comfy.utils.ProgressBar(max(total, 1))
        self.total = max(total, 1)
        self.value = 0
        self.image_hw = image_hw
        self.previewer = _previewer(model_patcher) if model_patcher is not None else None

    def __call__(self, stage: str, step: int, total: int, preview: dict | None) -> None:
        import comfy.model_management
        comfy.model_management.throw_exception_if_processing_interrupted()
        if stage not in self.sizes:  # a stage with no share of this bar
            return
        size = self.sizes[stage]
        self.value = self.offsets[stage] + (size * min(step, total) // total if total > 0 else size)
        self.bar.update_absolute(self.value, self.total, self._preview(preview))

    def __enter__(self) -> "Progress":
        return self

    def __exit__(self, kind, error, traceback) -> None:
        if kind is None and self.value < self.total:  # the last stage ended early: the work is done
            self.value = self.total
            self.bar.update_absolute(self.total, self.total, None)

    def _preview(self, preview):
        if not preview or self.previewer is None or "x0" not in preview:
            return None
        img = self.previewer.decode_latent_to_preview(preview["x0"][:1].float())
        if self.image_hw:
            h, w = self.image_hw
            s = min(1.0, self.PREVIEW_SIZE / max(h, w))
            img = img.resize((max(1, round(w * s)), max(1, round(h * s))))
            if "handles" in preview:
                img = draw_points(img, preview["handles"], preview["targets"], s)
        return "JPEG", img, self.PREVIEW_SIZE


def _previewer(model_patcher):
    import latent_preview
    fmt = model_patcher.model.latent_format
    previewer = latent_preview.get_previewer(model_patcher.load_device, fmt)
    if previewer is None and fmt.latent_rgb_factors is not None:
        previewer = latent_preview.Latent2RGBPreviewer(fmt.latent_rgb_factors, fmt.latent_rgb_factors_bias)
    return previewer


@contextmanager
def stage_memory():
    """Give the accelerator's cached blocks back once a stage ends (also after errors and cancel);
    the weights themselves stay under ComfyUI's memory management."""
    try:
        yield
    finally:
        mm = sys.modules.get("comfy.model_management")  # absent when a test calls the node without ComfyUI
        if mm is not None:
            mm.soft_empty_cache()
