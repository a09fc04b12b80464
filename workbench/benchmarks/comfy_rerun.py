"""Inside ComfyUI: a cold run of the step-by-step drag graph against a re-run after only the
points moved (ComfyUI's cache keeps the identity LoRA and the inversion). Prints numbers.

    COMFYUI_PATH=/path/to/ComfyUI python -m workbench.benchmarks.comfy_rerun

Runs on the tests' tiny random SD1.5-shaped checkpoint with the DragDiffusion defaults (80 LoRA
steps at batch 4, inversion to 0.7, up to 80 drag steps, reference sampling); the drag never
reaches its target on random weights, so every run does all 80 drag steps.
"""

from __future__ import annotations

import json
import pathlib
import sys
import tempfile
import time

from tests import comfy_support
from tests.comfy_support import BLOCKS, drag_graph


def main() -> None:
    checkout = comfy_support.comfyui_path()
    if checkout is None:
        sys.exit(f"{comfy_support.SKIP_REASON}")
    comfy = comfy_support.ComfyUI(checkout, pathlib.Path(tempfile.mkdtemp(prefix="comfy_rerun_")))
    graph = drag_graph(overrides="{}")
    graph["4"]["inputs"].update(steps=80, rank=16, batch_size=4, learning_rate=5e-4)  # the paper's LoRA
    graph["5"]["inputs"].update(max_strength=0.7, num_steps=50)
    graph["7"]["inputs"]["overrides"] = "{" + BLOCKS + ', "drag.reach_distance": 0}'

    t0 = time.perf_counter()
    cold = comfy.execute(graph, fresh=True)
    t_cold = time.perf_counter() - t0
    assert cold.success, cold.error
    graph["6"]["inputs"]["points"] = json.dumps([{"handle": [20, 24], "target": [36, 30]}])
    t0 = time.perf_counter()
    warm = comfy.execute(graph)
    t_warm = time.perf_counter() - t0
    assert warm.success, warm.error
    reran = sorted({node for node, *_ in warm.progress}, key=int)
    print(f"ComfyUI {comfy.version}; cold run {t_cold:.1f} s; re-run with moved points {t_warm:.1f} s "
          f"= {t_warm / t_cold:.0%} of cold (nodes with progress in the re-run: {', '.join(reran)})")


if __name__ == "__main__":
    main()
