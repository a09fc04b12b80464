"""The training-free presets (FastDrag's latent warp, RegionDrag's region copy) on tiny models: the
stages move a known latent pattern to its target, leave the rest alone, and bad regions are refused
before any stage runs."""

import pytest
import torch
from hypothesis import given, settings, strategies as st

from comfyui_drag.drag_ops import presets, rules
from comfyui_drag.drag_ops.errors import DragInputError
from comfyui_drag.drag_ops.inversion import invert
from comfyui_drag.drag_ops.latent_warp import LatentWarp, fill_holes
from comfyui_drag.drag_ops.one_pass import AttentionReplay, OnePassConfig, moves_of, sample_one_pass
from comfyui_drag.drag_ops.protocols import Moves
from comfyui_drag.drag_ops.overrides import apply_overrides
from comfyui_drag.drag_ops.pipeline import run_edit
from comfyui_drag.drag_ops.points import DragPoints, parse_points
from comfyui_drag.drag_ops.region_copy import RegionCopy, paste, region_pairs
from comfyui_drag.drag_ops.sde_inversion import invert_sde
from tiny_models import blob_image, tiny_model

IMAGE_HW = (32, 32)  # tiny VAE: 2 image pixels a latent pixel, latent 16x16


def pattern_latent(h=16, w=16, at=(4, 8)) -> torch.Tensor:
    """A smooth latent with one 3x3 block of distinct values centred at latent (x, y) = at."""
    y, x = torch.meshgrid(torch.arange(h, dtype=torch.float32), torch.arange(w, dtype=torch.float32), indexing="ij")
    z = torch.stack([x / w, y / h, (x + y) / (h + w), 0.5 + 0 * x])[None]
    z[..., at[1] - 1:at[1] + 2, at[0] - 1:at[0] + 2] = torch.arange(36.0).view(4, 3, 3) + 10
    return z


def box(h, w, top, left, bottom, right) -> torch.Tensor:
    m = torch.zeros(h, w)
    m[top:bottom, left:right] = 1
    return m


# -- FastDrag's warp --------------------------------------------------------------------------------

def test_warp_moves_the_handle_content_onto_the_target_and_nothing_outside_the_region_it_reaches():
    z = pattern_latent(at=(4, 8))
    region = box(16, 16, 2, 1, 14, 13).bool()
    warped, moved = LatentWarp().warp(z, torch.tensor([[4.0, 8.0]]), torch.tensor([[9.0, 8.0]]), region)
    assert torch.equal(warped[..., 8, 9], z[..., 8, 4])  # the handle's pixel lands on the target
    # along the drag's line the share of the drag falls linearly from 1 at the handle to 0 on the circle
    # around the region's bounding box (centre (6.5, 7.5), through its corners)
    centre, radius = torch.tensor([6.5, 7.5]), torch.tensor([5.5, 5.5]).norm()
    reach = float((radius ** 2 - (8 - centre[1]) ** 2).sqrt())  # half-chord of the circle along row 8
    for x in (3, 5):
        to_circle = (centre[0] + reach - 4) if x > 4 else (4 - (centre[0] - reach))
        dest = round(x + 5 * (1 - abs(x - 4) / float(to_circle)))
        assert torch.equal(warped[..., 8, dest], z[..., 8, x]), x
    assert not moved[0].any() and not moved[:, 14:].any()  # the circle around the box ends at the image border
    assert torch.equal(warped[..., ~moved], z[..., ~moved])  # every pixel the warp neither wrote nor filled
    assert torch.isfinite(warped).all()


def test_several_handles_each_carry_their_own_content():
    z = pattern_latent(at=(4, 4))
    z[..., 11, 11] = -7.0
    region = torch.ones(16, 16, dtype=torch.bool)
    warped, _ = LatentWarp().warp(z, torch.tensor([[4.0, 4.0], [11.0, 11.0]]),
                                  torch.tensor([[6.0, 4.0], [11.0, 13.0]]), region)
    assert torch.equal(warped[..., 4, 6], z[..., 4, 4])
    assert torch.equal(warped[..., 13, 11], z[..., 11, 11])


