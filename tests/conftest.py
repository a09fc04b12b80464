"""Tests import the pack as ComfyUI does: the repository folder as one package, `comfyui_drag`."""

import pathlib

import pytest
import torch

import pack_loader  # the repository root is on sys.path: pyproject.toml's pytest pythonpath

pack_loader.load()

# Tiny models gain nothing from more threads, and OpenMP barriers stall badly when the two
# cores are shared with other work; one thread keeps tests fast and deterministic.
torch.set_num_threads(1)


def pytest_addoption(parser):
    parser.addoption("--no-skips", action="store_true",
                     help="fail every test that would be skipped (CI: ComfyUI, Chromium and node are all there)")


def pytest_collection_modifyitems(config, items):
    """Under pytest-xdist (`-n 2 --dist loadgroup`, tests/run_all.sh) a file's tests stay in one worker,
    so its module fixtures are built once, and the browser tests all in one, so that the ComfyUI servers
    they share (one per frontend, tests/browser/conftest.py) start once."""
    browser = pathlib.Path(__file__).parent / "browser"
    for item in items:
        path = pathlib.Path(str(item.fspath))
        item.add_marker(pytest.mark.xdist_group("browser" if browser in path.parents else path.stem))


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    report = outcome.get_result()
    if report.skipped and item.config.getoption("--no-skips"):
        reason = report.longrepr[2] if isinstance(report.longrepr, tuple) else str(report.longrepr)
        report.outcome, report.longrepr = "failed", f"skipped under --no-skips: {reason}"


@pytest.fixture(scope="module")
def model():
    """A tiny random-weight DiffusionModel (tests/tiny_models.py), one per test module."""
    from tiny_models import tiny_model
    return tiny_model()


@pytest.fixture(scope="module")
def cond():
    from tiny_models import tiny_cond
    return tiny_cond()
