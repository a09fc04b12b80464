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
from .schedules import AlternatingDragDenoise, PositionSupervisedBacktracking, SingleTimestep
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
    """DragDiffusion (Shi et al. 2024): strength 0.7, r1 = 1, r2 = 3, Adam 0.01, 80 steps, lambda 0.1."""
    return EditConfig(
        inversion_strength=0.7,
        drag=DragSettings(learning_rate=0.01, mask_weight=0.1),
        tracker=NearestNeighbourTracker(radius=3),
        supervision=PointDragSupervision(radius=1),
        schedule=SingleTimestep(max_steps=80),
    )


def freedrag() -> EditConfig:
    """FreeDrag (Ling et al. 2024): adaptive template + line search with backtracking, no tracking.

    l = 1, d = 5 feature pixels, mask gamma = 10 with a mean mask term, up to 300 steps (Sec. 5.1,
    method-notes); template patch radius 3 (Sec. 5.1; the authors' code uses 4). Everything else
    "following DragDiffusion" (Sec. 5.1): strength 0.7, Adam 0.01, the same LoRA.
    """
    return EditConfig(
        inversion_strength=0.7,
        drag=DragSettings(learning_rate=0.01, mask_weight=10.0, mask_reduction="mean"),
        tracker=LineSearchTracker(max_step=5.0, steps_per_target=5),
        supervision=AdaptiveTemplateSupervision(radius=3, target_distance=1.0),
        schedule=SingleTimestep(max_steps=300),
    )


def stabledrag() -> EditConfig:
    """StableDrag (Cui et al. 2024): discriminative tracking + confident motion supervision.

    lambda = 0.3, tau = 0.4, Adam 0.01 (Sec. 4.1); 60 steps (the setting of Tables 1-2); everything
    else DragDiffusion's defaults, as the paper says it follows them (r1 = 1, r2 = 3, lambda 0.1).
    """
    return EditConfig(
        inversion_strength=0.7,
        drag=DragSettings(learning_rate=0.01, mask_weight=0.1),
        tracker=DiscriminativeTracker(radius=3, weight=0.3),
        supervision=ConfidentSupervision(radius=1, threshold=0.4),
        schedule=SingleTimestep(max_steps=60),
    )


def gooddrag() -> EditConfig:
    """GoodDrag (Zhang et al. 2024): alternating drag and denoising + information-preserving supervision.

    Strength 0.75 (T = 38), r1 = 4, r2 = 12, beta = 4, lambda 0.2, Adam 0.02, K = 70 (drag_rounds),
    B = 10 (rounds_per_denoise), J = 3 (supervision_steps) (Sec. 4.1); mask reference the original
    trajectory's z_{t-1} (eq. 8); features up_blocks[2] as the authors' code (the paper says the
    last layer); LoRA on to_q/k/v (method-notes).
    """
    return EditConfig(
        inversion_strength=0.75,
        lora=LoraSettings(targets=("to_q", "to_k", "to_v")),
        drag=DragSettings(learning_rate=0.02, mask_weight=0.2, mask_reference="trajectory"),
        tracker=NearestNeighbourTracker(radius=12),
        supervision=PointDragSupervision(radius=4, step=4.0, reference="original"),
        schedule=AlternatingDragDenoise(rounds_per_denoise=10, supervision_steps=3, drag_rounds=70),
    )


