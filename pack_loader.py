"""Load this folder as a package, the way ComfyUI loads a custom node pack (for the workbench and the tests)."""

import importlib.util
import pathlib
import sys

ROOT = pathlib.Path(__file__).resolve().parent
NAME = "comfyui_drag"


def load(name: str = NAME):
    if name not in sys.modules:
        spec = importlib.util.spec_from_file_location(name, ROOT / "__init__.py",
                                                      submodule_search_locations=[str(ROOT)])
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module
        spec.loader.exec_module(module)
    return sys.modules[name]
