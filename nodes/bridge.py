"""Bridge: ComfyUI's MODEL / VAE / CONDITIONING as engine objects, and the identity LoRA as an
ordinary ComfyUI LoRA.

The engine runs on ComfyUI's own loaded model (nodes/comfy_network.py): no copy of the UNet is
made, ComfyUI's memory management sees every weight, and every patch on the MODEL acts in the
drag as it does in a KSampler.

ComfyUI runs nodes under ``torch.inference_mode()``; tensors made there cannot take part in
autograd, so what the gradient stages read (latents, images, contexts) is handed to the engine
as fresh copies made outside inference mode.

ComfyUI is imported inside the functions only: this module is importable without it.
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass

import torch

from ..drag_ops.errors import DragInputError
from ..drag_ops.images import engine_to_unit, unit_to_engine
from ..drag_ops.lora import LoraSettings, kohya_state_dict
from ..drag_ops.model import Conditioning, DiffusionModel
from ..drag_ops.plan import check_conditioning
from ..drag_ops.ddim import DDIMSchedule
from .comfy_network import ComfyNetwork, add_lora_patches

log = logging.getLogger(__name__)

SUPPORTED = ("a Stable Diffusion 1.x, 2.x or SDXL UNet checkpoint (SD 1.5, SD 2.1 base or 768-v, SDXL base "
             "1.0, and models fine-tuned or merged from them), with epsilon or v prediction")
MAX_NAME_BYTES = 120  # of a saved LoRA's name stem (file names may hold 255)


def _unsupported(what: str) -> DragInputError:
    return DragInputError(f"{what}; drag editing needs {SUPPORTED}", input="model")


def _normal_copy(t: torch.Tensor, device=None, dtype=None) -> torch.Tensor:
    """A copy that is not an inference tensor (usable with autograd), on device/dtype."""
    with torch.inference_mode(False):
        return t.detach().to(device=device or t.device, dtype=dtype or t.dtype, copy=True)


# -- MODEL ---------------------------------------------------------------------------------------

def check_supported(model_patcher) -> None:
    """Reject what the engine cannot drag, before anything loads: a UNet of the SD 1.x / 2.x or SDXL
    family (text cross-attention, latent in = latent out; SDXL's pooled-prompt and size embedding)."""
    import comfy.ldm.modules.diffusionmodules.openaimodel as openaimodel
    import comfy.model_base as model_base

    base = getattr(model_patcher, "model", None)
    kind = type(base).__name__
    if not isinstance(getattr(base, "diffusion_model", None), openaimodel.UNetModel):
        raise _unsupported(f"this MODEL is a {kind}, not a UNet")
    cfg = base.model_config.unet_config
    if isinstance(base, model_base.SDXLRefiner):
        raise _unsupported("this MODEL is the SDXL refiner, trained only for the last, low-noise fifth of the "
                           "denoising (the drag works at about t = 700)")
    if not isinstance(base, model_base.SDXL) and (cfg.get("adm_in_channels") or cfg.get("num_classes") is not None):
        raise _unsupported(f"this MODEL ({kind}) is a class- or image-conditioned UNet")
    if cfg.get("use_temporal_resblock") or cfg.get("use_temporal_attention"):
        raise _unsupported(f"this MODEL ({kind}) is a video UNet")
    if not cfg.get("context_dim"):
        raise _unsupported(f"this MODEL ({kind}) has no text cross-attention")
    if cfg["in_channels"] != cfg["out_channels"]:
        raise _unsupported(f"this MODEL ({kind}) takes {cfg['in_channels']} input channels "
                           "(an inpainting or instruct model)")


def schedule_from_comfy(model_patcher, num_steps: int = 50) -> DDIMSchedule:
    """The model's DDIM schedule from its model_sampling (after any sampling patches)."""
    import comfy.model_sampling as ms

    sampling = model_patcher.get_model_object("model_sampling")
    kinds = " + ".join(c.__name__ for c in type(sampling).__bases__)
    if not isinstance(sampling, ms.ModelSamplingDiscrete):
        raise _unsupported(f"this MODEL samples with {kinds}, not discrete DDPM timesteps")
    denoised = type(sampling).calculate_denoised
    if denoised is ms.EPS.calculate_denoised:
        prediction = "epsilon"
    elif denoised is ms.V_PREDICTION.calculate_denoised:
        prediction = "v_prediction"
    else:
        raise _unsupported(f"this MODEL predicts with {kinds}, which is neither epsilon nor v")
    sigmas = sampling.sigmas.detach().to("cpu", torch.float64)
    try:
        return DDIMSchedule(1.0 / (1.0 + sigmas ** 2), num_steps, prediction)
    except ValueError as e:
        raise DragInputError(str(e), input="num_steps") from None


def codec_of(model_patcher, vae) -> "ComfyVAECodec":
    """The VAE as the engine's codec, in this MODEL's latent scale."""
    check_supported(model_patcher)  # an unsupported model is named before the VAE is looked at
    return ComfyVAECodec(vae, model_patcher.get_model_object("latent_format"))


def diffusion_model_from_comfy(model_patcher, vae, num_steps: int = 50) -> DiffusionModel:
    """The engine's DiffusionModel for a ComfyUI MODEL (as loaded, patches applied) and VAE."""
    return diffusion_model_with_codec(model_patcher, codec_of(model_patcher, vae), num_steps)


def diffusion_model_with_codec(model_patcher, codec, num_steps: int = 50) -> DiffusionModel:
    """As diffusion_model_from_comfy, with a codec already made (e.g. the one the inversion used).
    Loads nothing (ComfyUI loads the weights when a stage runs), so the checks before a stage read
    its layout; rejects models the pack cannot drag."""
    check_supported(model_patcher)
    latent_format = model_patcher.get_model_object("latent_format")
    made_for = getattr(codec, "latent_format", latent_format)
    if type(made_for) is not type(latent_format):  # e.g. an SD 1.5 inversion given to an SDXL MODEL: same channels
        raise DragInputError(f"the inversion was made with a {type(made_for).__name__} model's latents, but this MODEL "
                             f"takes {type(latent_format).__name__} latents: invert with the same MODEL",
                             input="inversion")
    schedule = schedule_from_comfy(model_patcher, num_steps)
    channels = model_patcher.model.model_config.unet_config["in_channels"]
    if codec.latent_channels != channels:
        raise DragInputError(f"the VAE makes {codec.latent_channels}-channel latents but the model takes "
                             f"{channels}: use the VAE that belongs to the checkpoint", input="vae")
    return DiffusionModel(ComfyNetwork(model_patcher), codec, schedule)


# -- VAE -----------------------------------------------------------------------------------------

class ComfyVAECodec:
    """A ComfyUI VAE as the engine's LatentCodec.

    ComfyUI's VAE takes [B, H, W, 3] images in [0, 1] and gives latents in its own raw scale; the
    model's latent_format scales them to what the UNet sees. The engine sees [B, 3, H, W] in
    [-1, 1] and scaled latents. ComfyUI's VAE object does its own device and memory handling.
    """

    def __init__(self, vae, latent_format):
        if vae is None or getattr(vae, "first_stage_model", None) is None:
            raise DragInputError("no VAE: connect the VAE output of the checkpoint loader", input="vae")
        self.vae, self.latent_format = vae, latent_format
        self.downscale = int(vae.spacial_compression_encode())
        self.latent_channels = int(vae.latent_channels)

    @torch.no_grad()
    def encode(self, images: torch.Tensor) -> torch.Tensor:
        h, w = images.shape[-2:]
        if h % self.downscale or w % self.downscale:
            raise DragInputError(f"image size {w}x{h} is not a multiple of {self.downscale}", input="image")
        pixels = engine_to_unit(images).cpu()
        return _normal_copy(self.latent_format.process_in(self.vae.encode(pixels)).float())

    @torch.no_grad()
    def decode(self, latents: torch.Tensor) -> torch.Tensor:
        raw = self.latent_format.process_out(latents.detach().float().cpu())
        images = self.vae.decode(raw)
        return _normal_copy(unit_to_engine(images))


# -- CONDITIONING --------------------------------------------------------------------------------

def conditioning_from_comfy(conditioning, model: DiffusionModel | None = None, *, input: str = "conditioning") -> Conditioning:
    """The first entry of a ComfyUI CONDITIONING as the engine's Conditioning.

    ComfyUI's CONDITIONING is a list of [cond tensor [B, L, D], options dict]; drag editing uses
    one prompt, so further entries (areas, combines) and batch rows after the first are ignored.
    Given the model, the context is put on its device and its width checked.
    """
    if not isinstance(conditioning, (list, tuple)):
        raise DragInputError(f"malformed conditioning: expected CONDITIONING from CLIP Text Encode, got "
                             f"{type(conditioning).__name__}", input=input)
    if not conditioning:
        raise DragInputError("empty conditioning: connect a CLIP Text Encode output", input=input)
    entry = conditioning[0]
    if not isinstance(entry, (list, tuple)) or not entry or not torch.is_tensor(entry[0]) or entry[0].dim() != 3:
        raise DragInputError("malformed conditioning: expected ComfyUI's [[tensor [B, tokens, width], {...}], ...]",
                             input=input)
    if len(conditioning) > 1:
        log.info("drag editing uses the first of %d conditioning entries", len(conditioning))
    context = entry[0][:1]
    if not context.is_floating_point() or not torch.isfinite(context).all():
        raise DragInputError("conditioning holds non-finite or non-float values", input=input)
    # ComfyUI's own form of the prompt, for the network; its tensors copied too (a LoRA on the
    # cross-attention backpropagates through products of the context)
    native = [[_normal_copy(entry[0]), {k: _normal_copy(v) if torch.is_tensor(v) else v
                                        for k, v in (entry[1] if len(entry) > 1 else {}).items()}]]
    cond = Conditioning(_normal_copy(context, None, torch.float32), native=native)
    if model is not None:
        check_conditioning(cond, model, input)
    return cond


# -- LoRA ----------------------------------------------------------------------------------------

def lora_to_comfy_state_dict(lora, model_patcher, dtype: torch.dtype = torch.float16) -> dict:
    """The identity LoRA trained on this MODEL as a kohya-format state dict, which ComfyUI's stock
    LoraLoader (and other UIs) load. Save it with :func:`save_lora`."""
    return kohya_state_dict(lora, ComfyNetwork(model_patcher), dtype)


def lora_metadata(lora) -> dict:
    return {"ss_network_module": "networks.lora", "ss_network_dim": str(int(lora.rank)),
            "ss_network_alpha": str(float(lora.alpha)), "drag_identity_lora": "1"}


def save_lora(lora_sd: dict, name: str, metadata: dict | None = None) -> str:
    """Write a LoRA state dict into ComfyUI's first loras folder without overwriting anything.
    Returns the file name as LoraLoader lists it."""
    import os

    import folder_paths
    import safetensors.torch

    folder = os.path.realpath(folder_paths.get_folder_paths("loras")[0])
    os.makedirs(folder, exist_ok=True)
    # letters, digits, "_" and "-" only (no separators, dots or drive letters), short enough for any filesystem
    stem = re.sub(r"[^\w\-]+", "_", str(name or "")).strip("_")
    stem = stem.encode("utf-8")[:MAX_NAME_BYTES].decode("utf-8", "ignore").strip("_") or "drag_identity"
    data = safetensors.torch.save(lora_sd, metadata=metadata)
    for counter in range(1, 100_000):
        file_name = f"{stem}_{counter:05}.safetensors"
        path = os.path.join(folder, file_name)
        if os.path.dirname(path) != folder:  # cannot happen with the stem above; never write elsewhere
            raise DragInputError(f"cannot save the LoRA as {name!r}", input="save_name")
        try:
            with open(path, "xb") as f:  # "x": never replaces a file, even one made a moment ago
                f.write(data)
        except FileExistsError:
            continue
        return file_name
    raise DragInputError(f"models/loras already holds 99999 LoRAs named {stem}_*; choose another name",
                         input="save_name")


def apply_lora_patches(model_patcher, lora_sd: dict, strength: float = 1.0):
    """A clone of the MODEL with the LoRA added as ordinary ComfyUI weight patches (what
    LoraLoader does), so any downstream node, a KSampler included, sees it. The input MODEL is
    not changed. Every module of the LoRA must exist in the model."""
    return add_lora_patches(model_patcher.clone(), lora_sd, strength)


# -- which identity LoRA a MODEL carries ---------------------------------------------------------

IDENTITY_LORA = "drag_identity_lora"  # a ModelPatcher attachment: clone() passes it on, so it stays
# with the MODEL through ComfyUI's cache and through later patch nodes (LoraLoader, sampling patches)


@dataclass(frozen=True)
class IdentityLoraRecord:
    made_by: str  # the node that trained it
    settings: LoraSettings
    alpha: float
    keys: frozenset  # the MODEL's weight keys it patches
    file: str = ""  # in models/loras, when saved


def apply_identity_lora(model_patcher, lora, made_by: str, save_name: str = ""):
    """(a clone of the MODEL with the trained identity LoRA applied and a record of it, the saved
    file's name or ''). The record is what the drag's 'settings' output reports."""
    lora_sd = lora_to_comfy_state_dict(lora, model_patcher)
    patched = apply_lora_patches(model_patcher, lora_sd)
    name = save_lora(lora_sd, save_name, lora_metadata(lora)) if str(save_name or "").strip() else ""
    keys = frozenset(k for k, v in patched.patches.items() if len(v) > len(model_patcher.patches.get(k, ())))
    if lora.settings is not None:
        patched.set_attachments(IDENTITY_LORA, IdentityLoraRecord(made_by, lora.settings, lora.alpha, keys, name))
    return patched, name


def identity_lora_text(model_patcher) -> str:
    """One line saying which identity LoRA this MODEL carries: the record Drag Identity LoRA (or
    Drag Edit) left, other weight patches (a LoRA loaded from a file: ComfyUI keeps no name), or none."""
    patches = {k: len(v) for k, v in model_patcher.patches.items() if v}
    record = model_patcher.get_attachment(IDENTITY_LORA)
    if record is not None and record.keys <= set(patches):
        s = record.settings
        text = (f"identity LoRA: from {record.made_by}, rank {s.rank} (alpha {record.alpha:g}), {s.steps} steps, "
                f"learning rate {s.learning_rate:g}, batch {s.batch_size}, seed {s.seed}, "
                f"targets {', '.join(s.targets)}")
        if record.file:
            text += f"; saved as {record.file}"
        others = sum(1 for k, n in patches.items() if n > (k in record.keys))
        if others:
            text += (f"; the MODEL also carries other weight patches on {others} weights (e.g. a LoRA loaded by "
                     "LoraLoader)")
        return text
    if patches:
        return (f"identity LoRA: not from Drag Identity LoRA; the MODEL carries weight patches on {len(patches)} "
                "weights (e.g. a LoRA loaded by LoraLoader, whose file name ComfyUI does not keep on the MODEL)")
    return "identity LoRA: none on this MODEL (Drag Identity LoRA adds one, as all five papers do)"

