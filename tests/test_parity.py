"""Each preset reproduces its authors' code: the reference outputs in tests/fixtures/parity come from
the authors' own update loops (benchmarks/parity/run.py, with the command stored in each file), on
the small random SD1.5-layout UNet of benchmarks/parity/case.py (CPU, fp32, one thread). The engine
runs here alone, from the authors' inverted latent, and must give the same handle paths (FreeDrag:
the same intermediate targets), the loss at the first update within 1e-5 relative, the same number
of updates, and a final latent no further from the authors' than the authors' code is from itself
when only its attention kernel changes (classic vs SDPA: the float-noise envelope).
"""

import json
import pathlib
import sys

import numpy as np
import pytest
import torch

ROOT = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks" / "parity"))
import case as cases  # noqa: E402

from comfyui_drag.drag_ops.inversion import invert  # noqa: E402
from comfyui_drag.drag_ops.model import Conditioning  # noqa: E402

FIXTURES = ROOT / "tests" / "fixtures" / "parity"


@pytest.fixture(scope="module")
def small():
    case = cases.SMALL
    unet = cases.build_unet(case)
    inputs = cases.build_inputs(case)
    return case, unet, inputs


def load(method: str) -> dict:
    return json.loads((FIXTURES / f"{method.lower()}.json").read_text())


def authors_trajectory(small, reference: dict) -> torch.Tensor:
    """The engine's inversion, ending in the authors' inverted latent (the drag starts from theirs)."""
    case, unet, inputs = small
    from diffusers.models.attention_processor import AttnProcessor2_0
    unet.set_attn_processor(AttnProcessor2_0())
    model = cases.engine_model(unet)
    strength = reference["inversion_steps"] / 50
    ours = invert(model, inputs.latent, Conditioning(inputs.context), strength).latents
    theirs = torch.tensor(reference["start"]).reshape(reference["shape"])
    # the inversions agree to float noise; the drag then starts from the authors' z_T exactly
    assert float((ours[-1:] - theirs).norm() / theirs.norm()) < 1e-5
    return torch.cat([ours[:-1], theirs])


@pytest.mark.parametrize("method", cases.METHODS)
def test_preset_reproduces_its_authors_update_loop(small, method):
    case, unet, inputs = small
    reference = load(method)
    assert reference["case"] == case.name
    labels = cases.segments(case, inputs) if method == "AdaptiveDrag" else None
    ours = cases.run_engine(method, case, unet, inputs, authors_trajectory(small, reference), labels)

    assert ours.losses[0] == pytest.approx(reference["losses"][0], rel=1e-5, abs=0)
    if method == "FreeDrag":  # real-valued intermediate targets: equal up to float rounding
        assert len(ours.paths) == len(reference["paths"])
        assert np.allclose(ours.paths, reference["paths"], rtol=0, atol=1e-4)
    else:
        assert ours.paths == reference["paths"]
    assert ours.steps == reference["updates"]
    if reference["radii"] is not None:
        assert [list(r) for r in ours.radii] == reference["radii"]
    theirs = torch.tensor(reference["latent"]).reshape(reference["shape"])
    start = torch.tensor(reference["start"]).reshape(reference["shape"])
    difference = cases.difference(ours.latent, theirs, start)
    assert difference["rel"] <= reference["envelope"]["rel"], (difference, reference["envelope"])
