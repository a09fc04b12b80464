"""Bridge: ComfyUI's MODEL / VAE / CONDITIONING as engine objects, and the identity LoRA as an
ordinary ComfyUI LoRA.

The engine works on a diffusers UNet2DConditionModel. ComfyUI holds the same network in the
original LDM layout (``model.model.diffusion_model``) and ships the key map between the two
(``comfy.utils.unet_to_diffusers``), so the bridge builds a diffusers config from ComfyUI's
unet_config and copies the weights that ComfyUI itself patched (LoRA stacks, merges) into it.

ComfyUI runs nodes under ``torch.inference_mode()``; its weights are inference tensors and cannot
take part in autograd. Every tensor handed to the engine here is a fresh copy made outside
inference mode, so the gradient stages (LoRA training, latent optimisation) can use it.

ComfyUI is imported inside the functions only: this module is importable without it.
"""

from __future__ import annotations

import logging
import re
import weakref
from dataclasses import dataclass

import torch

from ..drag_ops.errors import DragInputError
from ..drag_ops.lora import LoraSettings
from ..drag_ops.model import Conditioning, DiffusionModel
from ..drag_ops.plan import check_conditioning
from ..drag_ops.schedule import DDIMSchedule

log = logging.getLogger(__name__)

SUPPORTED = ("a Stable Diffusion 1.x or 2.x UNet checkpoint (SD 1.5, SD 2.1 base or 768-v, and "
             "models fine-tuned or merged from them), with epsilon or v prediction")
LORA_PREFIX = "lora_unet_"  # kohya naming: what ComfyUI, A1111 and diffusers all load
MAX_NAME_BYTES = 120  # of a saved LoRA's name stem (file names may hold 255)


def _unsupported(what: str) -> DragInputError:
    return DragInputError(f"{what}; drag editing needs {SUPPORTED}", input="model")


def _normal_copy(t: torch.Tensor, device=None, dtype=None) -> torch.Tensor:
    """A copy that is not an inference tensor (usable with autograd), on device/dtype."""
    with torch.inference_mode(False):
        return t.detach().to(device=device or t.device, dtype=dtype or t.dtype, copy=True)


# -- MODEL -> diffusers UNet ---------------------------------------------------------------------

