"""Drag benchmarks on real images, in the formats users already have, and a runner for them.

- DragBench: ``<category>/<sample>/original_image.png`` and ``meta_data.pkl`` (``prompt``, ``points``
  alternating handle/target in image pixels, ``mask`` H x W, 1 = editable). The metadata is a
  pickle, which can run code when loaded: it is read only with ``allow_pickle=True``.
- Drag100: ``<sample>/original.jpg``, ``mask.png`` (white = editable), ``points.json``
  (``{"points": [[x, y], ...]}``, alternating handle/target).

Metrics (no ground truth exists for real drags): Mean Distance by feature matching, fidelity as
1 - LPIPS when LPIPS is usable here, GoodDrag's DAI, and the change outside the mask.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import torch

from . import metrics
from comfyui_drag.drag_ops.errors import DragInputError
from comfyui_drag.drag_ops.images import uint8_to_engine
from comfyui_drag.drag_ops.points import DragPoints, parse_points


@dataclass
class Sample:
    name: str
    image: np.ndarray  # uint8 [H, W, 3]
    points: DragPoints  # image pixels
    mask: np.ndarray | None  # bool [H, W], True = may change
    prompt: str = ""


def _rgb(path: Path) -> np.ndarray:
    from PIL import Image
    with Image.open(path) as im:
        return np.asarray(im.convert("RGB"))


def load_dragbench(root, allow_pickle: bool = False) -> list[Sample]:
    """Every ``<category>/<sample>`` folder under ``root`` (or ``root`` itself if it is one sample)."""
    if not allow_pickle:
        raise DragInputError("DragBench metadata (meta_data.pkl) is a pickle, which can run code when "
                             "loaded; pass allow_pickle=True only for a folder you trust")
    import pickle
    root = Path(root)
    folders = sorted(p.parent for p in root.rglob("meta_data.pkl"))
    if not folders:
        raise DragInputError(f"no DragBench samples (*/meta_data.pkl) under {root}")
    samples = []
    for folder in folders:
        with open(folder / "meta_data.pkl", "rb") as f:
            meta = pickle.load(f)  # noqa: S301 - the caller said the folder is trusted
        image = _rgb(folder / "original_image.png")
        mask = meta.get("mask")
        mask = None if mask is None else np.asarray(mask).astype(bool).reshape(image.shape[:2])
        points = parse_points([list(map(float, p)) for p in meta["points"]], image.shape[1], image.shape[0])
        samples.append(Sample(str(folder.relative_to(root)) or folder.name, image, points, mask,
                              str(meta.get("prompt", ""))))
    return samples


def load_drag100(root) -> list[Sample]:
    root = Path(root)
    folders = sorted(p.parent for p in root.rglob("points.json"))
    if not folders:
        raise DragInputError(f"no Drag100 samples (*/points.json) under {root}")
    samples = []
    for folder in folders:
        image = _rgb(next(folder.glob("original.*")))
        points = parse_points(json.loads((folder / "points.json").read_text()), image.shape[1], image.shape[0])
        mask = None
        if (folder / "mask.png").exists():
            mask = _rgb(folder / "mask.png").mean(-1) > 127
        prompt = (folder / "prompt.txt").read_text().strip() if (folder / "prompt.txt").exists() else ""
        samples.append(Sample(str(folder.relative_to(root)) or folder.name, image, points, mask, prompt))
    return samples


def fit_to(sample: Sample, multiple: int) -> Sample:
    """The sample resized so both sides are multiples of ``multiple`` (points and mask follow)."""
    from PIL import Image
    h, w = sample.image.shape[:2]
    nh, nw = max(multiple, round(h / multiple) * multiple), max(multiple, round(w / multiple) * multiple)
    if (nh, nw) == (h, w):
        return sample
    sx, sy = (nw - 1) / max(w - 1, 1), (nh - 1) / max(h - 1, 1)
    image = np.asarray(Image.fromarray(sample.image).resize((nw, nh), Image.BICUBIC))
    mask = None if sample.mask is None else \
        np.asarray(Image.fromarray(sample.mask.astype(np.uint8) * 255).resize((nw, nh), Image.NEAREST)) > 127
    pts = DragPoints(tuple((x * sx, y * sy) for x, y in sample.points.handles),
                     tuple((x * sx, y * sy) for x, y in sample.points.targets))
    return replace(sample, image=image, points=pts, mask=mask)


NONE = "do-nothing"


def run(model, encode_prompt, samples: list[Sample], configs: dict, log=print, fidelity=None,
        set_by: dict | None = None) -> dict:
    """{method: [metrics per sample]} for each named EditConfig and its do-nothing reconstruction.

    encode_prompt(text) -> Conditioning. MD matches the handle's feature (the model's own decoder
    features, DIFT-style) in the output; fidelity is a metrics.Fidelity (None: make one). set_by:
    the settings the user set, which the model family's values leave (run_edit)."""
    from comfyui_drag.drag_ops.pipeline import run_edit
    fidelity = fidelity or metrics.Fidelity(model.device)
    results = {}
    for sample in samples:
        sample = fit_to(sample, model.size_multiple)
        cond = encode_prompt(sample.prompt)
        image = uint8_to_engine(sample.image)
        mask = None if sample.mask is None else torch.from_numpy(sample.mask.astype(np.float32))
        handles, targets = sample.points.handles, sample.points.targets
        for name, config in configs.items():
            t0 = time.perf_counter()
            result = run_edit(model, image, sample.points, cond, config, mask, set_by=set_by)
            seconds = time.perf_counter() - t0
            for method, out in ((name, result.image), (f"{name} {NONE}", result.reconstruction)):
                md = metrics.correspondence_md(model, cond, image, out, handles, targets)
                row = {"sample": sample.name, "md": md["md"], "md_ratio": md["md_ratio"],
                       "fidelity": fidelity(image, out),
                       **metrics.dai(image, out, handles, targets),
                       **metrics.outside_change(image, out, sample.mask), "seconds": seconds}
                results.setdefault(method, []).append(row)
            r = results[name][-1]
            log(f"{sample.name:<30} {name:<14} MD {r['md']:6.1f} px  DAI1 {r['dai_1']:.4f}  {seconds:6.1f} s")
    return results


