"""AdaptiveDrag's parts, each on the smallest case that shows its defining behaviour, and the
whole preset on a tiny model."""

import pytest
import torch

from comfyui_drag.drag_ops.automask import AutoMaskSettings
from comfyui_drag.drag_ops.drag import DragSettings, drag
from comfyui_drag.drag_ops.guidance import CorrespondenceGuidance, correspondence_loss
from comfyui_drag.drag_ops.inversion import invert
from comfyui_drag.drag_ops.lora import LoraSettings
from comfyui_drag.drag_ops.pipeline import run_edit
from comfyui_drag.drag_ops.points import parse_points
from comfyui_drag.drag_ops.presets import preset
from comfyui_drag.drag_ops.reference import sample
from comfyui_drag.drag_ops.drag_schedules import PositionSupervisedBacktracking
from comfyui_drag.drag_ops.semantic_regions import (SemanticRegionSupervision, SemanticRegionTracker,
                                                    adaptive_radii)
from comfyui_drag.drag_ops.tracking import NearestNeighbourTracker
from tiny_models import blob_image, tiny_cond, tiny_model

SMALL_SUPERPIXELS = AutoMaskSettings(n_segments=16, colour_weight=1.0, compactness=1.0, dilation=2)


class RegionSession:
    """What the semantic-region strategies read: labels, points, original features."""

    def __init__(self, regions, start, target, feats):
        self.regions = regions
        self.starts, self.targets = torch.tensor([start], dtype=torch.float32), torch.tensor([target], dtype=torch.float32)
        self.handles = self.starts.clone()
        self.orig_feats = feats
        self.active = torch.ones(1)


def l_shaped_regions():
    """Feature-map labels 24x24: label 1 is an L (a vertical bar x 8..11 plus a foot y 16..19)."""
    regions = torch.zeros(24, 24, dtype=torch.long)
    regions[4:20, 8:12] = 1
    regions[16:20, 8:20] = 1
    return regions


def test_supervision_patch_stays_in_the_handles_superpixel_on_the_target_side():
    torch.manual_seed(0)
    regions = l_shaped_regions()
    s = RegionSession(regions, (9.0, 10.0), (9.0, 22.0), torch.randn(1, 8, 24, 24))  # drag down
    sup = SemanticRegionSupervision(region="travelling", radii="area")
    sup.begin(s)
    patch = (s.starts[0] + sup.offsets[0]).round().long()
    assert len(patch) > 4
    assert bool((regions[patch[:, 1], patch[:, 0]] == 1).all())  # inside the superpixel
    assert bool((sup.offsets[0][:, 1] >= 0).all())  # on the target's side
    assert float(sup.offsets[0].norm(dim=-1).max()) <= sup.radii_used[0][0]
    loss = sup.loss(s, torch.randn(1, 8, 24, 24, requires_grad=True))
    assert loss.requires_grad and float(loss.detach()) > 0


def test_radii_grow_with_the_superpixel_within_the_other_papers_bounds():
    small, medium, large = adaptive_radii(4), adaptive_radii(200), adaptive_radii(10_000)
    assert small == (1.0, 3.0)  # DragDiffusion's r1, r2
    assert large == (4.0, 12.0)  # GoodDrag's r1, r2
    assert small < medium < large


def test_region_tracker_ignores_a_lookalike_outside_the_superpixel():
    """Fig. 5: a fixed square mixes in the neighbour's features (grass beside the stone)."""
    torch.manual_seed(0)
    regions = l_shaped_regions()
    orig = torch.randn(1, 8, 24, 24)
    start = (9.0, 10.0)
    moved = orig.clone()
    moved[0, :, 10, 9] = torch.randn(8)  # what was at the handle has moved on
    moved[0, :, 12, 9] = orig[0, :, 10, 9] + 0.1 * torch.randn(8)  # the content moved down 2, inside the bar
    moved[0, :, 10, 6] = orig[0, :, 10, 9]  # an exact lookalike just outside the bar (x = 6)
    nn = RegionSession(regions, start, (9.0, 22.0), orig)
    ours = RegionSession(regions, start, (9.0, 22.0), orig)
    square = NearestNeighbourTracker(radius=3)
    square.begin(nn)
    square.track(nn, moved)
    tracker = SemanticRegionTracker(region="travelling", radii="area")
    tracker.begin(ours)
    tracker.track(ours, moved)
    assert nn.handles.tolist() == [[6.0, 10.0]]  # fooled
    assert ours.handles.tolist() == [[9.0, 12.0]]


