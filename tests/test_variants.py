"""The method variants as strategies: each one's defining behaviour, the registry, the presets."""

from types import SimpleNamespace

import pytest
import torch

from comfyui_drag.drag_ops import presets
from comfyui_drag.drag_ops.coords import sample_at, square_offsets
from comfyui_drag.drag_ops.discriminative import (ConfidentSupervision, DiscriminativeTracker, gaussian_labels,
                                                  train_filters)
from comfyui_drag.drag_ops.drag import DragSession, DragSettings, drag
from comfyui_drag.drag_ops.errors import DragInputError
from comfyui_drag.drag_ops.inversion import invert
from comfyui_drag.drag_ops.line_search import AdaptiveTemplateSupervision, LineSearchTracker
from comfyui_drag.drag_ops.overrides import apply_overrides
from comfyui_drag.drag_ops.pipeline import run_edit
from comfyui_drag.drag_ops.points import parse_points
from comfyui_drag.drag_ops.schedules import AlternatingDragDenoise
from comfyui_drag.drag_ops.strategies import (REGISTRIES, SCHEDULES, SUPERVISIONS, TRACKERS, build,
                                              check_compatible, with_strategies)
from comfyui_drag.drag_ops.supervision import PointDragSupervision
from comfyui_drag.drag_ops.tracking import NearestNeighbourTracker
from tiny_models import blob_image, tiny_cond, tiny_model


# -- StableDrag ---------------------------------------------------------------------------------

def distractor_scene(seed=0, C=640):
    """Original features with a look-alike of the handle 2 px to its right; in the current features
    the handle's content has moved 1 px right and changed more than the look-alike differs. C = 640 as
    SD's features: with few channels a 1x1 filter cannot separate 49 patch pixels."""
    g = torch.Generator().manual_seed(seed)
    orig = torch.randn(1, C, 24, 24, generator=g)
    f = orig[0, :, 12, 12].clone()
    orig[0, :, 12, 14] = f + 0.3 * torch.randn(C, generator=g)  # the distractor
    current = orig.clone()
    current[0, :, 12, 12] = torch.randn(C, generator=g)  # what the handle left behind
    current[0, :, 12, 13] = f + 0.6 * torch.randn(C, generator=g)  # the handle's content, changed
    start = torch.tensor([[12.0, 12.0]])
    return SimpleNamespace(starts=start, handles=start.clone(), targets=torch.tensor([[20.0, 12.0]]),
                           orig_feats=orig, confidence=None), current


def test_discriminative_tracker_stays_on_the_handle_where_a_distractor_fools_nearest_neighbour():
    for seed in range(3):
        s, current = distractor_scene(seed)
        nearest = NearestNeighbourTracker(radius=3)
        nearest.begin(s)
        nearest.track(s, current)
        assert s.handles.tolist() == [[14.0, 12.0]]  # fooled by the look-alike

        s, current = distractor_scene(seed)
        tracker = DiscriminativeTracker(radius=3)
        tracker.begin(s)
        assert s.confidence is None
        tracker.track(s, current)
        assert s.handles.tolist() == [[13.0, 12.0]]
        assert s.confidence.shape == (1,) and 0 < float(s.confidence) <= 1.2