def summarise(results: dict) -> dict:
    keys = ("md", "md_ratio", "fidelity", "dai_1", "dai_5", "dai_10", "dai_20", "psnr_outside", "seconds")
    out = {}
    for method, rows in results.items():
        entry = {"tasks": len(rows)}
        for k in keys:
            vals = [r[k] for r in rows if r.get(k) is not None and np.isfinite(r[k])]
            entry[k] = float(np.mean(vals)) if vals else float("nan")
        out[method] = entry
    return out


COLUMNS = (("MD px", "md", "{:.1f}"), ("MD/init", "md_ratio", "{:.2f}"), ("1-LPIPS", "fidelity", "{:.3f}"),
           ("DAI1", "dai_1", "{:.4f}"), ("DAI5", "dai_5", "{:.4f}"), ("DAI10", "dai_10", "{:.4f}"),
           ("DAI20", "dai_20", "{:.4f}"), ("PSNR out", "psnr_outside", "{:.1f}"), ("s/image", "seconds", "{:.0f}"))


# diffusers' name for a single file's model type -> the pipeline the drag runs it as (anything else is refused)
_SINGLE_FILE_KINDS = {"v1": "StableDiffusionPipeline", "v2": "StableDiffusionPipeline",
                      "xl_base": "StableDiffusionXLPipeline"}
_REFUSED_KINDS = {"xl_refiner": "the SDXL refiner (trained only for the last, low-noise fifth of the denoising)",
                  "inpainting": "an inpainting model", "inpainting_v2": "an inpainting model",
                  "xl_inpaint": "an inpainting model", "playground-v2-5": "Playground v2.5 (EDM sampling)"}


def _single_file_kind(path: Path) -> tuple[str, str]:
    """(diffusers' model type, its default config repository) of a single .safetensors file, read from
    its header only (names and shapes: no weights are loaded)."""
    from diffusers.loaders.single_file_utils import DIFFUSERS_DEFAULT_PIPELINE_PATHS, infer_diffusers_model_type
    from safetensors import safe_open
    with safe_open(str(path), framework="pt") as f:
        header = {k: torch.empty(f.get_slice(k).get_shape(), device="meta") for k in f.keys()}
    kind = infer_diffusers_model_type(header)
    return kind, DIFFUSERS_DEFAULT_PIPELINE_PATHS[kind]["pretrained_model_name_or_path"]


def _local_configs(repo: str, cache_dir=None) -> Path | None:
    """A diffusers model's configs and tokenizers in the local Hugging Face cache, or None (never downloads)."""
    from huggingface_hub import snapshot_download
    try:
        folder = Path(snapshot_download(repo, local_files_only=True, cache_dir=cache_dir))
    except Exception:  # LocalEntryNotFoundError and kin: not in the cache
        return None
    return folder if (folder / "model_index.json").exists() else None


