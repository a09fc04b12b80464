"""Each paper as a named combination of the engine's parts, with that paper's defaults."""

from __future__ import annotations

from dataclasses import dataclass, field

from . import rules
from .automask import AutoMaskSettings
from .drag import DragSettings
from .guidance import CorrespondenceGuidance
from .lora import LoraSettings
from .reference import ReferenceControl
from .rules import Number, Part
from .discriminative import ConfidentSupervision, DiscriminativeTracker
from .line_search import AdaptiveTemplateSupervision, LineSearchTracker
from .overrides import settings_of
from .drag_schedules import AlternatingDragDenoise, PositionSupervisedBacktracking, SingleTimestep
from .semantic_regions import SemanticRegionSupervision, SemanticRegionTracker
from .supervision import PointDragSupervision
from .tracking import NearestNeighbourTracker


@dataclass
class EditConfig:
    """Everything one drag edit needs besides the model, the image and the points."""

    inversion_strength: float = 0.7
    lora: LoraSettings | None = field(default_factory=LoraSettings)
    drag: DragSettings = field(default_factory=DragSettings)
    tracker: object = field(default_factory=NearestNeighbourTracker)
    supervision: object = field(default_factory=PointDragSupervision)
    schedule: object = field(default_factory=SingleTimestep)
    reference: ReferenceControl | None = field(default_factory=ReferenceControl)
    auto_mask: AutoMaskSettings | None = None  # AdaptiveDrag: superpixel mask along the drag
    guidance: CorrespondenceGuidance | None = None  # AdaptiveDrag: CLoss during sampling

    RULES = {"inversion_strength": Number(0, 1, above=True), "lora": Part(LoraSettings, optional=True),
             "drag": Part(DragSettings), "tracker": Part(), "supervision": Part(), "schedule": Part(),
             "reference": Part(ReferenceControl, optional=True), "auto_mask": Part(AutoMaskSettings, optional=True),
             "guidance": Part(CorrespondenceGuidance, optional=True)}

    def __post_init__(self):
        rules.check(self)


def dragdiffusion() -> EditConfig:
    """DragDiffusion (Shi et al. 2024): its code's UI defaults (drag_ui.py, utils/ui_utils.py::run_drag):
    strength 0.7, r1 = 1, r2 = 3, Adam 0.01, 80 steps, lambda 0.1, points rounded to feature pixels."""
    return EditConfig(
        inversion_strength=0.7,
        drag=DragSettings(learning_rate=0.01, mask_weight=0.1, round_points=True),
        tracker=NearestNeighbourTracker(radius=3),
        supervision=PointDragSupervision(radius=1),
        schedule=SingleTimestep(max_steps=80),
    )


def freedrag() -> EditConfig:
    """FreeDrag (Ling et al. 2024): adaptive template + line search with backtracking, no tracking, as
    its code (FreeDrag--diffusion--version: drag_ui.py, utils/freedrag_utils.py::freedrag_update):
    l = 1, d = 5, lambda = 10 on a mean mask term, at most 300 updates, a 9x9 patch template (r = 4;
    the paper: the aggregate of a 7x7 patch), one joint drag of every handle, an uncapped template
    update, a LoRA of 200 steps at 2e-4."""
    return EditConfig(
        inversion_strength=0.7,
        lora=LoraSettings(steps=200, learning_rate=2e-4),
        drag=DragSettings(learning_rate=0.01, mask_weight=10.0, mask_reduction="mean"),
        tracker=LineSearchTracker(max_step=5.0, steps_per_target=5, drags="joint", rollback="remaining"),
        supervision=AdaptiveTemplateSupervision(radius=4, target_distance=1.0, max_update=1.0, template="patch"),
        schedule=SingleTimestep(max_steps=300),
    )


def stabledrag() -> EditConfig:
    """StableDrag (Cui et al. 2024): discriminative tracking + confident motion supervision. No code
    is public: lambda = 0.3, tau = 0.4, Adam 0.01 (Sec. 4.1); 60 steps (the setting of Tables 1-2);
    everything else DragDiffusion's (code defaults), which the paper says it follows."""
    return EditConfig(
        inversion_strength=0.7,
        drag=DragSettings(learning_rate=0.01, mask_weight=0.1),
        tracker=DiscriminativeTracker(radius=3, weight=0.3),
        supervision=ConfidentSupervision(radius=1, threshold=0.4),
        schedule=SingleTimestep(max_steps=60),
    )