class StripeSession:
    """A 64x64 image cut into vertical superpixel stripes 16 px wide (labels 0..3), features 32x32: the
    image-resolution labels the code's regions and radii read."""

    def __init__(self, start, target, feats):
        from types import SimpleNamespace
        self.labels = (torch.arange(64) // 16).expand(64, 64).clone()
        self.regions = self.labels[::2, ::2].clone()
        self.superpixels = None
        self.geometry = SimpleNamespace(feature_hw=(32, 32))
        self.starts, self.targets = torch.tensor([start]), torch.tensor([target])
        self.handles = self.starts.clone()
        self.orig_feats = feats
        self.active = torch.ones(1)


def test_code_regions_follow_the_superpixel_under_the_handle_toward_the_target_with_spacing_radii():
    """extract_super_mask: the superpixel under the handle (stripe 1: feature x 8..15) on the target's
    side; radii from the 16 px centroid spacing: r1 = 16 // 7 = 2, r2 = 32 // 5 = 6."""
    torch.manual_seed(0)
    s = StripeSession((10.0, 16.0), (30.0, 16.0), torch.randn(1, 8, 32, 32))
    sup = SemanticRegionSupervision()  # the preset's: region "under_handle", radii "spacing", stop at 1
    sup.begin(s)
    assert sup.radii_used == [(2, 6)]
    region = sup.sp.region(s.handles[0], s.targets[0], 2)
    ys, xs = torch.nonzero(region, as_tuple=True)
    assert xs.min() == 10 and xs.max() == 15 and len(xs) == 6 * 32  # the stripe, from the handle on
    # the loss: the 5x5 square's pixels in the region (x 10..12, y 14..18), mean over channels
    feats = torch.randn(1, 8, 32, 32, requires_grad=True)
    loss = sup.loss(s, feats)
    moved = feats[0, :, 14:19, 11:13 + 1]  # a unit step right: x + 1 on whole pixels
    expected = (moved - feats[0, :, 14:19, 10:13].detach()).abs().mean(0).sum()
    assert float(loss.detach()) == pytest.approx(float(expected.detach()), rel=1e-5)
    loss.backward()
    assert feats.grad[0, :, :, :10].abs().sum() == 0 and feats.grad[0, :, :, 14:].abs().sum() == 0
    # a small superpixel part falls back to the half-disc of radius r
    s = StripeSession((15.0, 16.0), (30.0, 16.0), torch.randn(1, 8, 32, 32))
    sup = SemanticRegionSupervision(AutoMaskSettings(n_segments=2))  # a quarter superpixel: 128 pixels
    sup.begin(s)
    region = sup.sp.region(s.handles[0], s.targets[0], 3)
    ys, xs = torch.nonzero(region, as_tuple=True)
    assert xs.min() == 15 and xs.max() == 18 and ((xs - 15) ** 2 + (ys - 16) ** 2 <= 9).all()


def test_code_region_tracker_ignores_lookalikes_behind_the_handle_and_outside_its_superpixel():
    torch.manual_seed(0)
    orig = torch.randn(1, 8, 32, 32)
    f = orig[0, :, 16, 10].clone()
    moved = torch.randn(1, 8, 32, 32)
    moved[0, :, 16, 8] = f  # exact copies: behind the handle (away from the target) ...
    moved[0, :, 16, 16] = f  # ... and one pixel into the next superpixel
    moved[0, :, 17, 13] = f + 0.05 * torch.randn(8)  # the content, moved along, inside
    s = StripeSession((10.0, 16.0), (30.0, 16.0), orig)
    tracker = SemanticRegionTracker()
    tracker.begin(s)
    tracker.track(s, moved)
    assert s.handles.tolist() == [[13.0, 17.0]]
    square = NearestNeighbourTracker(radius=6)
    s = StripeSession((10.0, 16.0), (30.0, 16.0), orig)
    square.begin(s)
    square.track(s, moved)
    assert s.handles.tolist() == [[8.0, 16.0]]  # a square window takes the first exact copy


class ScriptedSession:
    """A session whose tracker moves the handle by scripted steps; update is a real Adam step."""

    def __init__(self, moves, start=(5.0, 5.0), target=(15.0, 5.0)):
        self.starts = torch.tensor([start])
        self.targets = torch.tensor([target])
        self.handles = self.starts.clone()
        self.settings = DragSettings()
        self.latent = torch.nn.Parameter(torch.zeros(4))
        self.opt = torch.optim.Adam([self.latent], lr=0.1)
        self.history, self.steps, self.moves = [self.handles.tolist()], 0, list(moves)
        self.updates = []  # (latent before, lr, Adam's first moment before) per update

    def forward(self):
        return None, self.latent * 1.0

    def update(self, out, feats):
        state = self.opt.state.get(self.latent, {})
        m = state["exp_avg"].clone() if "exp_avg" in state else None
        self.updates.append((self.latent.detach().clone(), self.opt.param_groups[0]["lr"], m))
        self.opt.zero_grad()
        (feats - torch.arange(4.0)).pow(2).sum().backward()
        self.opt.step()
        self.steps += 1

    def track(self, feats):
        self.handles = self.handles + torch.tensor([self.moves.pop(0)])
        self.history.append(self.handles.tolist())

    def reached(self):
        return bool(((self.targets - self.handles).norm(dim=-1) < self.settings.reach_distance).all())


def test_adaptive_schedule_undoes_steps_that_move_away_from_the_target():
    moves = [(-1, 0), (1, 0), (0, 0), (0.5, 0), (2, 0), (-1, 1), (-1, 1), (4, 0), (1, 0)]
    s = ScriptedSession(moves)
    schedule = PositionSupervisedBacktracking(n=5, max_steps=20, max_retries=3)  # ideal move l/n = 2
    schedule.run(s)
    # short moves accumulate from the last accepted point until they reach l/n
    assert schedule.verdicts == ["reject", "short", "short", "short", "accept", "reject", "reject", "accept",
                                 "short"]
    (z0, lr0, _), (z1, lr1, _) = s.updates[:2]
    assert torch.equal(z0, z1) and lr1 == lr0 / 2  # retried from the same latent with half the step
    (z5, lr5, m5), (z6, lr6, m6), (_, lr7, _), (_, lr8, _) = s.updates[5:9]
    assert torch.equal(z5, z6) and torch.equal(m5, m6)  # Adam's state is restored too
    assert (lr5, lr6, lr7, lr8) == (lr0, lr0 / 2, lr0 / 4, lr0)
    assert s.handles.tolist() == [[13.5, 5.0]] and s.reached()
    assert len(s.history) == 1 + 9 - 3  # undone updates leave no trace
    assert all(b[0][0] >= a[0][0] for a, b in zip(s.history, s.history[1:]))


def test_adaptive_schedule_gives_up_retrying_and_respects_the_budget():
    s = ScriptedSession([(-1, 0)] * 8)
    schedule = PositionSupervisedBacktracking(n=5, max_steps=8, max_retries=2)
    schedule.run(s)
    assert schedule.verdicts == ["reject", "reject", "forced"] * 2 + ["reject", "reject"]
    assert s.steps == 8 and s.opt.param_groups[0]["lr"] == 0.1


def test_correspondence_loss_falls_under_its_guidance_and_only_the_target_region_changes():
    model = tiny_model()
    g = torch.Generator().manual_seed(0)
    clean = torch.randn(1, 4, 16, 16, generator=g)
    edited = torch.randn(1, 4, 16, 16, generator=g)
    z = torch.cat([clean, edited])
    out = torch.zeros_like(z)  # eps = 0: x0 = z / sqrt(alpha)

    class Result:
        history, targets, step_index = [[8.0, 8.0]], [[20.0, 16.0]], 6

        class geometry:  # image 32x32 -> latent 16x16
            @staticmethod
            def image_to_latent(xy):
                return xy / 2

    class Trajectory:
        @staticmethod
        def at(k):
            return clean

    guidance = CorrespondenceGuidance(radius=2, step_size=0.2, fraction=0.5).bind(model, None, Trajectory, Result)
    assert guidance.guided == {6, 5, 4}
    for k in (6, 5, 4, 3):
        z = guidance(k, z, out)
    before = correspondence_loss(clean, edited, torch.tensor([[4.0, 4.0]]), torch.tensor([[10.0, 8.0]]))
    assert len(guidance.losses) == 3 and guidance.losses[0] == pytest.approx(float(before), rel=1e-4)
    assert guidance.losses[-1] < guidance.losses[0]
    changed = (z[1] - edited[0]).abs().sum(0) > 0
    assert changed[8, 10] and not changed[:4].any() and not changed[:, :6].any()  # only around the target
    assert torch.equal(z[0], clean[0])  # the original branch is untouched


def test_correspondence_guidance_through_the_model_also_lowers_the_loss():
    model, cond = tiny_model(eps_scale=1.0), tiny_cond()
    traj = invert(model, model.codec.encode(blob_image()), cond, 0.8)

    class Result:
        history, targets, step_index = [[10.0, 12.0]], [[22.0, 12.0]], traj.steps
        geometry = type("G", (), {"image_to_latent": staticmethod(lambda xy: xy / 2)})

    guidance = CorrespondenceGuidance(step_size=0.2, iterations=4, through_model=True).bind(model, cond, traj, Result)
    z = torch.cat([traj.start, traj.start])
    with torch.no_grad():
        out, _ = model.forward(z, model.schedule.timestep(traj.steps), cond)
    z = guidance(traj.steps, z, out)
    assert len(guidance.losses) == 4 and guidance.losses[-1] < guidance.losses[0]


def test_sampling_with_no_guidance_or_a_pass_through_one_is_unchanged():
    model, cond = tiny_model(), tiny_cond()
    traj = invert(model, model.codec.encode(blob_image()), cond, 0.8)
    edited = traj.start + 0.1
    calls = []

    def identity(k, z, out):
        calls.append(k)
        return z

    a = sample(model, traj, edited, traj.steps, cond)
    b = sample(model, traj, edited, traj.steps, cond, guidance=identity)
    assert calls == list(range(traj.steps, 0, -1))
    assert all(torch.equal(x, y) for x, y in zip(a, b))


def test_semantic_strategies_find_their_superpixels_when_none_are_given(monkeypatch):
    from comfyui_drag.drag_ops import automask, pipeline

    model, cond = tiny_model(), tiny_cond()
    image = blob_image()
    traj = invert(model, model.codec.encode(image), cond, 0.8)
    points = parse_points([[10, 12], [20, 12]])
    tracker, sup = SemanticRegionTracker(SMALL_SUPERPIXELS), SemanticRegionSupervision(SMALL_SUPERPIXELS)
    result = drag(model, traj, cond, points, (32, 32), tracker=tracker, supervision=sup,
                  schedule=PositionSupervisedBacktracking(n=10, max_steps=6))
    assert result.steps == 6 and result.targets == [[20.0, 12.0]] and result.geometry.feature_hw == (16, 16)
    # the labels were made at the image's resolution, and both strategies read their radii from them
    assert sup.sp.labels.shape == (32, 32) and tracker.sp is sup.sp and sup.radii_used == tracker.radii_used

    # through the pipeline's drag stage (the drag node's path) they come from the preset's settings
    asked = []
    real = automask.superpixels

    def spy(model, image, cond, settings, latent=None):
        asked.append(settings)
        return real(model, image, cond, settings, latent)

    monkeypatch.setattr(automask, "superpixels", spy)
    config = preset("AdaptiveDrag")
    config.auto_mask, config.schedule = SMALL_SUPERPIXELS, PositionSupervisedBacktracking(n=10, max_steps=2)
    pipeline.drag_stage(model, traj, cond, points, (32, 32), None, config)
    assert asked == [SMALL_SUPERPIXELS]


def test_adaptivedrag_preset_runs_end_to_end_on_a_tiny_model(monkeypatch):
    from comfyui_drag.drag_ops import pipeline

    model, cond = tiny_model(), tiny_cond()
    config = preset("AdaptiveDrag")
    assert config.inversion_strength == 0.8 and config.schedule.max_steps == 300
    config.lora = LoraSettings(steps=2, rank=4)
    config.schedule = PositionSupervisedBacktracking(n=10, max_steps=8)
    config.auto_mask = SMALL_SUPERPIXELS
    bound, seen = [], {}
    bind = config.guidance.bind
    config.guidance.bind = lambda *a: bound.append(bind(*a)) or bound[-1]
    drag_stage = pipeline.drag_stage

    def spy(*args, **kw):
        seen["mask"], seen["regions"] = args[5], args[8]
        return drag_stage(*args, **kw)

    monkeypatch.setattr(pipeline, "drag_stage", spy)
    stages = set()
    result = run_edit(model, blob_image(), parse_points([[10, 12], [20, 12]]), cond, config,
                      callback=lambda stage, i, n, p: stages.add(stage))
    assert stages == {"lora", "invert", "drag", "sample"}
    assert result.image.shape == (1, 3, 32, 32) and torch.isfinite(result.image).all()
    assert result.drag.step_index == 8 and 0 < result.drag.steps <= 8
    # the auto-mask and its superpixels reached the drag: the disc and the path, not the far corner
    mask, regions = seen["mask"], seen["regions"]
    assert mask.shape == regions.shape == (32, 32)
    assert float(mask[12, 10:21].min()) == 1 and float(mask[26:, 26:].max()) == 0
    assert bound and len(bound[0].losses) == 4  # CLoss on the first half of the 8 sampling steps


def test_the_preset_drags_on_a_small_image_whose_superpixels_are_under_7_px_apart():
    """With the preset's 200 superpixels a 32x32 image's superpixels are about 2 px apart and cover under
    half a feature pixel, where the code's r1 = s // 7 is 0 and its region empty without falling back: the
    loss would be 0 and the drag do nothing. The radii stay at least 1 and an empty region falls back."""
    model, cond = tiny_model(), tiny_cond()
    config = preset("AdaptiveDrag")
    config.lora, config.guidance = None, None
    config.schedule = PositionSupervisedBacktracking(n=10, max_steps=3)
    assert config.auto_mask.n_segments == 200
    result = run_edit(model, blob_image(), parse_points([[10, 12], [20, 12]]), cond, config)
    start = result.trajectory.at(result.drag.step_index)
    assert result.drag.steps > 0 and float((result.drag.latent - start).abs().max()) > 0
