"""ComfyUI drag editing: DragDiffusion, FreeDrag, StableDrag, AdaptiveDrag and GoodDrag as nodes.

ComfyUI imports this folder as a package and calls comfy_entrypoint() (its V3 API). Nothing here
imports ComfyUI at import time, so the package is also importable (and harmless) outside ComfyUI:
the engine, the CLI and the tests use it that way. There is deliberately no NODE_CLASS_MAPPINGS:
ComfyUI would take it instead of the entry point.
"""

WEB_DIRECTORY = "./js"


async def comfy_entrypoint():
    from .nodes.extension import DragEditingExtension  # imports ComfyUI's comfy_api
    return DragEditingExtension()


__all__ = ["WEB_DIRECTORY", "comfy_entrypoint"]