def gooddrag() -> EditConfig:
    """GoodDrag (Zhang et al. 2024): alternating drag and denoising + information-preserving supervision,
    as its code runs them (gooddrag_ui.py, pipeline.py::GoodDragger): strength 0.75, r1 = 4, r2 = 12,
    beta = 4, lambda 0.2, Adam 0.02, 7 timesteps of 10 trackings of 3 updates, the motion term scaled
    by (2 r1)^2, tracking on the features of the last update's loss, a re-track after each denoising
    step, a stop after 10 trackings without change, the original's features and mask reference from
    DDIM denoising of z_T, and the timestep the drag stops at denoised before reference attention."""
    return EditConfig(
        inversion_strength=0.75,
        lora=LoraSettings(steps=70),
        drag=DragSettings(learning_rate=0.02, mask_weight=0.2, mask_reference="step", original_path="denoised"),
        tracker=NearestNeighbourTracker(radius=12),
        supervision=PointDragSupervision(radius=4, step=4.0, reference="original", weight="2r_squared"),
        schedule=AlternatingDragDenoise(rounds_per_denoise=10, supervision_steps=3, drag_rounds=70,
                                        track_features="before_update", retrack=True, patience=10,
                                        denoise_on_stop=True),
    )


def adaptivedrag() -> EditConfig:
    """AdaptiveDrag (Chen et al. 2024): auto-mask from superpixels, semantic-region supervision and
    tracking, position-supervised backtracking, CLoss during sampling.

    As its code (drag_ui.py, utils/drag_utils_nocontrol_sam_area_dmask_noiseloss.py): strength 0.8,
    Adam 0.01, lambda 0.1, the regions and radii of the superpixel under the handle. Where the code
    does not do what the paper describes, the paper's design is kept: its adaptive step count never
    takes effect (the code runs a fixed n_pix_step = 160 updates), so the schedule is the paper's
    position-supervised backtracking (n = 160, the count the code's rule divides by, at most 300
    updates); its CLoss does nothing, so CLoss is designed from the paper (see guidance.py). The
    auto-mask works on the UNet's own features (the code: SAM 2, whose weights are not available).
    """
    return EditConfig(
        inversion_strength=0.8,
        drag=DragSettings(learning_rate=0.01, mask_weight=0.1),
        tracker=SemanticRegionTracker(region="under_handle", radii="spacing"),
        supervision=SemanticRegionSupervision(region="under_handle", radii="spacing", stop_distance=1.0),
        schedule=PositionSupervisedBacktracking(n=160, max_steps=300),
        auto_mask=AutoMaskSettings(),
        guidance=CorrespondenceGuidance(),
    )


PRESETS = {
    "DragDiffusion": dragdiffusion,
    "FreeDrag": freedrag,
    "StableDrag": stabledrag,
    "GoodDrag": gooddrag,
    "AdaptiveDrag": adaptivedrag,
}

# Where each preset value comes from: {preset: {setting path (or prefix): source}}. The longest
# matching prefix wins; a value no entry covers is the engine's default (see describe()). A source
# starts with "code:" (the authors' public code, file::function, which produced the published numbers;
# its repository is named in the docstring of each preset), "paper:" (the paper's section) or "ours:"
# (neither gives it: what was chosen and why). Where paper and code disagree, the preset is the code
# and the paper's reading is the setting named beside it.
_DDC = "code: DragDiffusion"  # Yujun-Shi/DragDiffusion
_ONE_STEP = "unused: the drag stays at one timestep"
_ATTENTION = ("MutualSelfAttentionControl(start_step=0, start_layer=10): the self-attention of transformer blocks "
              "10..15 of SD 1.5's 16, the last two decoder levels")
_LORA = {
    "lora.alpha": "code: LoRA layers without network_alpha (scale 1)",
    "lora.seed": "ours: the seed of the crops and noise (reproducible)",
}


