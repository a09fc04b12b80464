"""Drag Point Picker: handle/target pairs and an editable-region mask, picked on the image in the UI.

The widget (js/drag_point_picker.js) writes the pairs into ``points`` and the painted mask into
``mask``; API users can fill both by hand. No ComfyUI import at module level.
"""

from __future__ import annotations

import base64
import binascii
import io
import os
import uuid

import numpy as np
import torch
from PIL import Image, UnidentifiedImageError

from ..drag_ops.errors import DragInputError
from ..drag_ops.points import DragPoints, parse_points

NODE_NAME = "Drag Point Picker"
PREVIEW_EVENT = "comfyui_drag.preview"
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


def _save_preview(image: torch.Tensor) -> dict:
    import folder_paths  # ComfyUI, only when the node runs

    arr = (image[0].detach().float().clamp(0, 1).cpu().numpy() * 255.0).round().astype(np.uint8)
    name = f"drag_picker_{uuid.uuid4().hex[:16]}.png"
    Image.fromarray(arr[..., :3] if arr.shape[-1] >= 3 else arr[..., 0]).save(
        os.path.join(folder_paths.get_temp_directory(), name), compress_level=1)
    return {"filename": name, "subfolder": "", "type": "temp"}


class DragPointPicker:
    DESCRIPTION = ("Pick drag points (a handle and the target it should move to, in image pixels) and "
                   "paint the region allowed to change, on the image itself.")
    CATEGORY = "drag editing"
    FUNCTION = "pick"
    RETURN_TYPES = ("DRAG_POINTS", "MASK")
    RETURN_NAMES = ("points", "mask")
    OUTPUT_TOOLTIPS = ("The validated handle/target pairs, in image pixels.",
                       "Region allowed to change (1 = editable); all ones when nothing is painted.")

    @classmethod
    def INPUT_TYPES(cls):
        return {
            "required": {
                "image": ("IMAGE", {"tooltip": "The image to edit; the widget shows it to click on."}),
                "points": ("STRING", {
                    "multiline": True, "default": "[]",
                    "tooltip": 'Handle/target pairs in image pixels (x right, y down): '
                               '[{"handle": [x, y], "target": [x, y]}, ...]. Also accepts [[hx, hy], [tx, ty], ...]. '
                               "Click on the image to fill it, or type it."}),
            },
            "optional": {
                "mask": ("STRING", {
                    "default": "",
                    "tooltip": "Editable region as a PNG data URL (white = editable) painted in the widget; "
                               "empty = the whole image may change."}),
            },
            "hidden": {"unique_id": "UNIQUE_ID"},
        }

    def pick(self, image: torch.Tensor, points, mask: str = "", unique_id=None):
        if not isinstance(image, torch.Tensor) or image.ndim != 4:
            raise DragInputError(f"expected an IMAGE tensor [B, H, W, C], got {getattr(image, 'shape', type(image))}"
                                 ).at(node=NODE_NAME, input="image")
        height, width = int(image.shape[1]), int(image.shape[2])
        try:
            drag_points: DragPoints = parse_points(points, width, height)
        except DragInputError as e:
            self._announce_preview(image, unique_id)
            raise e.at(node=NODE_NAME, input="points") from None
        try:
            editable = decode_mask(mask, width, height)
        except DragInputError as e:
            raise e.at(node=NODE_NAME, input="mask") from None
        return {"ui": {"images": [_save_preview(image)]}, "result": (drag_points, editable)}

    @staticmethod
    def _announce_preview(image, unique_id):
        """Send the image to the widget even though the node fails, so the user can place the first points."""
        if unique_id is None:
            return
        try:
            from server import PromptServer
            PromptServer.instance.send_sync(PREVIEW_EVENT, {"node": str(unique_id), "images": [_save_preview(image)]})
        except Exception:  # outside ComfyUI, or no client: the error itself still reaches the user
            pass


NODE_CLASS_MAPPINGS = {"DragPointPicker": DragPointPicker}
NODE_DISPLAY_NAME_MAPPINGS = {"DragPointPicker": NODE_NAME}
