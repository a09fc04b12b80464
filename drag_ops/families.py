"""Model families: what a drag needs to know about a UNet family beyond its layout.

The presets hold the papers' values, all measured on SD 1.5 at 512x512. A family made for other
images (SDXL: 1024x1024, a 3-level decoder, 70 transformer blocks) needs some of them restated:
which decoder level gives the features, how many image pixels a feature pixel is, where reference
attention starts, and the memory profile. Each family is one small table here, every value with
its source. The network knows its family (DiffusersUNet from its config, ComfyNetwork from
ComfyUI's model class); :func:`adapt` puts the family's values on a config where it still holds
the papers' values (plan() does, so every node and run_edit get them; what the user set is kept),
:func:`describe_text` is the settings output with their sources.

Why a feature pixel is 4 image pixels on SDXL: SDXL works at 1024 px where SD 1.5 works at 512, so
with features at a quarter of the image (256x256, as SD 1.5's half of 512) every radius, patch, step
and reach distance in feature pixels covers the part of the picture it covers in the papers, and the
papers' step budgets cover the same drag. Settings in latent pixels that are about the picture
(AdaptiveDrag's CLoss patch) double for the same reason; those about the VAE (the auto-mask's
dilation: its blur is a latent pixel or two at any size) do not.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from .errors import DragInputError

_LEVELS = "workbench/benchmarks/feature_levels.py"


@dataclass(frozen=True)
class Family:
    name: str
    feature_level: int  # decoder level (diffusers' up_blocks index) whose output the drag tracks
    feature_scale: int  # image pixels per feature pixel
    reference_level: int | None  # reference attention from this decoder level's first block on (None: the preset's)
    md_level: int  # decoder level of the DIFT-style features that measure Mean Distance (workbench/metrics.py)
    picture_latent_scale: int  # factor for settings in latent pixels that cover part of the picture
    gradient_checkpointing: bool  # default of the networks (memory: see the README's Speed section)
    memory: str  # the memory profile, one line of the settings output
    sources: dict = field(default_factory=dict)  # {setting path: source} for what the family sets or explains
    notes: str = ""  # one line for the settings output


SD = Family(
    name="SD 1.x/2.x", feature_level=2, feature_scale=2, reference_level=None, md_level=1, picture_latent_scale=1,
    gradient_checkpointing=False,
    memory="identity LoRA batch 4 (the papers'); the UNet in its loaded precision (ComfyUI's choice: fp16 on most "
           "GPUs; standalone: fp16 autocast on a GPU)",
    notes="the papers' model family: every preset value as the papers give it (1 feature pixel = 2 image pixels)")

SDXL = Family(
    name="SDXL", feature_level=1, feature_scale=4, reference_level=1, md_level=0, picture_latent_scale=2,
    gradient_checkpointing=True,
    memory="gradient checkpointing on in the LoRA and the drag (each UNet layer recomputed in the backward pass: "
           "about a third more time for a fraction of the activations; estimated peaks at 1024x1024 in fp16: 6.9 GiB "
           "for a LoRA step at batch 4, 5.4 GiB for a drag update, so every preset within 16 GB; "
           "workbench/benchmarks/memory_estimate.py, not measured on a GPU); identity LoRA batch 4 (the papers'); "
           "the UNet in its loaded precision (ComfyUI's choice: fp16 on most GPUs; standalone: fp16 autocast on a GPU)",
    sources={
        "drag.features.blocks": "ours: SDXL's up_blocks[1], 640 channels at the latent resolution, is SD 1.5's "
                                "up_blocks[2] by width, resolution and place (the decoder's second-to-last level); "
                                f"nearest-neighbour tracking finds shifted content there as on SD 1.5's ({_LEVELS})",
        "drag.features.scale": "ours: SDXL works at 1024 px: features at a quarter of the image (256x256 at 1024, as "
                               "SD 1.5's half of 512), so radii, steps and reach in feature pixels cover the same "
                               "part of the picture as the papers' (drag_ops/families.py)",
        "reference.start_block": "ours: SDXL's decoder self-attention at half the latent resolution (up_blocks[1]; "
                                 "blocks 64..69 of 70 on SDXL base), the level where SD 1.5's blocks 10..15 start; "
                                 "its full-resolution level has no attention",
        "guidance.radius": "ours: SD's 5x5 latent patch (40 px of 512) scaled to the same part of a 1024 image "
                           "(9x9 latent pixels)",
        "auto_mask.blocks": "ours: the two up blocks before the last; on SDXL up_blocks[0] and [1] (half and full "
                            "latent resolution, as SD 1.5's [1] and [2])",
    },
    notes="trained at 1024x1024; 1 feature pixel = 4 image pixels, so the preset's radii, steps and reach distance "
          "(feature pixels) cover the same part of a 1024 picture as of a 512 one on SD 1.5")

FAMILIES = (SD, SDXL)


POOLED_WIDTH = 1280  # SDXL's pooled prompt (OpenCLIP ViT-bigG's projection)


def of_diffusers_config(config) -> Family:
    """The family of a diffusers UNet2DConditionModel config. SDXL: the "text_time" added embedding of
    the pooled prompt and six size/crop numbers (2816 inputs on SDXL base); the refiner has five
    (an aesthetic score in place of the target size)."""
    kind = getattr(config, "addition_embed_type", None)
    if kind is None and getattr(config, "class_embed_type", None) is None:
        return SD
    width = getattr(config, "projection_class_embeddings_input_dim", None) or 0
    numbers = (width - POOLED_WIDTH) / (getattr(config, "addition_time_embed_dim", None) or 1)
    if kind == "text_time" and numbers == 6:
        return SDXL
    if kind == "text_time" and numbers == 5:
        raise DragInputError("this is the SDXL refiner: it was trained for the last, low-noise fifth of the "
                             "denoising only, and the drag works at about t = 700; use an SDXL base model, "
                             "fine-tune or merge", input="model")
    raise DragInputError(f"this UNet takes extra embeddings ({kind or config.class_embed_type}) the drag does not "
                         "build; drag editing works on SD 1.x/2.x and SDXL UNets", input="model")


def of(network) -> Family:
    """The network's family."""
    return network.family


