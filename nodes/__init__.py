"""The pack's nodes, on ComfyUI's V3 API (comfy_api.latest).

Modules that import comfy_api (the node modules, types.py, extension.py) are imported only through
the package's comfy_entrypoint(), so the package and the ComfyUI-free modules here (bridge,
runtime, values, method, painted_mask, auto_mask_engine, comfy_network) import without ComfyUI.
"""
