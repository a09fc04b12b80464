"""Tests import the pack as ComfyUI does: the repository folder as one package, `comfyui_drag`."""

import pathlib
import sys

import torch

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1]))
import pack_loader  # noqa: E402

pack_loader.load()

# Tiny models gain nothing from more threads, and OpenMP barriers stall badly when the two
# cores are shared with other work; one thread keeps tests fast and deterministic.
torch.set_num_threads(1)