def diffusers_unet_config(model_patcher) -> dict:
    """The UNet2DConditionModel config equivalent to a ComfyUI SD1.x/2.x MODEL (any depth)."""
    import comfy.ldm.modules.diffusionmodules.openaimodel as openaimodel

    base = getattr(model_patcher, "model", None)
    kind = type(base).__name__
    if not isinstance(getattr(base, "diffusion_model", None), openaimodel.UNetModel):
        raise _unsupported(f"this MODEL is a {kind}, not a UNet")
    cfg = base.model_config.unet_config
    if cfg.get("adm_in_channels") or cfg.get("num_classes") is not None:
        raise _unsupported(f"this MODEL ({kind}) is an SDXL-class or class-conditioned UNet")
    if cfg.get("use_temporal_resblock") or cfg.get("use_temporal_attention"):
        raise _unsupported(f"this MODEL ({kind}) is a video UNet")
    if not cfg.get("context_dim"):
        raise _unsupported(f"this MODEL ({kind}) has no text cross-attention")
    if cfg["in_channels"] != cfg["out_channels"]:
        raise _unsupported(f"this MODEL ({kind}) takes {cfg['in_channels']} input channels "
                           "(an inpainting or instruct model)")
    if getattr(base.model_config, "scaled_fp8", None) is not None:
        raise _unsupported(f"this MODEL ({kind}) has scaled fp8 weights; load an fp16 or fp32 file")
    for flag in ("use_scale_shift_norm", "resblock_updown", "disable_middle_self_attn"):
        if cfg.get(flag):
            raise _unsupported(f"this MODEL ({kind}) uses {flag}")

    mult, width = list(cfg["channel_mult"]), cfg["model_channels"]
    if mult[0] != 1:
        raise _unsupported(f"this MODEL ({kind}) has channel_mult {mult}")
    levels = len(mult)
    res = cfg["num_res_blocks"]
    res = [res] * levels if isinstance(res, int) else list(res)
    if len(set(res)) != 1:  # ComfyUI's own key map (and LoRA loading) assume this too
        raise _unsupported(f"this MODEL ({kind}) has a different number of res blocks per level {res}")
    channels = [width * m for m in mult]

    def per_level(depths, counts, where):
        out, i = [], 0
        for n in counts:
            level = set(depths[i:i + n])
            i += n
            if len(level) != 1:
                raise _unsupported(f"this MODEL ({kind}) mixes transformer depths {sorted(level)} in one {where} level")
            out.append(level.pop())
        return out

    down = per_level(list(cfg["transformer_depth"]), res, "down")
    # transformer_depth_output lists the output blocks last first (how ComfyUI detects them)
    up = per_level(list(reversed(cfg["transformer_depth_output"])), [r + 1 for r in reversed(res)], "up")
    mid = cfg.get("transformer_depth_middle", down[-1])
    if mid is None or mid < 1:
        raise _unsupported(f"this MODEL ({kind}) has no attention in its middle block")
    if down[-1] and down[-1] != mid:
        raise _unsupported(f"this MODEL ({kind}) has middle depth {mid} but last-level depth {down[-1]}")
    down_types = tuple("CrossAttnDownBlock2D" if d else "DownBlock2D" for d in down)
    up_types = tuple("CrossAttnUpBlock2D" if d else "UpBlock2D" for d in up)
    down[-1] = down[-1] or mid  # diffusers reads the middle block's depth from the last level

    heads_cfg, head_channels = cfg.get("num_heads", -1), cfg.get("num_head_channels", -1)
    heads = [c // head_channels if head_channels != -1 else heads_cfg for c in channels]

    return dict(
        sample_size=64,
        in_channels=cfg["in_channels"], out_channels=cfg["out_channels"],
        down_block_types=down_types, up_block_types=up_types,
        mid_block_type="UNetMidBlock2DCrossAttn",
        block_out_channels=tuple(channels),
        layers_per_block=res[0],
        transformer_layers_per_block=tuple(down),
        reverse_transformer_layers_per_block=tuple(up),
        attention_head_dim=tuple(heads),  # diffusers' name for the number of heads (its issue 2011)
        cross_attention_dim=cfg["context_dim"],
        use_linear_projection=bool(cfg.get("use_linear_in_transformer")),
        upcast_attention=cfg.get("attn_precision") == torch.float32,
        time_embedding_dim=width * 4,
        flip_sin_to_cos=True, freq_shift=0, norm_num_groups=32, norm_eps=1e-5,
    )


def _compute_dtype(model_patcher, device: torch.device) -> torch.dtype:
    if device.type == "cpu":
        return torch.float32
    base = model_patcher.model
    dtype = getattr(base, "manual_cast_dtype", None) or base.get_dtype()
    return dtype if dtype in (torch.float16, torch.bfloat16, torch.float32) else torch.float16


def _patched_weights(model_patcher, extra_memory: int) -> dict:
    """The UNet weights as ComfyUI computes them for sampling (patches applied), LDM keys."""
    import comfy.model_management as mm

    mm.load_models_gpu([model_patcher], memory_required=extra_memory, force_full_load=True)
    base = model_patcher.model
    if getattr(base, "model_lowvram", False) or base.current_weight_patches_uuid != model_patcher.patches_uuid:
        raise RuntimeError("ComfyUI did not load the MODEL fully patched; cannot read its weights")
    weights = dict(base.diffusion_model.state_dict())
    for key, wrappers in model_patcher.weight_wrapper_patches.items():
        name = key[len("diffusion_model."):]
        if name in weights:
            for wrap in wrappers:
                weights[name] = wrap(weights[name])
    return weights


def _skeleton(model_patcher):
    """The diffusers UNet for this MODEL, without weights (meta tensors)."""
    from diffusers import UNet2DConditionModel
    with torch.inference_mode(False), torch.device("meta"):
        return UNet2DConditionModel(**diffusers_unet_config(model_patcher))


def weight_map(model_patcher, unet=None) -> dict:
    """{diffusers UNet key: ComfyUI diffusion_model key} for every weight, checked both ways
    (every weight on each side has exactly one counterpart of the same size). Loads nothing."""
    import comfy.utils

    unet = unet if unet is not None else _skeleton(model_patcher)
    key_map = comfy.utils.unet_to_diffusers(model_patcher.model.model_config.unet_config)
    theirs = {k: v.numel() for k, v in model_patcher.model.diffusion_model.state_dict().items()}
    mapping, bad = {}, []
    for name, param in unet.state_dict().items():
        source = key_map.get(name)
        if theirs.get(source) != param.numel():
            bad.append(name)
        mapping[name] = source
    unused = set(theirs) - set(mapping.values())
    if bad or unused:
        raise RuntimeError(f"the UNet layouts do not match: {len(bad)} diffusers weights without a ComfyUI "
                           f"counterpart (e.g. {bad[:2]}), {len(unused)} ComfyUI weights unused "
                           f"(e.g. {sorted(unused)[:2]})")
    return mapping


def _build_unet(model_patcher, device: torch.device, dtype: torch.dtype):
    unet = _skeleton(model_patcher)
    mapping = weight_map(model_patcher, unet)
    shapes = {name: p.shape for name, p in unet.state_dict().items()}
    nbytes = sum(p.numel() for p in unet.parameters()) * torch.finfo(dtype).bits // 8
    weights = _patched_weights(model_patcher, nbytes if device.type != "cpu" else 0)
    # SD1's projections are 1x1 convs in one layout and may be linear in the other: reshape
    state = {name: _normal_copy(weights[source].reshape(shapes[name]), device, dtype)
             for name, source in mapping.items()}
    with torch.inference_mode(False):
        unet.load_state_dict(state, strict=True, assign=True)
    unet.requires_grad_(False).eval()
    return unet


def _move(module, device):
    # moved under inference mode (as every node runs), the weights would become inference tensors
    with torch.inference_mode(False):
        module.to(device)


class _UNetCache:
    """The last converted UNet, keyed on the ComfyUI model object and its patch set (weight
    patches and wrappers change ComfyUI's patches_uuid; replaced UNet parts are listed too).

    Moving points re-runs the drag with the same MODEL: the conversion is reused. A different
    LoRA stack or merge changes ComfyUI's patches_uuid and so converts again. One entry only:
    an SD1.5 UNet is 3.4 GB in fp32.
    """

    def __init__(self):
        self.key, self.model_ref, self.unet = None, None, None

    def get(self, model_patcher, device, dtype):
        import comfy.model_management as mm

        replaced = tuple(sorted((name, id(obj)) for name, obj in model_patcher.object_patches.items()
                                if name.startswith("diffusion_model")))
        key = (model_patcher.patches_uuid, replaced, str(device), dtype)
        hit = (self.unet is not None and self.key == key and self.model_ref() is model_patcher.model
               # an adapter left behind, or weights turned into inference tensors: rebuild
               and not getattr(self.unet, "peft_config", None)
               and not any(p.is_inference() for p in self.unet.parameters()))
        if not hit:
            self.clear()
            unet = _build_unet(model_patcher, device, dtype)
            self.key, self.model_ref, self.unet = key, weakref.ref(model_patcher.model), unet
        elif next(self.unet.parameters()).device.type != device.type:  # offloaded since: make room
            mm.free_memory(mm.module_size(self.unet), device)
            _move(self.unet, device)
        return self.unet

    def offload(self):
        """Move the cached UNet off the accelerator (kept for the next run)."""
        import comfy.model_management as mm
        if self.unet is not None:
            _move(self.unet, mm.unet_offload_device())
            mm.soft_empty_cache()

    def clear(self):
        self.key, self.model_ref, self.unet = None, None, None


_CACHE = _UNetCache()


def offload_cached_unet() -> None:
    _CACHE.offload()


def clear_unet_cache() -> None:
    _CACHE.clear()


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
    diffusers_unet_config(model_patcher)  # an unsupported model is named before the VAE is looked at
    return ComfyVAECodec(vae, model_patcher.get_model_object("latent_format"))


def model_layout(model_patcher, codec, num_steps: int = 50) -> DiffusionModel:
    """The engine's DiffusionModel for a ComfyUI MODEL without its weights (a UNet on the meta
    device): what the checks before a stage read (layout, schedule, codec). Loads nothing, takes
    about 0.1 s for SD 1.5; rejects models the pack cannot drag."""
    config = diffusers_unet_config(model_patcher)
    schedule = schedule_from_comfy(model_patcher, num_steps)
    if codec.latent_channels != config["in_channels"]:
        raise DragInputError(f"the VAE makes {codec.latent_channels}-channel latents but the model takes "
                             f"{config['in_channels']}: use the VAE that belongs to the checkpoint", input="vae")
    return DiffusionModel(_skeleton(model_patcher), codec, schedule)


def diffusion_model_from_comfy(model_patcher, vae, num_steps: int = 50) -> DiffusionModel:
    """The engine's DiffusionModel for a ComfyUI MODEL (as loaded, patches applied) and VAE."""
    return diffusion_model_with_codec(model_patcher, codec_of(model_patcher, vae), num_steps)


def diffusion_model_with_codec(model_patcher, codec, num_steps: int = 50) -> DiffusionModel:
    """As diffusion_model_from_comfy, with a codec already made (e.g. the one the inversion used)."""
    import comfy.model_management as mm

    layout = model_layout(model_patcher, codec, num_steps)  # rejects what cannot work before anything loads
    device = mm.get_torch_device()
    unet = _CACHE.get(model_patcher, device, _compute_dtype(model_patcher, device))
    return DiffusionModel(unet, codec, layout.schedule)


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
        pixels = ((images.float() + 1) / 2).clamp(0, 1).movedim(1, -1).cpu()
        return _normal_copy(self.latent_format.process_in(self.vae.encode(pixels)).float())

    @torch.no_grad()
    def decode(self, latents: torch.Tensor) -> torch.Tensor:
        raw = self.latent_format.process_out(latents.detach().float().cpu())
        images = self.vae.decode(raw)
        return _normal_copy(images.movedim(-1, 1).float() * 2 - 1)


# -- CONDITIONING --------------------------------------------------------------------------------

def conditioning_from_comfy(conditioning, model: DiffusionModel | None = None, *, input: str = "conditioning") -> Conditioning:
    """The first entry of a ComfyUI CONDITIONING as the engine's Conditioning.

    ComfyUI's CONDITIONING is a list of [cond tensor [B, L, D], options dict]; drag editing uses
    one prompt, so further entries (areas, combines) and batch rows after the first are ignored.
    Given the model, the context's width is checked and it is put on the model's device.
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
    cond = Conditioning(_normal_copy(context, None, torch.float32))
    if model is None:
        return cond
    check_conditioning(cond, model, input)
    return cond if model.device.type == "meta" else Conditioning(cond.context.to(model.device))


# -- LoRA ----------------------------------------------------------------------------------------

_PEFT_KEY = re.compile(r"^(?:base_model\.model\.)?(?:unet\.)?(?P<module>.+)\.lora_(?P<part>[AB])(?:\.[^.]+)?\.weight$")


def _peft_modules(state: dict) -> dict:
    """{diffusers module name: {"A": down, "B": up}} from a peft state dict."""
    modules: dict = {}
    for key, value in state.items():
        m = _PEFT_KEY.match(key)
        if m is None:
            raise ValueError(f"not a plain LoRA weight: {key!r} (DoRA, biases and embeddings are not supported)")
        modules.setdefault(m["module"], {})[m["part"]] = value
    broken = [k for k, v in modules.items() if set(v) != {"A", "B"}]
    if broken:
        raise ValueError(f"LoRA modules without both A and B weights: {broken[:3]}")
    return modules


def lora_to_comfy_state_dict(lora, dtype: torch.dtype = torch.float16) -> dict:
    """The engine's LoraWeights (peft keys, diffusers module names) as a kohya-format state dict
    (``lora_unet_<module>.lora_down/lora_up.weight`` and ``.alpha``), which ComfyUI's stock
    LoraLoader (and other UIs) load. Save it with :func:`save_lora`."""
    scale = float(lora.alpha) / float(lora.rank)
    out = {}
    for module, w in sorted(_peft_modules(lora.state).items()):
        name = LORA_PREFIX + module.replace(".", "_")
        down, up = w["A"], w["B"]
        with torch.inference_mode(False):
            out[f"{name}.lora_down.weight"] = down.detach().to("cpu", dtype).contiguous()
            out[f"{name}.lora_up.weight"] = up.detach().to("cpu", dtype).contiguous()
            out[f"{name}.alpha"] = torch.tensor(scale * down.shape[0], dtype=torch.float32)
    return out


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


def lora_key_map(model_patcher) -> dict:
    """ComfyUI's map from LoRA module names to this MODEL's weight keys."""
    import comfy.lora
    return comfy.lora.model_lora_keys_unet(model_patcher.model, {})


def apply_lora_patches(model_patcher, lora_sd: dict, strength: float = 1.0):
    """A clone of the MODEL with the LoRA added as ordinary ComfyUI weight patches (what
    LoraLoader does), so any downstream node, a KSampler included, sees it. The input MODEL is
    not changed. Every module of the LoRA must exist in the model."""
    import comfy.lora

    key_map = lora_key_map(model_patcher)
    modules = {k.rsplit(".", 2)[0] if k.endswith(".weight") else k.rsplit(".", 1)[0] for k in lora_sd}
    unknown = sorted(m for m in modules if m not in key_map)
    if unknown:
        raise DragInputError(f"{len(unknown)} of {len(modules)} LoRA modules do not exist in this MODEL "
                             f"(e.g. {unknown[0]}): the LoRA was made for a different model", input="model")
    patches = comfy.lora.load_lora(lora_sd, key_map)
    patched = model_patcher.clone()
    added = patched.add_patches(patches, strength)
    if len(added) != len(modules):
        raise RuntimeError(f"ComfyUI applied {len(added)} of {len(modules)} LoRA modules")
    return patched


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
    lora_sd = lora_to_comfy_state_dict(lora)
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

