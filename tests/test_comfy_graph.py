"""The pack's nodes in graphs with the stock ones, executed by ComfyUI's executor.

Skipped unless COMFYUI_PATH points at a ComfyUI checkout (see comfy_support.py).
"""

import pytest
import torch

from comfy_support import (CHECKPOINT, assert_model_clean, bridge, comfyui, lora_and_inversion_graph,  # noqa: F401
                           patched_weights, requires_comfyui)

pytestmark = requires_comfyui


def need(comfyui, *names):
    missing = [n for n in names if n not in comfyui.pack_nodes]
    if missing:
        pytest.skip(f"the pack has no {', '.join(missing)} node yet")


def lora_graph(save_name="", steps=3):
    return {
        **lora_and_inversion_graph(steps, 0.5, save_name),
        "6": {"class_type": "VAEDecode", "inputs": {"samples": ["5", 1], "vae": ["1", 2]}},
        "7": {"class_type": "SaveImage", "inputs": {"images": ["6", 0], "filename_prefix": "graph"}},
    }


def test_identity_lora_node_saves_what_the_stock_lora_loader_applies(comfyui, bridge, caplog):
    need(comfyui, "DragIdentityLoRA", "DragDDIMInversion")
    run = comfyui.execute(lora_graph(save_name="graph identity"), fresh=True)
    assert run.success, run.error
    trained, name = run.outputs["4"]
    assert name.startswith("graph_identity_") and name.endswith(".safetensors")
    assert run.outputs["1"][0].patches == {}  # the loader's MODEL is untouched

    reloaded = comfyui.execute({
        "1": {"class_type": "CheckpointLoaderSimple", "inputs": {"ckpt_name": CHECKPOINT}},
        "2": {"class_type": "LoraLoader", "inputs": {"model": ["1", 0], "clip": ["1", 1], "lora_name": name,
                                                     "strength_model": 1.0, "strength_clip": 1.0}},
    }, targets=["2"])
    assert reloaded.success, reloaded.error
    assert not [r for r in caplog.records if "lora key not loaded" in r.getMessage() or "NOT LOADED" in r.getMessage()]
    loaded = reloaded.outputs["2"][0]
    assert set(loaded.patches) == set(trained.patches) and len(trained.patches) > 0

    ours, theirs = patched_weights(trained), patched_weights(loaded)
    assert all(torch.equal(ours[k], theirs[k]) for k in ours)


def test_changing_a_later_input_reruns_only_that_node(comfyui):
    need(comfyui, "DragIdentityLoRA", "DragDDIMInversion")
    graph = lora_graph()
    assert comfyui.execute(graph, fresh=True).success
    graph["5"]["inputs"]["max_strength"] = 0.6
    run = comfyui.execute(graph)
    assert run.success, run.error
    assert {node for node, *_ in run.progress} == {"5"}  # no LoRA training, no new conversion


def test_cancel_during_lora_training_leaves_everything_usable(comfyui, bridge):
    need(comfyui, "DragIdentityLoRA", "DragDDIMInversion")

    def cancel(node, value, total, preview):
        if node == "4" and value == 2:
            comfyui.interrupt()
    run = comfyui.execute(lora_graph(steps=5), fresh=True, on_progress=cancel)
    assert run.interrupted and run.error["node_id"] == "4"
    assert [v for node, v, *_ in run.progress if node == "4"] == [1, 2]
    model = run.outputs["1"][0]
    assert model.patches == {}
    assert_model_clean(model)
    assert comfyui.execute(lora_graph(steps=2)).success  # and the next run works
