"""The integration harness itself: ComfyUI starts in-process, loads the pack, runs graphs,
reports progress and honours the cancel button.

Skipped unless COMFYUI_PATH points at a ComfyUI checkout (see comfy_support.py).
"""

import torch

from comfy_support import CHECKPOINT, IMAGE, comfyui, requires_comfyui  # noqa: F401

pytestmark = requires_comfyui


def graph(steps=2):
    return {
        "1": {"class_type": "CheckpointLoaderSimple", "inputs": {"ckpt_name": CHECKPOINT}},
        "2": {"class_type": "CLIPTextEncode", "inputs": {"clip": ["1", 1], "text": "a yellow disc"}},
        "3": {"class_type": "LoadImage", "inputs": {"image": IMAGE}},
        "4": {"class_type": "VAEEncode", "inputs": {"pixels": ["3", 0], "vae": ["1", 2]}},
        "5": {"class_type": "KSampler", "inputs": {"model": ["1", 0], "positive": ["2", 0], "negative": ["2", 0],
                                                   "latent_image": ["4", 0], "seed": 3, "steps": steps, "cfg": 1.0,
                                                   "sampler_name": "euler", "scheduler": "normal", "denoise": 0.6}},
        "6": {"class_type": "VAEDecode", "inputs": {"samples": ["5", 0], "vae": ["1", 2]}},
        "7": {"class_type": "SaveImage", "inputs": {"images": ["6", 0], "filename_prefix": "harness"}},
    }


PACK_NODES = {"DragPointPicker", "DragIdentityLoRA", "DragDDIMInversion", "DragLatentOptimizer",
              "DragReferenceSampler", "DragEdit", "DragAutoMask", "DragOnePassEdit"}


def test_pack_is_loaded_as_a_custom_node_through_its_v3_entrypoint(comfyui):
    import nodes
    from comfy_api.latest import io
    assert comfyui.version
    assert "comfyui_drag" in nodes.LOADED_MODULE_DIRS
    # ComfyUI reads NODE_CLASS_MAPPINGS instead of comfy_entrypoint when a pack has both
    assert not hasattr(comfyui.pack, "NODE_CLASS_MAPPINGS") and not hasattr(comfyui.pack, "NODE_DISPLAY_NAME_MAPPINGS")
    assert set(comfyui.pack_nodes) == PACK_NODES
    for name, cls in comfyui.pack_nodes.items():
        assert issubclass(cls, io.ComfyNode)
        assert nodes.NODE_CLASS_MAPPINGS[name] is cls and cls.RELATIVE_PYTHON_MODULE == "custom_nodes.comfyui_drag"


def test_stock_graph_runs_and_reports_progress(comfyui):
    run = comfyui.execute(graph(), fresh=True)
    assert run.success, run.error
    image = run.outputs["6"][0]
    assert image.shape == (1, 64, 64, 3) and torch.isfinite(image).all()
    assert (comfyui.output / run.ui["7"]["images"][0]["filename"]).is_file()
    assert [(node, value, total) for node, value, total, _ in run.progress] == [("5", 1, 2), ("5", 2, 2)]
    # ComfyUI's cache: an unchanged graph runs nothing again
    again = comfyui.execute(graph())
    assert again.success and again.progress == []


def test_targets_run_graphs_without_output_nodes(comfyui):
    run = comfyui.execute({k: v for k, v in graph().items() if k in "1234"}, targets=["4"])
    assert run.success, run.error
    assert run.outputs["4"][0]["samples"].shape == (1, 4, 8, 8)


def test_cancel_button_stops_the_run(comfyui):
    def cancel(node, value, total, preview):
        if value == 1:
            comfyui.interrupt()
    run = comfyui.execute(graph(steps=3), fresh=True, on_progress=cancel)
    assert not run.success and run.interrupted
    assert run.error["node_id"] == "5"
    assert [value for _, value, _, _ in run.progress] == [1]