def _drag_family(code: str, ui: str, update: str) -> dict:
    """What DragDiffusion and the codes built on it share: the run_drag preparation and the update loop."""
    return {
        **_LORA,
        "drag.mask_reference": f"{code}: {update} (x_prev_0: one DDIM step of the inverted z_t)",
        "drag.reach_distance": f"{code}: check_handle_reach_target (every handle < 2.0 feature pixels)",
        "drag.features": f"{code}: {ui}::run_drag (unet_feature_idx [3]: up_blocks[2], resized to half the image)",
        "drag.round_points": f"{code}: {ui}::run_drag (torch.round(point / image size * sup_res))",
        "drag.original_path": _ONE_STEP,
        "reference": f"{code}: {ui}::run_drag ({_ATTENTION})",
    }


SOURCES = {
    "DragDiffusion": {
        **_drag_family(_DDC, "utils/ui_utils.py", "utils/drag_utils.py::drag_diffusion_update"),
        "inversion_strength": f"{_DDC}: drag_ui.py, inversion strength 0.7 (paper: Sec. 4.1, the 35th of 50 DDIM steps)",
        "lora": f"{_DDC}: drag_ui.py (80 steps, lr 5e-4, batch 4, rank 16); utils/lora_utils.py::train_lora "
                "(to_q, to_k, to_v, to_out.0)",
        "drag.learning_rate": f"{_DDC}: drag_ui.py latent_lr 0.01 (paper: Sec. 4.1)",
        "drag.mask_weight": f"{_DDC}: drag_ui.py lam 0.1 (paper: Sec. 4.1)",
        "drag.mask_reduction": f"{_DDC}: utils/drag_utils.py::drag_diffusion_update (sum over the latent)",
        "tracker": f"{_DDC}: utils/drag_utils.py::point_tracking (nearest neighbour, paper eq. 5); "
                   "run_drag r_p = 3",
        "supervision": f"{_DDC}: utils/drag_utils.py::drag_diffusion_update (paper eq. 3); run_drag r_m = 1",
        "supervision.step": f"{_DDC}: drag_diffusion_update (di: a unit step toward the target)",
        "supervision.reference": f"{_DDC}: drag_diffusion_update (f0_patch: the current features, detached)",
        "supervision.weight": f"{_DDC}: drag_diffusion_update (((2*r_m+1)**2) * l1_loss: the patch's sum)",
        "schedule": f"{_DDC}: drag_ui.py n_pix_step 80, at one timestep (paper: Sec. 4.1)",
    },
    "FreeDrag": {
        **_drag_family("code: FreeDrag", "utils/ui_utils.py", "utils/freedrag_utils.py::freedrag_update"),
        "inversion_strength": "code: FreeDrag drag_ui.py, inversion strength 0.7 (paper: Sec. 5.1 follows DragDiffusion)",
        "lora": "code: FreeDrag drag_ui.py (200 steps, lr 2e-4, batch 4, rank 16); utils/lora_utils.py "
                "(LoRAAttnProcessor: to_q, to_k, to_v, to_out)",
        "drag.learning_rate": "code: FreeDrag drag_ui.py latent lr 0.01 (paper: Sec. 5.1 follows DragDiffusion)",
        "drag.mask_weight": "code: FreeDrag drag_ui.py lam 10 (paper: Sec. 5.1, gamma = 10)",
        "drag.mask_reduction": "code: FreeDrag utils/freedrag_utils.py::freedrag_update (mean over the latent)",
        "drag.reach_distance": "code: FreeDrag utils/freedrag_utils.py::update_signs (threshold_d = 2; paper: Sec. 4.3)",
        "tracker": "code: FreeDrag utils/freedrag_utils.py::get_each_point (line search with backtracking; paper: "
                   "Sec. 4.2, eq. 7-9)",
        "tracker.max_step": "code: FreeDrag drag_ui.py d_max 5 (paper: Sec. 5.1)",
        "tracker.steps_per_target": "code: FreeDrag freedrag_update (5 updates per drag; paper: Sec. 4.3)",
        "tracker.candidates": "code: FreeDrag get_each_point (interval_number 10; paper: eq. 8, 0.1 d .. d)",
        "tracker.drags": "code: FreeDrag freedrag_update (one drag for every point, ended when all losses are below "
                         "0.5 l; the paper's Sec. 4.3 read per point: 'per_handle')",
        "tracker.rollback": "code: FreeDrag get_each_point (back by min(d, remaining distance); 'start' stops at "
                            "the start point, the paper says neither)",
        "supervision": "code: FreeDrag freedrag_update (feature dragging toward the template; paper: eq. 2-6)",
        "supervision.radius": "code: FreeDrag freedrag_update win_r = 4 (paper: Sec. 5.1, r = 3)",
        "supervision.target_distance": "code: FreeDrag drag_ui.py l_expected 1 (paper: Sec. 5.1)",
        "supervision.max_update": "code: FreeDrag get_xishu (no cap; the paper's Sec. 4.1 caps lambda without a value)",
        "supervision.template": "code: FreeDrag get_features_plus (the patch's features, compared pixel by pixel; "
                                "the paper's eq. 1 aggregates the patch: 'aggregate')",
        "schedule": "code: FreeDrag drag_ui.py max_step 300 (paper: Sec. 5.1)",
    },
    "StableDrag": {
        **_drag_family("code: DragDiffusion (StableDrag has no public code and follows it)", "utils/ui_utils.py",
                       "utils/drag_utils.py::drag_diffusion_update"),
        "inversion_strength": "paper: StableDrag Sec. 4.1 follows DragDiffusion (0.7)",
        "lora": "paper: StableDrag Sec. 4.3, the same LoRA as DragDiffusion (its code's defaults)",
        "lora.alpha": _LORA["lora.alpha"] + " (DragDiffusion's)",
        "drag.learning_rate": "paper: StableDrag Sec. 4.1, Adam 0.01",
        "drag.mask_weight": "paper: StableDrag Sec. 4.1 follows DragDiffusion (0.1)",
        "drag.mask_reduction": "paper: StableDrag follows DragDiffusion (its code sums over the latent)",
        "tracker": "paper: StableDrag Sec. 3.3, discriminative tracking; r2 = 3 (DragDiffusion's)",
        "tracker.weight": "paper: StableDrag Sec. 4.1, lambda = 0.3",
        "tracker.label_sigma": "ours: the paper gives no width for the Gaussian label",
        "tracker.ridge": "ours: the filter is fitted in closed form (the paper: ~1000 iterations)",
        "supervision": "paper: StableDrag Sec. 3.4, confident motion supervision; r1 = 1 (DragDiffusion's)",
        "supervision.step": "paper: StableDrag follows DragDiffusion (unit steps)",
        "supervision.threshold": "paper: StableDrag Sec. 4.1, tau = 0.4",
        "schedule": "paper: StableDrag Tables 1-2, 60 steps at one timestep",
    },
    "GoodDrag": {
        **_LORA,
        "inversion_strength": "code: GoodDrag gooddrag_ui.py, inversion strength 0.75 (paper: Sec. 4.1, T = 38 of 50)",
        "lora": "code: GoodDrag gooddrag_ui.py (70 steps, lr 5e-4, batch 4, rank 16); utils/lora_utils.py "
                "(LoRAAttnProcessor2_0: to_q, to_k, to_v, to_out)",
        "drag.learning_rate": "code: GoodDrag gooddrag_ui.py latent lr 0.02 (paper: Sec. 4.1)",
        "drag.mask_weight": "code: GoodDrag gooddrag_ui.py lambda 0.2 (paper: Sec. 4.1; bench_gooddrag.py: 0.1)",
        "drag.mask_reduction": "code: GoodDrag pipeline.py::cal_motion_supervision_loss (sum over the latent)",
        "drag.mask_reference": "code: GoodDrag pipeline.py::get_original_features (one scheduler.step of the "
                               "original; the paper's eq. 8 reads the inverted trajectory's z_{t-1}: 'trajectory')",
        "drag.original_path": "code: GoodDrag pipeline.py::get_original_features (the original's latents and "
                              "features after a denoise: DDIM denoising of z_T; 'inversion': the inverted trajectory)",
        "drag.reach_distance": "code: GoodDrag utils/drag_utils.py::check_handle_reach_target (< 2.0)",
        "drag.features": "code: GoodDrag pipeline.py::GoodDragger (feature_idx 3: up_blocks[2], half the image; "
                         "the paper says the last layer)",
        "drag.round_points": "code: GoodDrag pipeline.py::get_handle_target_points (torch.round)",
        "tracker": "code: GoodDrag utils/drag_utils.py::point_tracking; gooddrag_ui.py r2 = 12 (paper: Sec. 4.1)",
        "supervision": "code: GoodDrag pipeline.py::cal_motion_supervision_loss (information-preserving, paper "
                       "eq. 8); gooddrag_ui.py r1 = 4",
        "supervision.step": "code: GoodDrag gooddrag_ui.py drag distance d = 4 (paper: beta = 4)",
        "supervision.reference": "code: GoodDrag cal_motion_supervision_loss (the original's features at the "
                                 "original points)",
        "supervision.weight": "code: GoodDrag cal_motion_supervision_loss (((2*r_1)**2) * l1_loss; 'patch_sum' is "
                              "DragDiffusion's (2*r1+1)**2)",
        "schedule": "code: GoodDrag pipeline.py::GoodDragger.good_drag, gooddrag_step (AlDD; paper: Sec. 3.3, Alg. 1)",
        "schedule.rounds_per_denoise": "code: GoodDrag gooddrag_ui.py, 10 point trackings per step (paper: B = 10)",
        "schedule.supervision_steps": "code: GoodDrag gooddrag_ui.py max_drag_per_track 3 (paper: J = 3)",
        "schedule.drag_rounds": "code: GoodDrag gooddrag_ui.py, end time step 7 x 10 trackings (paper: K = 70)",
        "schedule.track_features": "code: GoodDrag gooddrag_step (tracks right after optimizer.step() on the features "
                                   "computed before it; Alg. 1 line 11 tracks the updated latent: 'after_update')",
        "schedule.retrack": "code: GoodDrag gooddrag_step (first_drag: a tracking on the denoised latent before the "
                            "first update of each timestep; not in Alg. 1)",
        "schedule.patience": "code: GoodDrag gooddrag_ui.py max_track_no_change 10 (bench_gooddrag.py: 5; not in "
                             "the paper: 0)",
        "schedule.denoise_on_stop": "code: GoodDrag good_drag (the timestep where the drag stops is denoised without "
                                    "reference attention, which starts at the next one)",
        "reference": "code: GoodDrag pipeline.py::set_latent_masactrl (start_layer 10: blocks 10..15, from the step "
                     "after the drag; paper: Sec. 4.1)",
    },
    "AdaptiveDrag": {
        **_drag_family("code: AdaptiveDrag", "utils/ui_utils_nocontrol_sam_area_dmask_noiseloss.py",
                       "utils/drag_utils_nocontrol_sam_area_dmask_noiseloss.py::drag_diffusion_update"),
        "inversion_strength": "code: AdaptiveDrag drag_ui.py, inversion strength 0.8 (the paper's Sec. 4.1: the "
                              "35th of 50 steps, 0.7)",
        "lora": "code: AdaptiveDrag drag_ui.py (80 steps, lr 5e-4, batch 4, rank 16); utils/lora_utils.py "
                "(to_q, to_k, to_v, to_out.0)",
        "drag.learning_rate": "code: AdaptiveDrag drag_ui.py latent lr 0.01 (not in the paper)",
        "drag.mask_weight": "code: AdaptiveDrag drag_ui.py lam 0.1 (not in the paper)",
        "drag.mask_reduction": "code: AdaptiveDrag drag_diffusion_update (sum over the latent)",
        "tracker": "code: AdaptiveDrag point_tracking (nearest neighbour in the handle's region; paper: Sec. 3.4.2)",
        "tracker.region": "code: AdaptiveDrag extract_super_mask (the superpixel under the handle on the target's "
                          "side; 'travelling' is ours: the start's superpixel, carried along)",
        "tracker.radii": "code: AdaptiveDrag point_tracking, r2 = 2 s // 5 of the superpixel spacing s "
                         "(pos_super_seg.py::cal_super_seg_dis, whose transposed lookup is not reproduced; "
                         "ours: at least 1; 'area' is ours)",
        "supervision": "code: AdaptiveDrag drag_diffusion_update (motion supervision in the handle's region; "
                       "paper: Sec. 3.4.2)",
        "supervision.region": "code: AdaptiveDrag extract_super_mask (as the tracker's)",
        "supervision.radii": "code: AdaptiveDrag drag_diffusion_update, r1 = s // 7 of the superpixel spacing s "
                             "(ours: at least 1, where the code's 0 supervises no pixel and the drag does nothing)",
        "supervision.stop_distance": "code: AdaptiveDrag drag_diffusion_update (a point within 1 of its target "
                                     "leaves the loss; the drag stops at 2)",
        "schedule": "paper: AdaptiveDrag Sec. 3.4.1, position-supervised backtracking (the code's adaptive count "
                    "never takes effect: its loop runs a fixed n_pix_step)",
        "schedule.n": "code: AdaptiveDrag drag_ui.py n_pix_step 160, the count its adaptive rule divides by (the "
                      "paper's user-defined n)",
        "schedule.max_steps": "paper: AdaptiveDrag Sec. 4.1, at most 300 optimisation steps (the code's unused cap: 500)",
        "schedule.max_retries": "ours: undo-and-retry at most 3 times in a row (the paper bounds only the total)",
        "schedule.retry_lr_factor": "ours: a retried update takes half the step (an unchanged retry would repeat)",
        "auto_mask": "paper: AdaptiveDrag Sec. 3.3, SLIC superpixels under the handles and along the drag, on the "
                     "UNet's own decoder features (the paper and the code: SAM 2; no SAM weights here)",
        "auto_mask.n_segments": "code: AdaptiveDrag run_drag num_seg = 200 (paper: Sec. 3.3, about 200)",
        "auto_mask.compactness": "ours: SLIC's space-vs-distance trade-off for the PCA-reduced features (the code: "
                                 "10 on an RGB image)",
        "auto_mask.timestep": "ours: DIFT (Tang et al. 2023), SD's features are most semantic near t = 261",
        "auto_mask.ensemble": "ours: DIFT, features averaged over noise draws",
        "auto_mask.dilation": "ours: two latent pixels (the mask is downsampled to the latent; the VAE blurs edges)",
        "auto_mask.colour_weight": "ours: some CIELAB colour beside the features (0 = features only, as the paper)",
        "auto_mask.blocks": "ours: the two up blocks before the last (SD 1.5: the 32x32 and 64x64 levels)",
        "auto_mask.channels": "ours: principal components of the features kept for SLIC",
        "auto_mask.smooth": "ours: close gaps between kept superpixels and fill holes",
        "auto_mask.seed": "ours: the noise of the feature pass (reproducible masks)",
        "guidance": "paper: AdaptiveDrag Sec. 3.5, eq. 4, CLoss (symmetric cross-entropy of patch cosine "
                    "similarity); the rest is ours, since the code's CLoss does nothing",
        "guidance.radius": "ours: a 5x5 latent patch (40x40 pixels on SD)",
        "guidance.temperature": "ours: CLIP's learnt temperature is ~0.01-0.07; 0.1 keeps the loss smooth",
        "guidance.step_size": "ours: the largest change of the predicted x0 per guided step, latent units",
        "guidance.iterations": "ours: one gradient step per guided sampling step",
        "guidance.fraction": "ours: guide the first half of the sampling steps, where the layout forms",
        "guidance.through_model": "ours: hold the noise prediction fixed (no UNet backward)",
    },
}


