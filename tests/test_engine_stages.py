"""Each engine stage on tiny random models: the behaviour a user relies on."""

import pytest
import torch

from comfyui_drag.drag_ops.coords import Geometry
from comfyui_drag.drag_ops.drag import DragSettings, drag
from comfyui_drag.drag_ops.errors import DragInputError
from comfyui_drag.drag_ops.inversion import invert
from comfyui_drag.drag_ops.model import FeatureSpec
from comfyui_drag.drag_ops.points import parse_points
from comfyui_drag.drag_ops.reference import ReferenceControl, sample
from comfyui_drag.drag_ops.drag_schedules import SingleTimestep
from comfyui_drag.drag_ops.tracking import NearestNeighbourTracker
from tiny_models import blob_image, tiny_model


@pytest.fixture(scope="module")
def trajectory(model, cond):
    return invert(model, model.codec.encode(blob_image()), cond, 0.7)


def test_features_come_from_the_chosen_block_at_the_chosen_size(model, cond):
    z = torch.randn(1, 4, 16, 16)
    out, feats = model.forward(z, 500, cond, FeatureSpec(blocks=(1, 2)), (20, 12))
    ch = model.network.unet.up_blocks[1].resnets[-1].out_channels + model.network.unet.up_blocks[2].resnets[-1].out_channels
    assert out.shape == z.shape and feats.shape == (1, ch, 20, 12)
    with pytest.raises(DragInputError, match="up_blocks 0..3"):
        model.check_features(FeatureSpec(blocks=(7,)))


def test_image_points_map_to_feature_and_latent_coordinates():
    g = Geometry(image_hw=(48, 64), latent_hw=(6, 8), feature_hw=(24, 32))
    p = torch.tensor([[10.0, 20.0]])
    assert g.image_to_feature(p).tolist() == [[5.0, 10.0]]
    assert g.image_to_latent(p).tolist() == [[1.25, 2.5]]
    assert torch.equal(g.feature_to_image(g.image_to_feature(p)), p)


def test_inversion_then_sampling_reconstructs_the_latent(model, cond):
    z0 = model.codec.encode(blob_image())
    traj = invert(model, z0, cond, 0.7)
    assert traj.steps == 7  # round(0.7 * 10)
    original, _ = sample(model, traj, traj.start, traj.steps, cond, control=None)
    moved = (traj.start - z0).norm()
    assert (original - z0).norm() < 0.1 * moved


def test_nearest_neighbour_tracker_recovers_a_known_displacement():
    torch.manual_seed(0)
    orig = torch.randn(1, 8, 24, 24)
    shifted = torch.roll(orig, shifts=(2, -3), dims=(2, 3))  # content moved by dx=-3, dy=+2

    class S:  # the part of a session a tracker reads
        starts = torch.tensor([[12.0, 10.0]])
        handles = starts.clone()
        orig_feats = orig

    tracker = NearestNeighbourTracker(radius=3)
    tracker.begin(S)
    tracker.track(S, shifted)
    assert S.handles.tolist() == [[9.0, 12.0]]


def test_motion_supervision_lowers_its_loss_and_moves_the_handle(model, cond, trajectory):
    losses = []
    result = drag(model, trajectory, cond, parse_points([[10, 12], [20, 12]]), (32, 32),
                  schedule=SingleTimestep(40), callback=lambda s, i, n, p: losses.append(p["loss"]))
    assert losses[-1] < losses[0]
    start, target = torch.tensor([10.0, 12.0]), torch.tensor([20.0, 12.0])
    assert (torch.tensor(result.handles[0]) - target).norm() < 0.5 * (start - target).norm()
    assert not torch.equal(result.latent, trajectory.start)


def test_mask_term_keeps_the_latent_outside_the_mask(model, cond, trajectory):
    mask = torch.zeros(32, 32)
    mask[:, :16] = 1  # left half editable (latent columns 0..7)
    points = parse_points([[6, 12], [12, 12]])

    def change(**kw):
        r = drag(model, trajectory, cond, points, (32, 32), schedule=SingleTimestep(15), **kw)
        c = (r.latent - trajectory.start).abs()[0].sum(0)
        return c[:, :8].mean(), c[:, 8:].mean()

    free_in, free_out = change()  # no mask: everything is editable
    kept_in, kept_out = change(mask=mask, settings=DragSettings(mask_weight=1e4))
    assert free_out > 0.5 * free_in
    # Adam's steps have size ~lr whatever the gradient, so "kept" means a small jitter
    assert kept_out < 0.1 * free_out
    assert kept_in > 5 * kept_out


def test_reference_control_with_identical_inputs_gives_identical_outputs(model, cond, trajectory):
    a, b = sample(model, trajectory, trajectory.start, trajectory.steps, cond, ReferenceControl())
    assert torch.allclose(a, b, atol=1e-5)


def test_edited_branch_reads_the_originals_keys_and_values(model, cond, trajectory):
    edited = trajectory.start + 0.3 * torch.randn_like(trajectory.start)
    other = type(trajectory)(trajectory.latents + 0.5)  # a different original
    _, e1 = sample(model, trajectory, edited, trajectory.steps, cond, ReferenceControl())
    _, e2 = sample(model, other, edited, trajectory.steps, cond, ReferenceControl())
    _, f1 = sample(model, trajectory, edited, trajectory.steps, cond, None)
    _, f2 = sample(model, other, edited, trajectory.steps, cond, None)
    assert torch.allclose(f1, f2, atol=1e-5)  # without control the branches are independent
    assert (e1 - e2).abs().max() > 1e-3  # with it, the edited output depends on the original
    assert all(type(p).__name__ != "_MutualAttention" for p in model.network.unet.attn_processors.values())


def test_reference_layers_default_to_the_last_two_decoder_levels(model):
    layers = model.network.attention_layers()
    assert {layers[i].level for i in ReferenceControl().indices(model.network)} == {2, 3}
    assert ReferenceControl(start_block=0).indices(model.network) == tuple(range(len(layers)))


@pytest.mark.parametrize("mask, expected", [
    (torch.ones(16, 16), "16x16 but the image is 32x32"),
    (torch.zeros(32, 32), "mask is empty"),
    (torch.ones(1, 32, 32), "2-D"),
])
def test_bad_masks_are_rejected(model, cond, trajectory, mask, expected):
    with pytest.raises(DragInputError, match=expected):
        drag(model, trajectory, cond, parse_points([[6, 12], [12, 12]]), (32, 32), mask=mask)


def test_points_outside_the_image_are_rejected_by_the_drag(model, cond, trajectory):
    with pytest.raises(DragInputError, match="outside"):
        drag(model, trajectory, cond, parse_points([[6, 12], [40, 12]]), (32, 32))


def test_gradient_checkpointing_gives_the_same_drag_and_is_switched_off_after(cond, trajectory):
    points = parse_points([[10, 12], [20, 12]])
    plain = drag(tiny_model(), trajectory, cond, points, (32, 32), schedule=SingleTimestep(5))
    saving = tiny_model()
    saving.network.gradient_checkpointing = True
    checkpointed = drag(saving, trajectory, cond, points, (32, 32), schedule=SingleTimestep(5))
    assert torch.allclose(plain.latent, checkpointed.latent, atol=1e-5)
    assert plain.history == checkpointed.history
    assert not any(getattr(m, "gradient_checkpointing", False) for m in saving.network.unet.modules())