def adaptivedrag() -> EditConfig:
    """AdaptiveDrag (Chen et al. 2024): auto-mask from superpixels, semantic-region supervision and
    tracking, position-supervised backtracking, CLoss during sampling.

    Strength 0.8 as the authors' code (the paper's text says the 35th of 50 steps, 0.7); up to 300
    updates (paper); LoRA rank 16, AdamW 5e-4, 80 steps, batch 4 (paper, as DragDiffusion). The
    paper gives no learning rate or lambda for the drag: DragDiffusion's (0.01, 0.1), on which it
    builds. n = 80, the superpixel features, radii and CLoss numbers are ours (see their modules).
    The auto_mask settings also make the superpixels of the semantic regions.
    """
    return EditConfig(
        inversion_strength=0.8,
        drag=DragSettings(learning_rate=0.01, mask_weight=0.1),
        tracker=SemanticRegionTracker(),
        supervision=SemanticRegionSupervision(),
        schedule=PositionSupervisedBacktracking(n=80, max_steps=300),
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
# matching prefix wins; a value no entry covers is the engine's default (see describe()).
_DD = "DragDiffusion Sec. 4.1"
_NOTES = "method-notes"
_SHARED = {
    "lora": f"{_DD} (rank 16, AdamW 5e-4, batch 4, 80 steps); to_out.0 as the authors' code ({_NOTES})",
    "drag.features": f"decoder up_blocks[2] at half the image size ({_NOTES})",
    "drag.reach_distance": f"reached at distance < 2 feature pixels ({_NOTES})",
    "drag.mask_reduction": "sum over the latent (eq. 3)",
    "drag.mask_reference": "one DDIM step of the original z_t",
    "reference": f"mutual self-attention in the last two decoder levels, blocks 10..15 ({_NOTES})",
}
SOURCES = {
    "DragDiffusion": {
        **_SHARED,
        "inversion_strength": f"{_DD}: the 35th of 50 DDIM steps",
        "drag.learning_rate": _DD, "drag.mask_weight": _DD,
        "tracker": f"{_DD}: nearest neighbour (eq. 5), r2 = 3",
        "supervision": f"{_DD}: point drag (eq. 3), r1 = 1",
        "schedule": f"{_DD}: 80 steps at one timestep",
    },
    "FreeDrag": {
        **_SHARED,
        "lora": "FreeDrag Sec. 5.1: rank-16 LoRA following DragDiffusion (its defaults)",
        "inversion_strength": "FreeDrag Sec. 5.1 follows DragDiffusion (0.7)",
        "drag.learning_rate": "FreeDrag Sec. 5.1 follows DragDiffusion (Adam 0.01)",
        "drag.mask_weight": "FreeDrag Sec. 5.1: gamma = 10",
        "drag.mask_reduction": f"mean over the latent (the authors' code, {_NOTES})",
        "tracker": "FreeDrag Sec. 4.2-4.3: line search with backtracking, d = 5 (diffusion), 5 steps per target",
        "tracker.candidates": "FreeDrag eq. 8: candidates at 0.1 d .. d",
        "supervision": "FreeDrag Sec. 4.1: adaptive template, l = 1 (diffusion)",
        "supervision.radius": "FreeDrag Sec. 5.1: r = 3 (the authors' code uses 4)",
        "supervision.max_update": "ours: the paper caps lambda without a value; 0.5 is its 'well-optimised' case",
        "schedule": "FreeDrag Sec. 5.1: at most 300 steps",
    },
    "StableDrag": {
        **_SHARED,
        "lora": "StableDrag Sec. 4.3: the same LoRA as DragDiffusion",
        "inversion_strength": "StableDrag Sec. 4.1 follows DragDiffusion (0.7)",
        "drag.learning_rate": "StableDrag Sec. 4.1: Adam 0.01",
        "drag.mask_weight": "StableDrag Sec. 4.1 follows DragDiffusion (0.1)",
        "tracker": "StableDrag Sec. 3.3: discriminative tracking, r2 = 3 (DragDiffusion's)",
        "tracker.weight": "StableDrag Sec. 4.1: lambda = 0.3",
        "tracker.label_sigma": "ours: the paper gives no width for the Gaussian label",
        "tracker.ridge": "ours: the filter is fitted in closed form (the paper: ~1000 iterations)",
        "supervision": "StableDrag Sec. 3.4: confident motion supervision, r1 = 1 (DragDiffusion's)",
        "supervision.threshold": "StableDrag Sec. 4.1: tau = 0.4",
        "schedule": "StableDrag Tables 1-2: 60 steps at one timestep",
    },
    "GoodDrag": {
        **_SHARED,
        "lora": f"GoodDrag Sec. 4.1: rank 16; the rest DragDiffusion's; to_q/k/v only ({_NOTES})",
        "inversion_strength": "GoodDrag Sec. 4.1: 0.75 (T = 38 of 50)",
        "drag.learning_rate": "GoodDrag Sec. 4.1: Adam 0.02",
        "drag.mask_weight": "GoodDrag Sec. 4.1: lambda = 0.2",
        "drag.mask_reference": "GoodDrag eq. 8: the original trajectory's z_{t-1}",
        "drag.features": f"up_blocks[2] as the authors' code ({_NOTES}); the paper says the last layer",
        "tracker": "GoodDrag Sec. 4.1: nearest neighbour, r2 = 12",
        "supervision": "GoodDrag Sec. 3.4 (eq. 8): information-preserving, r1 = 4, beta = 4",
        "schedule": "GoodDrag Sec. 3.3 / Alg. 1: AlDD, alternating drag and denoise",
        "schedule.drag_rounds": "GoodDrag Sec. 4.1 / Alg. 1: K = 70 drag operations",
        "schedule.rounds_per_denoise": "GoodDrag Sec. 4.1 / Alg. 1: B = 10 drag operations per denoising step",
        "schedule.supervision_steps": "GoodDrag Sec. 4.1 / Alg. 1: J = 3 motion-supervision steps per drag operation",
        "reference": "GoodDrag Sec. 4.1: Latent-MasaCtrl from the 10th layer, after the drag phase",
    },
    "AdaptiveDrag": {
        **_SHARED,
        "lora": "AdaptiveDrag Sec. 4.1: rank 16, AdamW 5e-4, batch 4, 80 steps (as DragDiffusion)",
        "inversion_strength": f"the authors' code ({_NOTES}); the paper's Sec. 4.1 says the 35th of 50 steps (0.7)",
        "drag.learning_rate": "not in the paper: DragDiffusion's Adam 0.01 (the method builds on it)",
        "drag.mask_weight": "not in the paper: DragDiffusion's lambda 0.1 (the method builds on it)",
        "tracker": "AdaptiveDrag Sec. 3.4.2: the search window is the handle's superpixel; r2 = clip(r_eq, 3, 12) "
                   "is ours (DragDiffusion's and GoodDrag's r2 as bounds)",
        "supervision": "AdaptiveDrag Sec. 3.4.2: the patch is the handle's superpixel on the target's side; "
                       "r1 = clip(r_eq / 2, 1, 4) is ours (DragDiffusion's and GoodDrag's r1 as bounds)",
        "schedule": "AdaptiveDrag Sec. 3.4.1: position-supervised backtracking",
        "schedule.max_steps": "AdaptiveDrag Sec. 4.1: at most 300 optimisation steps",
        "schedule.n": "ours: the paper's user-defined n has no value; DragDiffusion's 80, the fixed count it replaces",
        "schedule.max_retries": "ours: undo-and-retry at most 3 times in a row (the paper bounds only the total)",
        "schedule.retry_lr_factor": "ours: a retried update takes half the step (an unchanged retry would repeat)",
        "auto_mask": "AdaptiveDrag Sec. 3.3: SLIC superpixels under the handles and along the drag, on the UNet's "
                     "own decoder features (the paper: SAM 2 features; no SAM weights here)",
        "auto_mask.n_segments": "AdaptiveDrag Sec. 3.3: about 200 superpixels",
        "auto_mask.timestep": "DIFT (Tang et al. 2023): SD's features are most semantic near t = 261",
        "auto_mask.ensemble": "DIFT: features averaged over noise draws",
        "auto_mask.dilation": "ours: two latent pixels (the mask is downsampled to the latent; the VAE blurs edges)",
        "auto_mask.colour_weight": "ours: some CIELAB colour beside the features (0 = features only, as the paper)",
        "auto_mask.compactness": "ours: SLIC's space-vs-distance trade-off for the PCA-reduced features",
        "auto_mask.blocks": "ours: the two up blocks before the last (SD 1.5: the 32x32 and 64x64 levels)",
        "auto_mask.channels": "ours: principal components of the features kept for SLIC",
        "auto_mask.smooth": "ours: close gaps between kept superpixels and fill holes",
        "auto_mask.seed": "ours: the noise of the feature pass (reproducible masks)",
        "guidance": "AdaptiveDrag Sec. 3.5, eq. 4: CLoss, symmetric cross-entropy of patch cosine similarity; "
                    "tokens, step and schedule are ours (the authors' code for it does not work)",
        "guidance.radius": "ours: a 5x5 latent patch (40x40 pixels on SD)",
        "guidance.temperature": "ours: CLIP's learnt temperature is ~0.01-0.07; 0.1 keeps the loss smooth",
        "guidance.step_size": "ours: the largest change of the predicted x0 per guided step, latent units",
        "guidance.iterations": "ours: one gradient step per guided sampling step",
        "guidance.fraction": "ours: guide the first half of the sampling steps, where the layout forms",
        "guidance.through_model": "ours: hold the noise prediction fixed (no UNet backward)",
    },
}


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
        return PRESETS[name]()
    except KeyError:
        from .errors import DragInputError
        raise DragInputError(f"unknown preset {name!r}; available: {', '.join(PRESETS)}", input="preset") from None


def describe_text(name: str, config: EditConfig | None = None) -> str:
    """describe() as lines "path = value  (source)", for a tooltip or a preview."""
    return "\n".join(f"{path} = {item['value']!r}  ({item['source']})"
                     for path, item in describe(name, config).items())
