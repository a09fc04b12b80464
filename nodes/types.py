"""The pack's own socket types, declared once for ComfyUI's V3 API. What they carry: DRAG_POINTS a
drag_ops.points.DragPoints, DRAG_INVERSION and DRAG_RESULT the classes in nodes/values.py.

Core's POINT type is not reused for DRAG_POINTS: in ComfyUI 0.3.64 no core node makes or reads it
(its Type is Any), so it would connect to nothing more, and saved workflows' DRAG_POINTS links would
no longer match. Newer ComfyUI has TRACKS (Wan-Move's {"track_path": [frames, tracks, 2] pixels,
"track_visibility"}); a pair list is a 2-frame track, so converter nodes could chain with it once
the pack requires a ComfyUI that has it.

Imports ComfyUI (comfy_api): only nodes/extension.py and the node modules import this.
"""

from comfy_api.latest import io

CATEGORY = "drag editing"

DRAG_POINTS = io.Custom("DRAG_POINTS")
DRAG_INVERSION = io.Custom("DRAG_INVERSION")
DRAG_RESULT = io.Custom("DRAG_RESULT")