def load_checkpoint(path, device="cpu", num_steps: int = 50, config=None, cache_dir=None):
    """(DiffusionModel, encode_prompt) from a LOCAL Stable Diffusion 1.x/2.x or SDXL checkpoint: a diffusers
    folder, or a single .safetensors file. Nothing is downloaded.

    A single file holds weights only: diffusers builds the pipeline around them from the model's diffusers
    configs and tokenizers, which it would otherwise download. They must be here: ``config``, a local
    diffusers folder of the same model (model_index.json, */config.json, tokenizer/, tokenizer_2/ for SDXL,
    scheduler/; weights not needed), or the same in the local Hugging Face cache (``cache_dir``, default the
    usual one). encode_prompt(text) -> Conditioning; for SDXL with the pooled prompt beside the context
    (the size/crop numbers come from the latent, as in ComfyUI)."""
    from diffusers import StableDiffusionPipeline, StableDiffusionXLPipeline
    from comfyui_drag.drag_ops.model import Conditioning, DiffusersVAECodec, DiffusionModel
    from comfyui_drag.drag_ops.network import DiffusersUNet
    from comfyui_drag.drag_ops.ddim import DDIMSchedule
    path = Path(path)
    if not path.exists():
        raise DragInputError(f"checkpoint {path} does not exist")
    if path.is_file() and path.suffix != ".safetensors":  # .ckpt/.bin are pickles: weights load as safetensors only
        raise DragInputError(f"checkpoint {path.name} is not a .safetensors file; convert it, or give a diffusers "
                             "folder with .safetensors weights")
    pipelines = {"StableDiffusionPipeline": StableDiffusionPipeline, "StableDiffusionXLPipeline": StableDiffusionXLPipeline}
    folder = path if path.is_dir() else (Path(config) if config is not None else None)
    if path.is_file() and folder is None:
        kind, repo = _single_file_kind(path)
        if kind in _REFUSED_KINDS:
            raise DragInputError(f"{path.name} is {_REFUSED_KINDS[kind]}; drag editing needs an SD 1.x/2.x or SDXL "
                                 "base model, fine-tune or merge")
        folder = _local_configs(repo, cache_dir)
        if folder is None:
            raise DragInputError(
                f"{path.name} is a single file ({kind}); diffusers needs {repo}'s configs and tokenizers to build "
                "the model around it, and they are not in the local Hugging Face cache. Give them with --config DIR "
                f"(a local copy of {repo} without weights: model_index.json, */config.json, tokenizer*/, scheduler/), "
                "or give a diffusers folder; nothing is downloaded")
    if folder is not None and not (folder / "model_index.json").exists():
        raise DragInputError(f"{folder} is not a diffusers folder (no model_index.json)")
    name = json.loads((folder / "model_index.json").read_text()).get("_class_name", "")
    if name not in pipelines:
        raise DragInputError(f"{folder} holds a {name or 'unknown'} model; drag editing loads StableDiffusionPipeline "
                             "and StableDiffusionXLPipeline folders (SD 1.x/2.x and SDXL)")
    cls = pipelines[name]
    dtype = torch.float16 if torch.device(device).type == "cuda" else torch.float32
    extra = {"safety_checker": None, "requires_safety_checker": False} if cls is StableDiffusionPipeline else \
        {"add_watermarker": False}
    try:
        if path.is_dir():
            pipe = cls.from_pretrained(str(path), local_files_only=True, torch_dtype=dtype, use_safetensors=True, **extra)
        else:  # a local config folder: diffusers reads it and downloads nothing
            pipe = cls.from_single_file(str(path), config=str(folder), local_files_only=True, torch_dtype=dtype)
    except Exception as e:  # diffusers raises many kinds; say what to do instead
        raise DragInputError(f"could not load {path} without downloading anything ({type(e).__name__}: {e}); "
                             "give a diffusers folder (model_index.json, unet/, vae/, text_encoder/, "
                             "tokenizer/, scheduler/; SDXL also text_encoder_2/, tokenizer_2/)") from None
    pipe.to(device)
    if getattr(pipe.vae.config, "force_upcast", False):
        pipe.vae.to(torch.float32)  # SDXL's VAE overflows in fp16 (its config says so)
    sched = pipe.scheduler.config
    schedule = DDIMSchedule(torch.as_tensor(pipe.scheduler.alphas_cumprod), num_steps,
                            sched.get("prediction_type", "epsilon"))
    unet = pipe.unet.eval().requires_grad_(False)
    model = DiffusionModel(DiffusersUNet(unet), DiffusersVAECodec(pipe.vae.eval().requires_grad_(False)), schedule)

    @torch.no_grad()
    def encode_prompt(text: str) -> Conditioning:
        if cls is StableDiffusionXLPipeline:  # both encoders' penultimate layers, and the pooled prompt
            context, _, pooled, _ = pipe.encode_prompt(text, device=device, num_images_per_prompt=1,
                                                       do_classifier_free_guidance=False)
            return Conditioning(context.float(), {"text_embeds": pooled.float()})
        ids = pipe.tokenizer(text, padding="max_length", max_length=pipe.tokenizer.model_max_length,
                             truncation=True, return_tensors="pt").input_ids.to(device)
        return Conditioning(pipe.text_encoder(ids)[0].float())

    return model, encode_prompt
