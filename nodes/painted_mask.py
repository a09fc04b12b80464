"""The mask painted in the point picker's widget: a PNG data URL -> MASK. No ComfyUI import."""

from __future__ import annotations

import base64
import binascii
import io

import numpy as np
import torch
from PIL import Image, UnidentifiedImageError

from ..drag_ops.errors import DragInputError

MAX_MASK_CHARS = 50_000_000


def decode_mask(data: str, width: int, height: int) -> torch.Tensor:
    """PNG data URL (white = editable) -> float mask [1, H, W]; all ones when nothing is painted."""
    if data is None or not str(data).strip():
        return torch.ones(1, height, width, dtype=torch.float32)
    data = str(data).strip()
    if len(data) > MAX_MASK_CHARS:
        raise DragInputError(f"mask data is {len(data)} characters long; at most {MAX_MASK_CHARS} are accepted")
    head, sep, body = data.partition(",")
    if not sep or not head.startswith("data:image/") or not head.endswith(";base64"):
        raise DragInputError("mask must be a PNG data URL ('data:image/png;base64,...') or empty for "
                             f"'everything editable', got {data[:40]!r}")
    unreadable = (binascii.Error, ValueError, UnidentifiedImageError, OSError, Image.DecompressionBombError)
    try:
        img = Image.open(io.BytesIO(base64.b64decode(body, validate=True)))
    except unreadable as e:
        raise DragInputError(f"mask data URL does not hold a readable image ({e})") from None
    # the size is in the header: check it before decompressing anything (a tiny PNG can claim any size)
    if img.size != (width, height):
        raise DragInputError(f"mask is {img.size[0]}x{img.size[1]} but the image is {width}x{height}; "
                             "repaint the mask on this image or clear it")
    try:
        img.load()
    except unreadable as e:
        raise DragInputError(f"mask data URL does not hold a readable image ({e})") from None
    # Transparent pixels count as not painted, whatever their colour.
    alpha = np.asarray(img.getchannel("A"), dtype=np.float32) / 255.0 if "A" in img.getbands() else 1.0
    lum = np.asarray(img.convert("L"), dtype=np.float32) / 255.0
    return torch.from_numpy(np.ascontiguousarray(lum * alpha)).unsqueeze(0)