def test_bnni_fills_holes_from_the_four_directions_by_inverse_distance():
    row = torch.tensor([1.0, 0, 0, 0, 9.0]).view(1, 1, 1, 5)
    holes = torch.tensor([[False, True, True, True, False]])
    assert fill_holes(row, holes).flatten().tolist() == pytest.approx([1, 3, 5, 7, 9])
    # the code scans in row-major order and a filled hole serves the next one; the paper's BNNI reads valid
    # pixels only: hole (0, 1) sees the filled (0, 0) in one, nothing to its left in the other
    grid = torch.tensor([[0.0, 0.0, 6.0], [2.0, 0.0, 0.0]]).view(1, 1, 2, 3)
    holes = torch.tensor([[True, True, False], [False, False, False]])
    first = (0.5 * 6 + 2) / 1.5
    assert fill_holes(grid, holes).flatten()[:2].tolist() == pytest.approx([first, (first + 6 + 0) / 3])
    assert fill_holes(grid, holes, sequential=False).flatten()[:2].tolist() == pytest.approx([first, 3.0])


# -- RegionDrag's region copy ------------------------------------------------------------------------

def test_a_region_under_one_point_pair_is_translated_whole():
    mask = box(32, 32, 8, 4, 16, 12)  # latent rows 4..7, columns 2..5
    source, target = region_pairs(mask, [(6.0, 10.0)], [(18.0, 14.0)], IMAGE_HW, (16, 16))
    assert len(source) == len(target) > 0
    assert (target - source).unique(dim=0).tolist() == [[6, 2]]  # the drag in latent pixels (x, y)
    z = pattern_latent(at=(3, 5))
    copied = paste(z, z, source, target)
    assert torch.equal(copied[..., 7, 9], z[..., 5, 3])  # the pattern's centre moved by (6, 2)


def test_two_pairs_in_one_region_stretch_it_between_them():
    mask = box(32, 32, 8, 4, 16, 20)  # latent rows 4..7, columns 2..9
    # the left end stays, the right end moves 4 latent pixels right: the region widens from 8 to 12 pixels
    source, target = region_pairs(mask, [(4.0, 12.0), (19.0, 12.0)], [(4.0, 12.0), (27.0, 12.0)], IMAGE_HW, (16, 16))
    region = {(x, y) for y in range(4, 8) for x in range(2, 10)}
    assert {tuple(p) for p in source.tolist()} <= region  # every target pixel reads from the region
    assert target[:, 0].min() == 2 and target[:, 0].max() == 13 and set(target[:, 1].tolist()) == {4, 5, 6, 7}
    left, right = target[:, 0] <= 3, target[:, 0] >= 12
    assert (source[left, 0] <= 3).all() and (source[right, 0] >= 8).all()  # each end reads from its own end


@settings(max_examples=30, deadline=None, derandomize=True)
@given(st.lists(st.tuples(*[st.integers(0, 31)] * 4), min_size=1, max_size=3),
       st.lists(st.tuples(*[st.floats(0, 31.9)] * 4), min_size=1, max_size=3))
def test_any_mask_and_points_give_pixels_inside_the_latent_or_the_clear_error(boxes, pairs):
    mask = torch.zeros(32, 32)
    for y0, x0, y1, x1 in boxes:
        mask[min(y0, y1):max(y0, y1) + 1, min(x0, x1):max(x0, x1) + 1] = 1
    handles, targets = [p[:2] for p in pairs], [p[2:] for p in pairs]
    try:
        source, target = region_pairs(mask, handles, targets, IMAGE_HW, (16, 16))
    except DragInputError as e:
        assert e.input in ("points", "mask")
    else:
        assert len(source) == len(target) > 0
        assert source.min() >= 0 and target.min() >= 0 and source.max() < 16 and target.max() < 16
    region = torch.nn.functional.interpolate(mask[None, None], size=(16, 16))[0, 0] > 0
    if region.any():
        z = torch.randn(1, 4, 16, 16)
        warped, _ = LatentWarp().warp(z, torch.tensor(handles) / 2, torch.tensor(targets) / 2, region)
        assert torch.isfinite(warped).all()


def test_region_pairs_refuse_bad_regions_naming_the_input():
    mask = box(32, 32, 8, 4, 16, 12)
    with pytest.raises(DragInputError, match="handle\\(s\\) 2 lie outside the mask") as e:
        region_pairs(mask, [(6.0, 10.0), (28.0, 28.0)], [(18.0, 14.0), (20.0, 28.0)], IMAGE_HW, (16, 16))
    assert e.value.input == "points"
    with pytest.raises(DragInputError, match="holds no region") as e:
        region_pairs(torch.zeros(32, 32), [(6.0, 10.0)], [(18.0, 14.0)], IMAGE_HW, (16, 16))
    assert e.value.input == "mask"


