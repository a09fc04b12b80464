"""The integration harness on the pack's own nodes: ComfyUI starts in-process, loads the pack
through its V3 entry point, runs the pack's nodes in graphs (with and without output nodes), reports
their progress, caches them and honours the cancel button inside them.

Skipped unless COMFYUI_PATH points at a ComfyUI checkout (see comfy_support.py).
"""

import torch

from comfy_support import IMAGE, IMAGE_SIZE, comfyui, lora_and_inversion_graph, requires_comfyui  # noqa: F401

pytestmark = requires_comfyui


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


def bars(run) -> dict:
    """{node: [values]} of the progress bars a run reported."""
    seen = {}
    for node, value, total, _ in run.progress:
        seen.setdefault(node, []).append((value, total))
    return seen


def test_pack_stages_report_progress_to_their_total_and_are_cached(comfyui):
    graph = lora_and_inversion_graph(3, 0.6)
    run = comfyui.execute(graph, targets=["5"], fresh=True)
    assert run.success, run.error
    inversion, noisy = run.outputs["5"]
    assert noisy["samples"].shape == (1, 4, IMAGE_SIZE // 8, IMAGE_SIZE // 8)
    assert torch.isfinite(noisy["samples"]).all()
    seen = bars(run)
    assert set(seen) == {"4", "5"}  # the identity LoRA, then the inversion
    assert [v for v, _ in seen["4"]] == [1, 2, 3] and seen["4"][-1][1] == 3
    assert [v for v, _ in seen["5"]] == list(range(1, seen["5"][-1][1] + 1))  # every step, to its total
    # ComfyUI's cache: the same graph runs nothing again; a new strength reruns the inversion only
    again = comfyui.execute(graph, targets=["5"])
    assert again.success and again.progress == []
    graph["5"]["inputs"]["max_strength"] = 0.8
    deeper = comfyui.execute(graph, targets=["5"])
    assert deeper.success and set(bars(deeper)) == {"5"}


def test_targets_run_a_pack_node_without_output_nodes(comfyui):
    graph = {"3": {"class_type": "LoadImage", "inputs": {"image": IMAGE}},
             "6": {"class_type": "DragPointPicker", "inputs": {
                 "image": ["3", 0], "points": '[{"handle": [5, 6], "target": [20, 22]}]', "mask": ""}}}
    run = comfyui.execute(graph, targets=["6"], fresh=True)
    assert run.success, run.error
    points, mask = run.outputs["6"]
    assert list(points.handles) == [(5.0, 6.0)] and list(points.targets) == [(20.0, 22.0)]
    assert mask.shape == (1, IMAGE_SIZE, IMAGE_SIZE) and bool((mask == 1).all())  # nothing painted: all editable


def test_cancel_button_stops_the_identity_lora_within_a_step(comfyui):
    def cancel(node, value, total, preview):
        if node == "4" and value == 1:
            comfyui.interrupt()
    run = comfyui.execute(lora_and_inversion_graph(5, 0.6), targets=["5"], fresh=True, on_progress=cancel)
    assert not run.success and run.interrupted
    assert run.error["node_id"] == "4"
    assert bars(run) == {"4": [(1, 5)]}  # no second LoRA step, and the inversion never started
