"""Drag Point Picker: handle/target pairs and an editable-region mask, picked on the image in the UI.

The widget (js/drag_point_picker.js) writes the pairs into ``points`` and the painted mask into
``mask``; API users can fill both by hand.
"""

from __future__ import annotations

import os
import uuid

import numpy as np
import torch
from comfy_api.latest import io
from PIL import Image

from ..drag_ops.errors import DragInputError
from ..drag_ops.points import parse_points
from .painted_mask import decode_mask
from .types import CATEGORY, DRAG_POINTS

NODE_NAME = "Drag Point Picker"
PREVIEW_EVENT = "comfyui_drag.preview"


class DragPointPicker(io.ComfyNode):
    @classmethod
    def define_schema(cls) -> io.Schema:
        return io.Schema(
            node_id="DragPointPicker",
            display_name=NODE_NAME,
            category=CATEGORY,
            description=("Pick drag points (a handle and the target it should move to, in image pixels) and "
                         "paint the region allowed to change, on the image itself."),
            inputs=[
                io.Image.Input("image", tooltip="The image to edit; the widget shows it to click on."),
                io.String.Input("points", multiline=True, default="[]", tooltip=(
                    'Handle/target pairs in image pixels (x right, y down): '
                    '[{"handle": [x, y], "target": [x, y]}, ...]. Also accepts [[hx, hy], [tx, ty], ...]. '
                    "Click on the image to fill it, or type it.")),
                io.String.Input("mask", default="", optional=True, tooltip=(
                    "Editable region as a PNG data URL (white = editable) painted in the widget; "
                    "empty = the whole image may change.")),
            ],
            outputs=[
                DRAG_POINTS.Output(display_name="points",
                                   tooltip="The validated handle/target pairs, in image pixels."),
                io.Mask.Output(display_name="mask", tooltip=(
                    "Region allowed to change (1 = editable); all ones when nothing is painted.")),
            ],
            hidden=[io.Hidden.unique_id],  # where to send the image when the points are not usable yet
        )

    @classmethod
    def execute(cls, image, points, mask="") -> io.NodeOutput:
        if not isinstance(image, torch.Tensor) or image.ndim != 4:
            raise DragInputError(f"expected an IMAGE tensor [B, H, W, C], got {getattr(image, 'shape', type(image))}"
                                 ).at(node=NODE_NAME, input="image")
        height, width = int(image.shape[1]), int(image.shape[2])
        try:
            drag_points = parse_points(points, width, height)
        except DragInputError as e:
            announce_preview(image, cls.hidden.unique_id)
            raise e.at(node=NODE_NAME, input="points") from None
        try:
            editable = decode_mask(mask, width, height)
        except DragInputError as e:
            raise e.at(node=NODE_NAME, input="mask") from None
        return io.NodeOutput(drag_points, editable, ui={"images": [save_preview(image)]})


def save_preview(image: torch.Tensor) -> dict:
    """The image as a temp file the widget shows (the stock preview's format)."""
    import folder_paths

    arr = (image[0].detach().float().clamp(0, 1).cpu().numpy() * 255.0).round().astype(np.uint8)
    name = f"drag_picker_{uuid.uuid4().hex[:16]}.png"
    Image.fromarray(arr[..., :3] if arr.shape[-1] >= 3 else arr[..., 0]).save(
        os.path.join(folder_paths.get_temp_directory(), name), compress_level=1)
    return {"filename": name, "subfolder": "", "type": "temp"}


def announce_preview(image, unique_id) -> None:
    """Send the image to the widget even though the node fails, so the user can place the first points."""
    if unique_id is None:
        return
    try:
        from server import PromptServer
        PromptServer.instance.send_sync(PREVIEW_EVENT, {"node": str(unique_id), "images": [save_preview(image)]})
    except Exception:  # no server (a script) or no client: the error itself still reaches the user
        pass