# The papers' values (SD 1.5) of the settings a family restates: a setting that still holds one is the
# family's to set; a setting holding anything else was chosen and is kept.
def _papers_values() -> dict:
    from .guidance import CorrespondenceGuidance
    from .model import FeatureSpec
    from .reference import ReferenceControl
    return {"drag.features.blocks": FeatureSpec().blocks, "drag.features.scale": FeatureSpec().scale,
            "reference.start_block": ReferenceControl().start_block,
            "guidance.radius": CorrespondenceGuidance().radius}


def settings(config, network) -> dict:
    """{setting path: value} the network's family states for this config (nothing for SD 1.x/2.x).
    The values do not depend on the config's current ones, so stating them twice changes nothing."""
    from .one_pass import is_one_pass
    family = of(network)
    if family is SD or is_one_pass(config):  # the one-pass presets track nothing: their layers go by structure
        return {}
    out = {"drag.features.blocks": (family.feature_level,), "drag.features.scale": family.feature_scale}
    if config.reference is not None and family.reference_level is not None:
        layers = network.attention_layers()
        first = next((i for i, layer in enumerate(layers) if layer.level == family.reference_level), None)
        if first is not None:
            out["reference.start_block"] = first
    if config.guidance is not None:
        out["guidance.radius"] = _papers_values()["guidance.radius"] * family.picture_latent_scale
    return out


def adapt(config, network, keep=()):
    """A copy of an EditConfig with the network's family's values (each checked by its constructor, as
    an override is), in the settings that still hold the papers' values and that ``keep`` (paths an
    input set, e.g. the node's overrides) does not name: what a user chose stays theirs."""
    from .overrides import apply_overrides, settings_of
    current, papers = settings_of(config), _papers_values()
    changes = {path: value for path, value in settings(config, network).items()
               if path not in keep and path in current and current[path] == papers[path]}
    return apply_overrides(config, changes) if changes else config


def describe(name: str, config, network) -> dict:
    """As presets.describe ({path: {"value", "source"}}), against the preset as this network's family
    adapts it: a family value carries the family's source, a value that differs from it is "user"."""
    from .overrides import settings_of
    from .presets import preset, source_of
    family = of(network)
    default = settings_of(adapt(preset(name), network))
    out = {}
    for path, value in settings_of(config).items():
        if default.get(path, object()) != value:
            source = "user"
        else:
            source = family.sources.get(path) or source_of(name, path)
        out[path] = {"value": value, "source": source}
    return out


def summary(network, trains: bool = True) -> str:
    """Two lines: the family with its notes, and the memory choices in force (trains: False for a preset
    with no backward pass, which none of them concern)."""
    family = of(network)
    lines = [f"model family: {family.name}: {family.notes}"]
    dtype = str(network.dtype).replace('torch.', '')
    if not trains:
        return "\n".join(lines + [f"memory: training-free (no LoRA, no backward pass); UNet weights in {dtype}"])
    checkpointing = network.gradient_checkpointing
    chosen = " (chosen)" if checkpointing != family.gradient_checkpointing else ""
    memory = (f"memory: {family.memory}; gradient checkpointing {'on' if checkpointing else 'off'}{chosen}; "
              f"UNet weights in {dtype}")
    return "\n".join(lines + [memory])


def describe_text(name: str, config, network) -> str:
    """The settings output: the family line, then "path = value  (source)" for every setting."""
    from .one_pass import is_one_pass
    lines = [summary(network, trains=not is_one_pass(config))]
    lines += [f"{path} = {item['value']!r}  ({item['source']})" for path, item in describe(name, config, network).items()]
    return "\n".join(lines)