def test_filter_fits_the_gaussian_label():
    torch.manual_seed(0)
    offsets = square_offsets(3)
    labels = gaussian_labels(offsets, 1.0)
    patches = torch.randn(4, len(offsets), 640) + 0.5  # 4 handles, 7x7 patch, SD's 640 channels
    # its cost is measured with the whole StableDrag update in benchmarks/perf.py, not timed here
    z = train_filters(patches, patches[:, len(offsets) // 2], labels)
    fit = torch.bmm(patches, z[:, :, None])[..., 0]
    assert (fit - labels).abs().max() < 0.05


def test_confident_supervision_switches_to_the_original_template_below_tau_s1():
    torch.manual_seed(0)
    orig = torch.randn(1, 8, 16, 16)
    feats = orig + 0.5 * torch.randn(1, 8, 16, 16)  # the edited latent's features
    s = SimpleNamespace(starts=torch.tensor([[5.0, 6.0]]), handles=torch.tensor([[7.0, 6.0]]),
                        targets=torch.tensor([[12.0, 6.0]]), orig_feats=orig, active=torch.ones(1),
                        confidence=None)
    sup = ConfidentSupervision(radius=1, threshold=0.4)
    sup.begin(s)
    point, original = PointDragSupervision(radius=1), PointDragSupervision(radius=1, reference="original")
    point.begin(s)
    original.begin(s)

    assert torch.equal(sup.loss(s, feats), point.loss(s, feats))  # no confidence yet: eq. 1
    for confidence, low in [(0.9, False), (0.5, False), (0.35, True), (0.2, True), (0.7, False)]:
        s.confidence = torch.tensor([confidence])  # the first one is s_1 = 0.9; tau * s_1 = 0.36
        expected = original if low else point
        assert torch.equal(sup.loss(s, feats), expected.loss(s, feats)), confidence
        assert bool(sup.low) == low


# -- GoodDrag -----------------------------------------------------------------------------------

def test_information_preserving_reference_stays_fixed_while_the_handle_moves():
    torch.manual_seed(0)
    orig = torch.randn(1, 8, 16, 16)
    s = SimpleNamespace(starts=torch.tensor([[5.0, 6.0]]), handles=torch.tensor([[5.0, 6.0]]),
                        targets=torch.tensor([[12.0, 6.0]]), orig_feats=orig, active=torch.ones(1))
    ip, point = SUPERVISIONS["information_preserving"](), PointDragSupervision()
    ip.begin(s)
    point.begin(s)
    fixed = sample_at(orig, s.starts[:, None] + square_offsets(1))
    refs, point_refs = [], []
    for step in range(4):
        s.handles = s.handles + torch.tensor([[1.0, 0.5]])
        feats = orig + 0.3 * torch.randn_like(orig)
        patch = s.handles[:, None] + ip.offsets
        refs.append(ip.reference_patch(s, feats, patch))
        point_refs.append(point.reference_patch(s, feats, patch))
    assert all(torch.equal(r, fixed) for r in refs)
    assert not torch.allclose(point_refs[0], point_refs[1])  # DragDiffusion's follows the handle


@pytest.fixture(scope="module")
def tiny():
    model, cond = tiny_model(), tiny_cond()
    return model, cond, invert(model, model.codec.encode(blob_image()), cond, 0.8)


def test_alternating_schedule_interleaves_exactly_the_expected_denoising_steps(tiny, monkeypatch):
    model, cond, traj = tiny
    events = []
    for name in ("update", "track", "denoise"):
        inner = getattr(DragSession, name)

        def spy(self, *a, _inner=inner, _name=name, **k):
            events.append((_name[0].upper(), self.k))
            return _inner(self, *a, **k)
        monkeypatch.setattr(DragSession, name, spy)
    passes = {"grad": 0, "nograd": 0}
    forward = model.forward

    def counted(*a, **k):
        passes["grad" if torch.is_grad_enabled() else "nograd"] += 1
        # GoodDrag: reference attention only after the drag phase, never in its denoising steps
        assert not any(type(p).__name__ == "_MutualAttention" for p in model.network.unet.attn_processors.values())
        return forward(*a, **k)
    monkeypatch.setattr(model, "forward", counted)

    schedule = AlternatingDragDenoise(rounds_per_denoise=2, supervision_steps=3, drag_rounds=4)
    result = drag(model, traj, cond, parse_points([[4, 4], [28, 28]]), (32, 32),
                  settings=DragSettings(learning_rate=1e-4), tracker=NearestNeighbourTracker(radius=1),
                  schedule=schedule)
    drag_round = lambda k: [("U", k)] * 3 + [("T", k)]  # noqa: E731
    assert events == (drag_round(8) * 2 + [("D", 8)] + drag_round(7) * 2 + [("D", 7)])
    assert result.step_index == 8 - schedule.denoise_steps() == 6 and result.steps == 12
    # K*J forwards with gradients; one per denoising step without (its noise prediction is reused),
    # plus the original's features at each of the 3 timesteps visited
    assert passes == {"grad": 12, "nograd": 2 + 3}


class ScriptedAlternation:
    """What AlternatingDragDenoise drives, as a log: every forward returns fresh features 'f<n>';
    tracking never moves the handle."""

    def __init__(self):
        self.log, self.n, self.handles, self.k = [], 0, torch.zeros(1, 2), 9

    def forward(self):
        self.n += 1
        return "out", f"f{self.n}"

    def update(self, out, feats):
        self.log.append(("U", feats))

    def track(self, feats):
        self.log.append(("T", feats))

    def reached(self):
        return False

    def denoise(self, out):
        self.log.append(("D", self.k))
        self.k -= 1


def test_alternating_schedule_in_the_gooddrag_code_order_tracks_stale_retracks_and_stops_when_stuck():
    """gooddrag_step: tracking right after the J-th update on the features that update's loss used,
    a tracking on the denoised latent before each timestep's first update, a stop after `patience`
    trackings without change, and the timestep it stops at still denoised."""
    s = ScriptedAlternation()
    AlternatingDragDenoise(rounds_per_denoise=2, supervision_steps=2, drag_rounds=6, track_features="before_update",
                           retrack=True, patience=3, denoise_on_stop=True).run(s)
    assert s.log == [("T", "f1"),  # re-track on the inverted latent
                     ("U", "f1"), ("U", "f2"), ("T", "f2"),  # tracked on the last update's features
                     ("U", "f3"), ("U", "f4"), ("T", "f4"), ("D", 9),
                     ("T", "f6"),  # re-track on the denoised latent
                     ("U", "f6"), ("U", "f7"), ("T", "f7"),  # the 3rd tracking without change: stop ...
                     ("D", 8)]  # ... and the timestep it stopped at is denoised
    s = ScriptedAlternation()
    AlternatingDragDenoise(rounds_per_denoise=2, supervision_steps=2, drag_rounds=4).run(s)  # Alg. 1's order
    assert s.log == [("U", "f1"), ("U", "f2"), ("T", "f3"), ("U", "f3"), ("U", "f4"), ("T", "f5"), ("D", 9),
                     ("U", "f6"), ("U", "f7"), ("T", "f8"), ("U", "f8"), ("U", "f9"), ("T", "f10"), ("D", 8)]


# -- FreeDrag -----------------------------------------------------------------------------------

def ramp(shift=0.0, C=4, size=32):
    """Features that grow along x (F[c, y, x] = (x - shift) / 4): the patch mean at x is (x - shift) / 4,
    so template distances measure displacements along x."""
    x = torch.arange(size, dtype=torch.float32) - shift
    return (x / 4).expand(1, C, size, size).clone()


def freedrag_session(drags="per_handle", rollback="start", template="aggregate"):
    """The paper's reading by default (each handle's drag on its own, backtracking that stops at the
    start, the patch's mean as template); the code's ("joint", "remaining", "patch") on request."""
    sup = AdaptiveTemplateSupervision(radius=3, target_distance=1.0, template=template)
    tracker = LineSearchTracker(max_step=5.0, drags=drags, rollback=rollback)
    s = SimpleNamespace(starts=torch.tensor([[8.0, 16.0]]), targets=torch.tensor([[24.0, 16.0]]), k=5,
                        orig_feats=ramp(), supervision=sup, settings=DragSettings(), active=torch.ones(1))
    s.handles = s.starts.clone()
    tracker.begin(s)
    sup.begin(s)
    return s, sup, tracker


def on_segment(s, xy):
    d = s.targets[0] - s.starts[0]
    rel = torch.tensor(xy) - s.starts[0]
    cross = float(d[0] * rel[1] - d[1] * rel[0])
    along = float((rel * d).sum() / d.norm() ** 2)
    return abs(cross) < 1e-4 and -1e-6 <= along <= 1 + 1e-6


def test_freedrag_intermediate_targets_advance_along_the_line_on_good_steps():
    s, sup, tracker = freedrag_session()
    # the first intermediate target is where the template distance is l = 1: 4 px along the ramp
    assert s.handles.tolist() == [[12.0, 16.0]]
    assert float(sup.distances(s, s.orig_feats)) == pytest.approx(1.0)
    visited = [s.handles[0].tolist()]
    for step in range(1, 4):  # the content follows: features shifted by 4 px per drag
        tracker.track(s, ramp(shift=4.0 * step))
        assert tracker.events[-1] == ["next"]
        visited.append(s.handles[0].tolist())
    assert visited == [[12.0, 16.0], [16.0, 16.0], [20.0, 16.0], [24.0, 16.0]]
    assert all(on_segment(s, xy) for xy in visited)
    tracker.track(s, ramp(shift=16.0))  # dragged onto the target: done
    assert tracker.events[-1] == ["done"] and bool(tracker.settled(s)[0])


def test_freedrag_backtracks_after_a_failed_drag_and_stays_on_the_line():
    s, sup, tracker = freedrag_session()
    before, template = s.handles.clone(), s.template.clone()
    L_in = float(tracker.L_in[0])
    failed = ramp(shift=-4.0)  # the content went the wrong way: L = 2 > max(0.5 l, L_in = 1)
    for step in range(4):
        tracker.track(s, failed)
        assert tracker.events[-1] == ["drag"] and torch.equal(s.handles, before)  # 5 steps per target
    tracker.track(s, failed)
    assert tracker.events[-1] == ["back"]
    assert float(sup.distances(s, failed)) < 2.0 and L_in == pytest.approx(1.0)
    assert s.handles[0, 0] < before[0, 0] and on_segment(s, s.handles[0].tolist())
    # a failed drag barely updates the template: T <- lam F_r(h) + (1 - lam) T with F_r(h) = 16 / 4 and
    # lam = 1 / (1 + exp(a (L_end - b))), a = ln 9 / 0.6, b = 0.2, L_end = 2
    lam = ((s.template - template) / (4.0 - template)).mean()
    assert float(lam) == pytest.approx(1 / (1 + 9 ** ((2 - 0.2) / 0.6)), rel=1e-3)


def test_freedrag_stays_when_the_drag_improved_but_not_enough():
    s, sup, tracker = freedrag_session()
    before = s.handles.clone()
    partial = ramp(shift=1.6)  # L = |(12 - 1.6) / 4 - 2| = 0.6: below L_in = 1, above 0.5 l
    for step in range(5):
        tracker.track(s, partial)
    assert tracker.events[-1] == ["stay"] and torch.equal(s.handles, before)


def test_adaptive_template_loss_pauses_handles_already_close_to_the_template():
    s, sup, tracker = freedrag_session()
    s.tracker = tracker
    assert float(sup.loss(s, ramp(shift=4.0))) == 0.0  # at the intermediate target: L = 0 < 0.5 l
    assert float(sup.loss(s, ramp(shift=2.4))) == 0.0  # L = 0.4 < 0.5 l: paused
    assert float(sup.loss(s, ramp())) == pytest.approx(1.0)
    s, sup, tracker = freedrag_session(drags="joint")
    s.tracker = tracker
    assert float(sup.loss(s, ramp(shift=2.4))) == pytest.approx(0.4)  # the code pauses no handle


def test_freedrag_joint_drags_end_together_after_five_updates_or_once_every_loss_was_below_half_l():
    """The code's loop (freedrag_update): the drag of every handle ends after the 5th update, or after
    the update whose loss (computed before it) was below 0.5 l for every handle."""
    s, sup, tracker = freedrag_session(drags="joint")
    assert tracker.plans == [[[12.0, 16.0]]] and float(tracker.L_step[0]) == pytest.approx(1.0)
    for step in range(4):  # the loss at each update stays at 1: drags on
        tracker.track(s, ramp())
        assert tracker.events[-1] == ["drag"]
    tracker.track(s, ramp())  # the 5th update: the drag ends; L_end = 1 = L_in: back
    assert tracker.events[-1] == ["back"] and len(tracker.plans) == 2
    s, sup, tracker = freedrag_session(drags="joint")
    tracker.track(s, ramp(shift=4.0))  # after one update the loss is 0, but that update's loss was 1
    assert tracker.events[-1] == ["drag"]
    tracker.track(s, ramp(shift=4.0))  # the update just done had a loss of 0 < 0.5 l: the drag ends
    assert tracker.events[-1] == ["next"] and s.handles.tolist() == [[16.0, 16.0]]
    assert tracker.plans == [[[12.0, 16.0]], [[16.0, 16.0]]]


def test_freedrag_code_rollback_steps_back_by_d_even_behind_the_start():
    """get_each_point steps back by min(d, remaining distance) from the intermediate target, without
    stopping at the start point; the 'start' option stops there."""
    for rollback, back_to in (("remaining", 7.0), ("start", 8.0)):
        s, sup, tracker = freedrag_session(rollback=rollback)
        assert torch.equal(tracker._back(s), torch.tensor([[back_to, 16.0]]))


# -- registry and combinations ------------------------------------------------------------------

def test_every_registered_strategy_builds_with_its_name():
    assert set(TRACKERS) == {"nearest", "discriminative", "line_search", "semantic_region"}
    assert set(SUPERVISIONS) == {"point", "information_preserving", "adaptive_template", "confident", "semantic_region"}
    assert set(SCHEDULES) == {"single", "alternating", "adaptive"}
    for kind, registry in REGISTRIES.items():
        for name in registry:
            assert build(kind, name).name == name
    with pytest.raises(DragInputError, match="unknown tracker 'kalman'"):
        build("tracker", "kalman")


@pytest.mark.parametrize("tracker, supervision, schedule, reason", [
    ("line_search", "point", "single", "needs the 'adaptive_template' supervision"),
    ("nearest", "adaptive_template", "single", "only the 'line_search' tracker"),
    ("line_search", "adaptive_template", "alternating", "use the 'single' schedule"),
    ("line_search", "adaptive_template", "adaptive", "use the 'single' schedule"),
    ("nearest", "confident", "single", "reports none"),
])
def test_combinations_that_cannot_work_are_rejected_with_a_reason(tiny, tracker, supervision, schedule, reason):
    parts = build("tracker", tracker), build("supervision", supervision), build("schedule", schedule)
    with pytest.raises(DragInputError, match=reason):
        check_compatible(*parts)
    model, cond, traj = tiny
    with pytest.raises(DragInputError, match="cannot work together"):
        drag(model, traj, cond, parse_points([[6, 12], [12, 12]]), (32, 32), tracker=parts[0],
             supervision=parts[1], schedule=parts[2])


def test_swapping_a_strategy_into_a_preset_keeps_its_scale():
    config = with_strategies(presets.gooddrag(), tracker="discriminative")
    assert config.tracker.name == "discriminative" and config.tracker.radius == 12
    assert config.schedule.name == "alternating" and config.supervision.reference == "original"
    config = with_strategies(presets.dragdiffusion(), supervision="information_preserving")
    assert config.supervision.reference == "original" and config.supervision.radius == 1
    with pytest.raises(DragInputError, match="adaptive_template"):
        with_strategies(presets.dragdiffusion(), tracker="line_search")
    # AdaptiveDrag's region strategies size their windows per superpixel: nothing to carry over
    config = with_strategies(presets.adaptivedrag(), tracker="nearest", supervision="point")
    assert config.tracker.radius == 3 and config.supervision.radius == 1


def test_presets_list_their_values_with_sources_and_mark_overrides():
    for name in presets.PRESETS:
        table = presets.describe(name)
        assert table["inversion_strength"]["value"] == presets.preset(name).inversion_strength
        assert all(set(v) == {"value", "source"} and v["source"] for v in table.values())
        # every value names where it comes from: the authors' code, the paper, or our choice
        assert all(v["source"].startswith(("code: ", "paper: ", "ours: ", "unused: ")) for v in table.values()), name
    good = presets.describe("GoodDrag")
    assert good["schedule.drag_rounds"] == {
        "value": 70, "source": "code: GoodDrag gooddrag_ui.py, end time step 7 x 10 trackings (paper: K = 70)"}
    # where paper and code disagree the code is the preset and the source names the paper's option
    assert good["drag.mask_reference"]["value"] == "step" and "'trajectory'" in good["drag.mask_reference"]["source"]
    changed = apply_overrides(presets.preset("FreeDrag"), {"tracker.max_step": 3})
    table = presets.describe("FreeDrag", changed)
    assert table["tracker.max_step"] == {"value": 3.0, "source": "user"}
    assert table["supervision.target_distance"]["source"].startswith("code: FreeDrag")


# -- end to end ---------------------------------------------------------------------------------

SHORT = {
    "DragDiffusion": {"schedule.max_steps": 4},
    "FreeDrag": {"schedule.max_steps": 6, "supervision.target_distance": 0.05},  # the tiny model's scale
    "StableDrag": {"schedule.max_steps": 4},
    "GoodDrag": {"schedule.rounds_per_denoise": 2, "schedule.supervision_steps": 2, "schedule.drag_rounds": 4},
}


@pytest.mark.parametrize("name", list(SHORT))
def test_each_preset_runs_end_to_end_on_a_tiny_model(name):
    model, cond = tiny_model(), tiny_cond()
    config = apply_overrides(presets.preset(name), {"lora.steps": 2, "lora.rank": 4, **SHORT[name]})
    stages = set()
    result = run_edit(model, blob_image(), parse_points([[10, 12], [24, 14]]), cond, config,
                      callback=lambda stage, i, n, p: stages.add(stage))
    assert stages == {"lora", "invert", "drag", "sample"}
    assert result.image.shape == (1, 3, 32, 32) and torch.isfinite(result.image).all()
    assert result.drag.steps > 0 and len(result.drag.history) >= 2
    assert result.trajectory.steps == model.schedule.steps_for_strength(config.inversion_strength)


def test_a_mixed_combination_runs_end_to_end():
    """GoodDrag's schedule and supervision with StableDrag's tracker."""
    model, cond = tiny_model(), tiny_cond()
    config = with_strategies(presets.gooddrag(), tracker="discriminative")
    config = apply_overrides(config, {"lora.steps": 2, "lora.rank": 4, "schedule.rounds_per_denoise": 2,
                                      "schedule.supervision_steps": 2, "schedule.drag_rounds": 4,
                                      "supervision.step": 1.0, "tracker.radius": 3})
    result = run_edit(model, blob_image(), parse_points([[6, 6], [26, 26]]), cond, config)
    assert torch.isfinite(result.image).all() and 0 < result.drag.steps <= 8
    assert result.drag.step_index >= result.trajectory.steps - 2
    assert config.tracker._filters.shape[0] == 1  # the discriminative filter was trained and used
