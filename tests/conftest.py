"""Tests import the pack as ComfyUI does: the repository folder as one package, `comfyui_drag`."""

import pathlib
import sys

import pytest
import torch

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1]))
import pack_loader  # noqa: E402

pack_loader.load()

# Tiny models gain nothing from more threads, and OpenMP barriers stall badly when the two
# cores are shared with other work; one thread keeps tests fast and deterministic.
torch.set_num_threads(1)


@pytest.fixture(scope="module")
def model():
    """A tiny random-weight DiffusionModel (tests/tiny_models.py), one per test module."""
    from tiny_models import tiny_model
    return tiny_model()


@pytest.fixture(scope="module")
def cond():
    from tiny_models import tiny_cond
    return tiny_cond()