def test_sde_inversion_returns_exactly_when_nothing_is_edited(model, cond):
    config = OnePassConfig(num_steps=10, inversion_strength=0.5, inversion="sde", edit=RegionCopy(),
                           attention=AttentionReplay(layers="all"))
    latent = model.codec.encode(blob_image())
    trajectory = invert_sde(model, latent, cond, 0.5, torch.Generator().manual_seed(3))
    everything = torch.ones(16, 16, dtype=torch.bool)
    moves = type("M", (), {"source": torch.zeros(0, 2).long(), "target": torch.zeros(0, 2).long(),
                           "editable": everything})()
    back = sample_one_pass(model, trajectory, trajectory.start, cond, config, moves)
    assert torch.allclose(back, latent, atol=1e-4)


@pytest.mark.parametrize("inversion", ["ddim", "sde"])
def test_sampling_reads_the_keys_and_values_the_inversion_computed(model, cond, inversion):
    """FastDrag's consistency-preserving strategy and RegionDrag's attention swap: at each sampling step
    the decoder's self-attention keys of both items are those the inversion computed at that timestep."""
    unet = model.network.unet
    modules = [m.to_k for name, m in unet.up_blocks.named_modules() if name.endswith("attn1")]
    seen = []
    hooks = [m.register_forward_hook(lambda m, i, o: seen.append(o.detach().clone())) for m in modules]
    config = OnePassConfig(num_steps=10, inversion_strength=0.3, inversion=inversion, edit=LatentWarp(),
                           attention=AttentionReplay(layers="decoder"))
    latent = model.codec.encode(blob_image())
    try:
        trajectory = (invert_sde(model, latent, cond, 0.3, torch.Generator().manual_seed(1)) if inversion == "sde"
                      else invert(model, latent, cond, 0.3))
        inverted = [seen[i:i + len(modules)] for i in range(0, len(seen), len(modules))]
        seen.clear()
        edited = trajectory.start + 0.3 * torch.randn_like(trajectory.start)
        sample_one_pass(model, trajectory, edited, cond, config, Moves())
        sampled = [seen[i:i + len(modules)] for i in range(0, len(seen), len(modules))]
    finally:
        for h in hooks:
            h.remove()
    assert len(inverted) == len(sampled) == 3
    for k in (1, 2, 3):  # inversion runs k = 1..3, sampling k = 3..1
        for inv, smp in zip(inverted[k - 1], sampled[3 - k]):
            assert smp.shape[0] == 2 and torch.allclose(smp[1], smp[0])
            assert torch.allclose(smp[0], inv[0], atol=1e-5)


# -- the presets end to end ------------------------------------------------------------------------

@pytest.fixture(scope="module")
def fast_model():
    return tiny_model(num_steps=50)


def test_regiondrag_changes_nothing_outside_the_mask(fast_model, cond):
    image = blob_image(centre=(10, 12))
    mask = box(32, 32, 4, 2, 22, 26)
    points = DragPoints(((10.0, 12.0),), ((16.0, 12.0),))
    config = rules.replace(presets.preset("RegionDrag"), num_steps=10)
    result = run_edit(fast_model, image, points, cond, config, mask)
    # what may change: the mask (the region that moves) and where its points send it
    outside = ~moves_of(config, points, (32, 32), (16, 16), mask).pixels
    assert outside.sum() > 300
    assert torch.equal(result.image[..., outside], image[..., outside])
    assert not torch.equal(result.image[..., ~outside], image[..., ~outside])


def test_fastdrag_runs_in_its_own_step_count_and_counts_its_passes(fast_model, cond, monkeypatch):
    calls = []
    predict = fast_model.network.predict
    monkeypatch.setattr(fast_model.network, "predict", lambda z, *a: calls.append(z.shape[0]) or predict(z, *a))
    image = blob_image(centre=(10, 12))
    points = DragPoints(((10.0, 12.0),), ((18.0, 12.0),))
    result = run_edit(fast_model, image, points, cond, presets.preset("FastDrag"), box(32, 32, 4, 2, 22, 26))
    # 10 steps at 0.7: 7 inversion passes, 7 sampling passes, the last 5 beside the inversion's latent
    assert calls == [1] * 7 + [1] * 2 + [2] * 5
    assert result.drag.step_index == 7 and result.image.shape == image.shape and torch.isfinite(result.image).all()


