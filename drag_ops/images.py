"""The three ways an image is held, and every conversion between them, in one place:

- engine: a torch tensor [N, 3, H, W], float in [-1, 1] (what the VAE encodes and decodes);
- unit: float in [0, 1], channels last [..., H, W, 3] (ComfyUI's IMAGE is [N, H, W, 3]);
- uint8: numpy uint8 0..255, channels last (PIL, PNG files, the shapes world's renders).

Values outside the range are clamped on the way out, never on the way in.
"""

from __future__ import annotations

import numpy as np
import torch


def engine_to_unit(image: torch.Tensor) -> torch.Tensor:
    """[N, 3, H, W] in [-1, 1] -> [N, H, W, 3] float32 in [0, 1]."""
    return ((image.detach().float() + 1) / 2).clamp(0, 1).movedim(1, -1)


def unit_to_engine(image: torch.Tensor) -> torch.Tensor:
    """[N, H, W, 3] in [0, 1] -> [N, 3, H, W] float32 in [-1, 1]."""
    return image.float().movedim(-1, 1) * 2 - 1


def unit_to_uint8(image) -> np.ndarray:
    """Float in [0, 1] (tensor or array, any shape) -> uint8, rounded."""
    a = image.detach().float().cpu().numpy() if torch.is_tensor(image) else np.asarray(image)
    return np.clip(np.round(a * 255.0), 0, 255).astype(np.uint8)


def uint8_to_unit(image) -> np.ndarray:
    """uint8 (array or PIL image, any shape) -> float32 in [0, 1]."""
    return np.asarray(image, dtype=np.float32) / 255.0


def uint8_to_engine(image) -> torch.Tensor:
    """uint8 [H, W, 3] or [N, H, W, 3] -> [1 or N, 3, H, W] float32 in [-1, 1]."""
    t = torch.from_numpy(np.array(image, dtype=np.uint8))  # a copy: the input may be read-only (PIL)
    t = t[None] if t.dim() == 3 else t
    return t.permute(0, 3, 1, 2).float() / 127.5 - 1.0


def engine_to_uint8(image: torch.Tensor) -> np.ndarray:
    """[N, 3, H, W] in [-1, 1] -> uint8 [N, H, W, 3]."""
    return ((image.detach().float().clamp(-1, 1) + 1) * 127.5).round().byte().permute(0, 2, 3, 1).cpu().numpy()
