"""The pack's nodes as one ComfyUI V3 extension; the package's comfy_entrypoint() returns it."""

from comfy_api.latest import ComfyExtension, io

from .auto_mask import DragAutoMask
from .drag_edit import DragEdit
from .drag_optimize import DragLatentOptimizer
from .identity_lora import DragIdentityLoRA
from .invert import DragDDIMInversion
from .one_pass import DragOnePassEdit
from .point_picker import DragPointPicker
from .reference_sample import DragReferenceSampler


class DragEditingExtension(ComfyExtension):
    async def get_node_list(self) -> list[type[io.ComfyNode]]:
        return [DragPointPicker, DragIdentityLoRA, DragDDIMInversion, DragLatentOptimizer, DragReferenceSampler,
                DragEdit, DragAutoMask, DragOnePassEdit]