# the training-free one-pass presets (FastDrag, RegionDrag): OnePassConfig, not EditConfig, so apart from
# PRESETS (what the drag optimizer runs); preset() and describe() serve both
from .one_pass_presets import ONE_PASS_PRESETS, ONE_PASS_SOURCES  # noqa: E402

ALL_PRESETS = {**PRESETS, **ONE_PASS_PRESETS}
SOURCES.update(ONE_PASS_SOURCES)


def source_of(name: str, path: str) -> str:
    table = SOURCES.get(name, {})
    parts = path.split(".")
    for n in range(len(parts), 0, -1):
        key = ".".join(parts[:n])
        if key in table:
            return table[key]
    return "engine default (the paper gives no value)"


def describe(name: str, config: EditConfig | None = None) -> dict:
    """{setting path: {"value": v, "source": where it comes from}} of a preset (or of `config`, the
    preset with the user's overrides: a changed value is marked "user")."""
    default = settings_of(preset(name))
    current = settings_of(config) if config is not None else default
    return {path: {"value": value,
                   "source": source_of(name, path) if default.get(path, object()) == value else "user"}
            for path, value in current.items()}


def preset(name: str) -> EditConfig:
    try:
        return ALL_PRESETS[name]()
    except KeyError:
        from .errors import DragInputError
        raise DragInputError(f"unknown preset {name!r}; available: {', '.join(ALL_PRESETS)}", input="preset") from None


def describe_text(name: str, config: EditConfig | None = None) -> str:
    """describe() as lines "path = value  (source)", for a tooltip or a preview."""
    return "\n".join(f"{path} = {item['value']!r}  ({item['source']})"
                     for path, item in describe(name, config).items())
