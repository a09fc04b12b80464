"""The repository root is the pack's package (ComfyUI imports the folder), so pytest makes it a
test package and imports its __init__.py before the first test. When the checkout's folder name is
no Python identifier (a clone into comfyui-drag-editing, a worktree named wt-widget) that import
runs the file as a top-level module `__init__`, whose relative imports fail, and every test errors.
The tests load the pack themselves (tests/conftest.py, pack_loader), so the root package's setup is
skipped."""

import pathlib

import pytest

ROOT = pathlib.Path(__file__).resolve().parent


def pytest_collection_modifyitems(items):
    for node in {n for item in items for n in item.listchain() if isinstance(n, pytest.Package)}:
        if node.path == ROOT:
            node.setup = lambda: None
