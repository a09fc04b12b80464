"""ComfyUI drag editing: DragDiffusion, FreeDrag, StableDrag, AdaptiveDrag and GoodDrag as nodes.

ComfyUI imports this folder as a package and reads the mappings below. Nothing here imports
ComfyUI at import time, so the package is also importable (and harmless) outside ComfyUI.
"""

from .nodes import NODE_CLASS_MAPPINGS, NODE_DISPLAY_NAME_MAPPINGS

WEB_DIRECTORY = "./js"

__all__ = ["NODE_CLASS_MAPPINGS", "NODE_DISPLAY_NAME_MAPPINGS", "WEB_DIRECTORY"]
