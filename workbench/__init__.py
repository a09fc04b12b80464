"""The tools around the pack that ComfyUI never runs: the shapes world (a small model, its training
and its drag benchmark), the DragBench / Drag100 loaders and metrics, the benchmarks, the example
workflows' builder and the command line. None of it ships in the registry package (.comfyignore).

Run from the repository root, as modules: `python -m workbench demo`, `python -m workbench bench`,
`python -m workbench.benchmarks.perf ...`. Importing this package loads the pack (the repository
root, a folder ComfyUI imports) under the name comfyui_drag, so everything here imports the engine
as comfyui_drag.drag_ops and the nodes as comfyui_drag.nodes.
"""

import pack_loader

pack_loader.load()