def test_bad_regions_are_refused_before_any_stage_runs(fast_model, cond, monkeypatch):
    monkeypatch.setattr(fast_model.codec, "encode", lambda *a: pytest.fail("a stage ran"))
    image = blob_image()
    mask = box(32, 32, 4, 2, 12, 12)
    far = DragPoints(((28.0, 28.0),), ((20.0, 28.0),))
    for name in ("FastDrag", "RegionDrag"):
        with pytest.raises(DragInputError, match="handle.* outside the mask") as e:
            run_edit(fast_model, image, far, cond, presets.preset(name), mask)
        assert e.value.input == "points"
        with pytest.raises(DragInputError, match="mask is empty") as e:
            run_edit(fast_model, image, far, cond, presets.preset(name), torch.zeros(32, 32))
        assert e.value.input == "mask"
        with pytest.raises(DragInputError, match="outside the 32x32 image") as e:
            run_edit(fast_model, image, DragPoints(((6.0, 6.0),), ((40.0, 6.0),)), cond, presets.preset(name), mask)
    with pytest.raises(DragInputError, match="pairs so their number must be even"):
        parse_points([[6, 6], [12, 6], [8, 8]])


def test_every_setting_has_a_source_and_overrides_are_checked():
    for name in ("FastDrag", "RegionDrag"):
        for path, item in presets.describe(name).items():
            assert item["source"].split(":")[0] in ("code", "paper", "ours"), (name, path)
    changed = apply_overrides(presets.preset("FastDrag"), {"edit.fill": "simultaneous", "num_steps": 20})
    assert changed.edit.fill == "simultaneous" and changed.num_steps == 20
    assert presets.describe("FastDrag", changed)["edit.fill"]["source"] == "user"
    with pytest.raises(DragInputError, match="edit.fill must be 'sequential' or 'simultaneous'"):
        apply_overrides(presets.preset("FastDrag"), {"edit.fill": "bilinear"})
    with pytest.raises(DragInputError, match="unknown setting 'tracker.radius'"):
        apply_overrides(presets.preset("RegionDrag"), {"tracker.radius": 3})


def test_moves_of_rounds_fastdrag_points_at_half_the_image_as_its_code():
    points = DragPoints(((5.0, 9.0),), ((13.0, 9.0),))
    moves = moves_of(presets.preset("FastDrag"), points, (32, 32), (16, 16), None)
    # 5 px -> round(2.5) = 2 at half size (half to even) -> 2 latent pixels at the 16-wide latent
    assert moves.handles.tolist() == [[2.0, 4.0]] and moves.targets.tolist() == [[6.0, 4.0]]
    assert moves.region.all()


def test_fastdrag_resamples_the_whole_image_as_its_code_and_paste_outside_keeps_the_rest(fast_model, cond):
    image = blob_image(centre=(10, 12))
    mask = box(32, 32, 4, 2, 22, 20)
    points = DragPoints(((10.0, 12.0),), ((16.0, 12.0),))
    code = run_edit(fast_model, image, points, cond, presets.preset("FastDrag"), mask)
    kept_config = apply_overrides(presets.preset("FastDrag"), {"edit.paste_outside": True})
    kept = run_edit(fast_model, image, points, cond, kept_config, mask)
    moves = moves_of(kept_config, points, (32, 32), (16, 16), mask)
    outside = ~moves.pixels
    # what may change: the mask, and where the warp writes (here within the mask's circle, past its edge)
    assert (moves.pixels & (mask < 0.5)).any() and outside.sum() > 300
    assert torch.equal(kept.image[..., outside], image[..., outside])
    assert not torch.equal(kept.image[..., ~outside], image[..., ~outside])
    # the code's default regenerates outside the mask too
    assert (code.image[..., outside] - image[..., outside]).abs().max() > 1e-3
    assert torch.allclose(code.image[..., ~outside], kept.image[..., ~outside], atol=0.5)
